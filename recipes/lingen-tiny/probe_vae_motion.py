"""Probe, not in the library (session 21, issue 14): does lingen-tiny's VAE keep real motion whole?

Renders minute-long clips of the shapes world (one object moving right at each speed given, frame widths
per second), encodes and decodes them with the embedded VAE, and prints the judge's jumps per minute,
unity and motion consistency of the render and of its round trip. Example (docs/eval/README.md,
"Session 21")::

    python recipes/lingen-tiny/probe_vae_motion.py --speeds 0.15,0.2,0.25
"""
import argparse

import torch

from lingen_model.generation.pipeline import LinGenPipeline
from lingen_model.shapes import judge, render, world

OBJECTS = (("triangle", "green", "black"), ("circle", "red", "black"), ("triangle", "blue", "dark blue"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speeds", default="0.15,0.2,0.25", help="comma-separated speeds, frame widths per second")
    ap.add_argument("--frames", type=int, default=481, help="frames per clip (1 + 4k; 481 = 60 s at 8 fps)")
    a = ap.parse_args()
    vae = LinGenPipeline.from_pretrained().vae
    fps = 8.0
    for speed in (float(s) for s in a.speeds.split(",")):
        for shape, color, bg in OBJECTS:
            obj = world.ObjectSpec(shape=shape, color=color, motion="right", size=0.2, x0=0.3, y0=0.5, speed=speed)
            frames = render.render(world.SceneSpec(objects=[obj], background=bg), a.frames, 128, 128, fps)
            prompt = f"a {color} {shape} moving right on a {bg} background"
            video = torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]  # 1×3×T×H×W
            with torch.no_grad():
                back = vae.decode_uint8(vae.encode(video, chunk_frames=8), chunk_frames=4)[0].cpu().numpy()
            r0, r1 = judge.score_clip(frames, prompt, fps), judge.score_clip(back, prompt, fps)
            print(f"speed {speed:g} {prompt}: render jumps/min {r0['jumps']:.1f} unity {r0['unity']:.2f} | "
                  f"round trip jumps/min {r1['jumps']:.1f} unity {r1['unity']:.2f} "
                  f"consistency {r1['motion_consistency']:.2f}", flush=True)


if __name__ == "__main__":
    main()
