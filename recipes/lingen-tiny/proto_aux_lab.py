"""Prototype (session 40, issue 14): three extra latent channels holding the clip's CIELAB colour, denoised jointly.

Sessions 38–39 found the stage-1b VAE drawing green and cyan objects on gray ~15× more faintly in its latents than
white ones (``probe_latent_contrast.py``) and a third of 4k's 4 s motion misses in those scenes. A VAE retrained with
three channels tied to CIELAB (``proto_lab_vae.py``) separates every scene, but the denoiser does not carry over to it
(stages 4t/4u: the objects return in 2,750 steps, their motion does not). Here the shipped VAE stays as it is and the
denoiser gets three more channels beside its 8: per latent voxel, the mean over its pixels of L*, a*, b*
(``proto_lab_vae.lab_targets``: frame 0 alone for latent frame 0, ``ft`` frames for each later one), centred and
scaled by the constants ``AUX_MEAN`` / ``AUX_STD`` (measured over world clips by ``stats``) so that each has mean 0
and std 1 like the VAE's normalised latents. Training noises and denoises all 11 channels with one flow-matching
loss; sampling draws all 11 and the decoder reads the first 8 (the colour channels are a second, deterministic
view of the same clip, drawn with the sampler's noise like the rest). In the 11-channel latent a green object on gray
stands ΔE 83 (L*a*b* units; 5.8 of the channels' stds) from its background where it covers a voxel, so the denoiser
could see where the object is at noise levels where the VAE's own channels (0.44 stds) no longer show it. The carried-over model starts exactly as the old one
(``expand_weights``: zero columns of the patch embedding for the new inputs, zero rows of the final layer for the new
outputs): nothing of 4k's is lost at the start, the new weights have to be learnt.

Result (session 40, ``docs/eval/README.md`` "Session 40"): neither stage 4v nor 4w moved the 4 s tuning or
faint-scene verdicts from their controls; the old weights do not learn to carry the new channels in one stage.

Patches (``install``, every command): ``CausalVideoVAE.__init__`` (``latent_channels`` + 3, ``base_channels`` the
VAE's own), ``CausalVideoVAE.encode`` (appends the colour channels) and ``VideoDecoder.forward`` (reads the VAE's own
``base_channels`` channels of what it is given). A checkpoint exported by such a run loads only with the patch
installed (its denoiser has 11 input channels, its VAE config 8).

``AUX_LR_MULT`` (environment, ``train`` only; default 1) multiplies the learning rate of the new weights alone
(``install_lr_mult``): at stage 4l's rate (≤ 4.5e-5, stage 4v) they grew to 1/80 (inputs) and 1/6 (outputs) of the
old ones' size in 1,500 steps, and the model neither used the colour inputs nor predicted them (``probe``).

    python recipes/lingen-tiny/proto_aux_lab.py init STATE_DIR OUT_RUN_DIR      # 4k → 11 channels
    python recipes/lingen-tiny/proto_aux_lab.py train recipes/lingen-tiny/denoiser-4v.yaml
    AUX_LR_MULT=20 python recipes/lingen-tiny/proto_aux_lab.py train recipes/lingen-tiny/denoiser-4w.yaml
    python recipes/lingen-tiny/proto_aux_lab.py eval -m runs/lingen-tiny-4v/export --length 4s --limit 80
    python recipes/lingen-tiny/proto_aux_lab.py stats [--clips 256]            # re-measures AUX_MEAN / AUX_STD
    python recipes/lingen-tiny/proto_aux_lab.py probe runs/lingen-tiny-4v/export  # does it use the colour?
"""
import argparse
import functools
import json
import os
import sys
from pathlib import Path

import torch

import lingen_model.models.vae as vae_module
import lingen_model.training.trainer as trainer_module

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proto_lab_vae import lab_targets  # noqa: E402  (the sibling prototype's latent-grid CIELAB)

AUX_CHANNELS = 3
AUX_LR_MULT = float(os.environ.get("AUX_LR_MULT", "1"))  # learning-rate multiplier of the new weights (train only)
# (L* − 50, a*, b*) latent-voxel means over 256 world clips (seeds 9,600,000 + i, 33 frames, 128×128): ``stats``.
AUX_MEAN = (-26.517, 5.154, -8.577)
AUX_STD = (22.101, 12.21, 19.921)


def colour_channels(video: torch.Tensor, spatial_factor: int, temporal_factor: int,
                    mean=AUX_MEAN, std=AUX_STD) -> torch.Tensor:
    """The colour channels B×3×(1 + (T−1)/ft)×(H/fs)×(W/fs) (float32, unitless: (Lab − mean) / std per channel) of
    ``video`` B×3×T×H×W in [-1, 1], on ``video``'s device. Raises ValueError as ``lab_targets`` does (a grid that does
    not fit ``fs``/``ft``)."""
    lab = lab_targets(video, spatial_factor, temporal_factor, scale=1.0)
    m = torch.tensor(mean, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1, 1)
    s = torch.tensor(std, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1, 1)
    return ((lab - m) / s).float()


def install() -> None:
    """Patch ``CausalVideoVAE`` and ``VideoDecoder`` of this process (see the module docstring); idempotent."""
    cls = vae_module.CausalVideoVAE
    if getattr(cls, "_aux_lab", False):
        return
    init, encode, decoder_forward = cls.__init__, cls.encode, vae_module.VideoDecoder.forward

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.base_channels = self.latent_channels
        self.latent_channels = self.base_channels + AUX_CHANNELS
        self.decoder.read_channels = self.base_channels

    @functools.wraps(encode)
    def encode_with_colour(self, video, *args, **kwargs):
        z = encode(self, video, *args, **kwargs)
        return torch.cat([z, colour_channels(video, self.spatial_factor, self.temporal_factor).to(z)], dim=1)

    @functools.wraps(decoder_forward)
    def forward(self, z, *args, **kwargs):
        keep = getattr(self, "read_channels", None)  # set by the patched CausalVideoVAE; a bare decoder reads all
        return decoder_forward(self, z if keep is None else z[:, :keep], *args, **kwargs)

    cls.__init__, cls.encode, cls._aux_lab = __init__, encode_with_colour, True
    vae_module.VideoDecoder.forward = forward


def new_slices(model: torch.nn.Module, extra: int = AUX_CHANNELS) -> list[tuple[torch.Tensor, tuple]]:
    """The weights a denoiser on ``C + extra`` channels has that one on ``C`` lacks, as (parameter, index) pairs: the
    last ``extra·p·p`` columns of ``patch_embed.weight`` and rows of ``final_linear`` (weight and bias). Raises
    ValueError for sharded (DTensor) parameters: the multiplier works in one process only."""
    k = model.config.patch_size ** 2
    pe, fw, fb = model.patch_embed.weight, model.final_linear.weight, model.final_linear.bias
    if any(hasattr(p, "full_tensor") for p in (pe, fw, fb)):
        raise ValueError("AUX_LR_MULT needs unsharded parameters (one process)")
    n = extra * k
    return [(pe, (slice(None), slice(pe.shape[1] - n, None))), (fw, (slice(fw.shape[0] - n, None),)),
            (fb, (slice(fb.shape[0] - n, None),))]


def boost_new_weights(opt: torch.optim.Optimizer, slices: list[tuple[torch.Tensor, tuple]], mult: float) -> None:
    """Wrap ``opt.step`` so that the update of each (parameter, index) slice is ``mult`` times the optimizer's: the
    slices' learning rate × ``mult`` with the optimizer's moments unchanged (an Adam update does not scale with its
    gradient, so scaling the gradient would not do it). Raises ValueError for ``mult`` ≤ 0."""
    if not mult > 0:
        raise ValueError(f"AUX_LR_MULT must be > 0, got {mult}")
    step = opt.step

    @functools.wraps(step)
    def boosted(*args, **kwargs):
        before = [p.detach()[idx].clone() for p, idx in slices]
        out = step(*args, **kwargs)
        with torch.no_grad():
            for (p, idx), old in zip(slices, before):
                p[idx] = old + mult * (p[idx] - old)
        return out

    opt.step = boosted


def install_lr_mult(mult: float = AUX_LR_MULT) -> None:
    """Patch the trainer so that a denoiser stage's new weights (``new_slices``) learn ``mult`` times faster; the
    VAE stage is left alone. Raises ValueError for ``mult`` ≤ 0 (at once) and for sharded parameters (at start)."""
    if not mult > 0:
        raise ValueError(f"AUX_LR_MULT must be > 0, got {mult}")
    init = trainer_module.Trainer.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.stage == "denoiser" and mult != 1:
            boost_new_weights(self.opt, new_slices(self.model), mult)

    trainer_module.Trainer.__init__ = __init__


def expand_weights(weights: dict[str, torch.Tensor], base_channels: int, patch: int,
                   extra: int = AUX_CHANNELS) -> dict[str, torch.Tensor]:
    """Denoiser weights (state dict) for ``base_channels + extra`` latent channels: ``patch_embed.weight``
    (d × C·p·p, channel-major as ``Denoiser.patchify``) gains ``extra·p·p`` zero columns, ``final_linear``
    (C·p·p rows) ``extra·p·p`` zero rows and bias entries, so the expanded model gives the old model's output on the
    old channels and 0 on the new ones. Raises ValueError when the layers' sizes do not match ``base_channels·p·p``;
    KeyError for weights without those layers."""
    k = patch * patch
    pe, fw, fb = weights["patch_embed.weight"], weights["final_linear.weight"], weights["final_linear.bias"]
    if pe.shape[1] != base_channels * k or fw.shape[0] != base_channels * k or fb.shape[0] != base_channels * k:
        raise ValueError(f"expected {base_channels}·{patch}² = {base_channels * k} latent entries per patch, got "
                         f"patch_embed {tuple(pe.shape)}, final_linear {tuple(fw.shape)}")
    w = dict(weights)
    w["patch_embed.weight"] = torch.cat([pe, pe.new_zeros(pe.shape[0], extra * k)], dim=1)
    w["final_linear.weight"] = torch.cat([fw, fw.new_zeros(extra * k, fw.shape[1])], dim=0)
    w["final_linear.bias"] = torch.cat([fb, fb.new_zeros(extra * k)], dim=0)
    return w


def measure_stats(clips: int = 256, seed: int = 9_600_000, frames: int = 33, batch: int = 16
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of (L* − 50, a*, b*) latent-voxel means (fs 8, ft 4) over ``clips`` world clips
    (seeds ``seed`` + i, ``frames`` frames, 128×128, up to 2 objects). Raises ValueError for ``clips`` < 1."""
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import _to_tensor as frames_to_tensor

    if clips < 1:
        raise ValueError(f"clips must be >= 1, got {clips}")
    s, s2, n = 0, 0, 0
    for lo in range(0, clips, batch):
        video = torch.stack([frames_to_tensor(make_clip(seed + i, frames, 128, 128, 8.0, max_objects=2)[0])
                             for i in range(lo, min(clips, lo + batch))])
        lab = lab_targets(video, 8, 4, scale=1.0).double().transpose(0, 1).reshape(3, -1)
        s, s2, n = s + lab.sum(1), s2 + lab.square().sum(1), n + lab.shape[1]
    mean = s / n
    return mean.tolist(), (s2 / n - mean.square()).sqrt().tolist()


@torch.no_grad()
def probe_use(denoiser, vae, text_encoder, clips: int = 16, times=(0.3, 0.6, 0.8, 0.95), seed: int = 9_700_000,
              frames: int = 33, max_objects: int = 1) -> list[dict]:
    """How much a denoiser on ``vae.base_channels + 3`` channels relies on, and predicts, the colour channels.

    For ``clips`` world clips (seeds ``seed`` + i, ``frames`` frames, 128×128) encoded by the patched ``vae`` and each
    time t in ``times``: ``z_t = (1 − t)·x + t·ε``, ``v = denoiser(z_t, t, text)`` and per row the mean squared error
    against ``ε − x`` over the VAE's own channels (``base``) and over the colour channels (``colour``); ``base_swapped``
    is ``base`` with the colour channels of ``z_t`` taken from the next clip in the batch (what the model makes of
    colour that contradicts the rest), ``colour_zero`` the colour error of predicting 0 (the carried-over model's
    start); errors in normalised-latent units squared. Returns one dict per t. Raises AttributeError when ``vae`` is not patched (``install``)."""
    from lingen_model.shapes.clips import make_clip
    from lingen_model.training.data import _to_tensor as frames_to_tensor

    c = vae.base_channels
    drawn = [make_clip(seed + i, frames, 128, 128, 8.0, max_objects=max_objects) for i in range(clips)]
    x = vae.encode(torch.stack([frames_to_tensor(f) for f, _, _ in drawn]))
    ctx, mask = text_encoder.encode([caption for _, caption, _ in drawn])
    g = torch.Generator().manual_seed(seed)
    rows = []
    for t in times:
        eps = torch.randn(x.shape, generator=g)
        z = (1 - t) * x + t * eps
        target = eps - x
        tt = torch.full((clips,), float(t))
        v = denoiser(z, tt, ctx, mask)
        swapped = torch.cat([z[:, :c], z[:, c:].roll(1, dims=0)], dim=1)
        vs = denoiser(swapped, tt, ctx, mask)
        rows.append({"t": t, "base": float((v[:, :c] - target[:, :c]).square().mean()),
                     "base_swapped": float((vs[:, :c] - target[:, :c]).square().mean()),
                     "colour": float((v[:, c:] - target[:, c:]).square().mean()),
                     "colour_zero": float(target[:, c:].square().mean())})
    return rows


def _init(argv: list[str]) -> None:
    from safetensors.torch import load_file

    from init_new_vae import write_start  # the sibling script's run-dir writer

    ap = argparse.ArgumentParser(prog="proto_aux_lab.py init", description="a state dir's EMA denoiser, expanded")
    ap.add_argument("state", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    cfg = json.loads((args.state / "config.json").read_text())
    weights = expand_weights(load_file(str(args.state / "denoiser.safetensors")), int(cfg["vae"]["latent_channels"]),
                             int(cfg["denoiser"]["patch_size"]))
    write_start(args.out, weights, args.state)
    print(f"wrote {args.out}: patch_embed {tuple(weights['patch_embed.weight'].shape)}, "
          f"final_linear {tuple(weights['final_linear.weight'].shape)}")


if __name__ == "__main__":
    command = sys.argv[1:2]
    if command == ["init"]:
        _init(sys.argv[2:])
    elif command == ["probe"]:
        install()
        from lingen_model.generation.pipeline import LinGenPipeline

        ap = argparse.ArgumentParser(prog="proto_aux_lab.py probe")
        ap.add_argument("model")
        ap.add_argument("--clips", type=int, default=16)
        args = ap.parse_args(sys.argv[2:])
        pipe = LinGenPipeline.from_pretrained(args.model)
        print(f"{args.model}: MSE against ε − x over {args.clips} world clips (33 frames, 1 object)")
        print("    t   base  base, colour from another clip  colour  colour if 0")
        for r in probe_use(pipe.denoiser, pipe.vae, pipe.text_encoder, args.clips):
            print(f"{r['t']:5.2f} {r['base']:6.4f} {r['base_swapped']:31.4f} {r['colour']:7.4f} {r['colour_zero']:12.4f}")
    elif command == ["stats"]:
        ap = argparse.ArgumentParser(prog="proto_aux_lab.py stats")
        ap.add_argument("--clips", type=int, default=256)
        m, s = measure_stats(ap.parse_args(sys.argv[2:]).clips)
        print("AUX_MEAN =", tuple(round(x, 3) for x in m), "\nAUX_STD =", tuple(round(x, 3) for x in s))
    else:
        install()
        if command == ["train"]:  # stage 4l's data: circles for half of the objects, linear movers at one speed
            import proto_circles

            proto_circles.install()
            install_lr_mult()
        from lingen_cli.app import app

        sys.argv = ["lingen"] + sys.argv[1:]
        app()
