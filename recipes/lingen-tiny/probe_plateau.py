"""Probe (session 37, issue 14): is lingen-tiny still learning where the layout and the direction are decided?

Since stage 3u (533 min of CPU training) every stage has left the 4 s judge lines within chance of each other. This
probe asks the training objective itself, along the committed lineage 3u → 4c → 4h → 4i → 4k (states in this folder),
on one fixed validation set: ``N`` single-object world clips of 33 frames (world seeds 5,000,000 + i, never drawn in
training; ``scripts/val_loss.py``'s set), each encoded by the checkpoint's VAE (the same VAE in every state), with one
fixed noise ε per clip, at the flow times ``TIMES``:

* ``loss(t)``: the flow-matching loss ``mean((v(z_t, t, caption) − (ε − x))²)`` under the clip's own caption;
* ``gap(t)``: the loss under the caption with its direction words swapped (``contrast.opposite_direction``) minus
  ``loss(t)``, over the clips whose caption names a direction: how much the direction word lowers the loss, i.e.
  how much of the direction the model reads from the text at that noise level.

    python recipes/lingen-tiny/probe_plateau.py recipes/lingen-tiny/state-{3u,4c,4h,4i,4k} --clips 32

Prints one row per checkpoint (its training step and minutes from ``train_state.json``). Caveat: stages 4f–4k
trained on movers of one speed (0.1 frame extents a second) while the world here draws 0.1–0.25, so the later
states may lose on the faster clips for that reason alone; ``--one-speed`` renders the validation movers at that
one speed (``proto_slow.install()``: the same scenes, every linear mover at 0.1).
"""
import argparse
import json
import sys
from pathlib import Path

import torch

TIMES = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


@torch.no_grad()
def probe(path: str, clips: int, seed_base: int = 5_000_000, frames: int = 33) -> dict:
    """{"loss": [per time], "gap": [per time], "n_gap": clips with a direction} for the checkpoint at ``path``.
    Raises what ``LinGenPipeline.from_pretrained`` raises for an unreadable checkpoint."""
    from lingen_model.generation.contrast import opposite_direction
    from lingen_model.generation.pipeline import LinGenPipeline
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import _to_tensor

    pipe = LinGenPipeline.from_pretrained(path, device="cpu")
    native = pipe.config["native"]
    t = torch.tensor(TIMES)
    b = len(TIMES)
    loss, gap, n_gap = torch.zeros(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64), 0
    for i in range(clips):
        video, caption, _ = make_clip(seed_base + i, frames, native["height"], native["width"], native["fps"],
                                      max_objects=1)
        x = pipe.vae.encode(_to_tensor(video)[None])
        eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed_base + i))
        z = (1 - t.view(-1, 1, 1, 1, 1)) * x + t.view(-1, 1, 1, 1, 1) * eps
        target = (eps - x).expand(b, *x.shape[1:])

        def per_t(text):
            ctx, mask = pipe.text_encoder.encode([text])
            v = pipe.denoiser(z, t, ctx.expand(b, -1, -1), mask.expand(b, -1))
            return (v - target).pow(2).flatten(1).mean(1).double()

        own = per_t(caption)
        loss += own
        swapped = opposite_direction(caption)
        if swapped:
            gap += per_t(swapped) - own
            n_gap += 1
    state_file = Path(path) / "train_state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    return {"step": state.get("step"), "minutes": round(state.get("elapsed_s", 0) / 60, 1),
            "loss": (loss / clips).tolist(), "gap": (gap / max(n_gap, 1)).tolist(), "n_gap": n_gap}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--clips", type=int, default=32)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one-speed", action="store_true",
                    help="render the validation movers at proto_slow.SLOW_SPEED (0.1), as stages 4h-4k trained")
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    if a.one_speed:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import proto_slow

        proto_slow.install()
    out = {}
    print("t: " + " ".join(f"{x:>7}" for x in TIMES))
    for c in a.checkpoints:
        r = out[c] = probe(c, a.clips)
        print(f"{Path(c).name} step {r['step']} ({r['minutes']} min), n={a.clips}, {r['n_gap']} with a direction")
        print("  loss " + " ".join(f"{v:7.4f}" for v in r["loss"]))
        print("  gap  " + " ".join(f"{v:7.4f}" for v in r["gap"]), flush=True)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
