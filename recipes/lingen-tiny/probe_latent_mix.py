"""Probe (session 39, issue 14): can a linear mix of the VAE's latent channels lift the faint scenes?

``probe_latent_contrast.py`` found green and cyan on gray ~15× fainter in the stage-1b latents than white. A fixed
C×C mix ``A`` of the channels (applied after the VAE, before the denoiser) changes every object's contrast without
retraining the VAE. For a clip, the object contrast under ``A`` is ``sqrt(tr(AᵀA · E) / C)`` with ``E`` the C×C
second moment, over the object's latent voxels, of the latents minus the background's per-channel median (the
contrast of ``proto_contrast_weight.object_contrast`` for ``A = I``, up to the median of mixed channels). Keeping
the signal's total second moment ``tr(A S Aᵀ)`` equal to the latents' own (``S`` over all voxels: the same power
against the same noise), Adam maximises a soft minimum over the scenes of the per-scene mean contrast, with the
condition number of ``A`` held under ``--max-cond`` by a penalty. Fit on ``--clips`` world clips (seeds 9,300,000 + i),
reported also on as many fresh ones (seeds 9,400,000 + i): per-scene median contrasts, lowest and highest.

    python recipes/lingen-tiny/probe_latent_mix.py [--vae DIR] [--clips 320] [--max-cond 10]

Raises what ``load_vae`` raises for a missing or malformed VAE.
"""
import argparse
import sys
from pathlib import Path

import torch

from lingen_model.training.trainer import load_vae

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_latent_contrast import encoded_world_clips  # noqa: E402


def object_moments(vae, clips: int, seed: int) -> tuple[torch.Tensor, list[tuple[str, str]], torch.Tensor]:
    """``(E K×C×C, scene (background, colour) of each, S C×C)`` (float64, normalised-latent units squared): per clip
    with object voxels, the second moment over them of the latents minus the background's per-channel median; ``S``
    the second moment over every voxel of every clip. Raises what ``vae.encode`` raises; RuntimeError (torch's) when
    no clip has object voxels."""
    moments, keys, s, n = [], [], 0, 0
    for latents, objects, scenes in encoded_world_clips(vae, clips, seed):
        z = latents.double()
        flat = z.transpose(0, 1).reshape(z.shape[1], -1)
        s, n = s + flat @ flat.T, n + flat.shape[1]
        for b, spec in enumerate(scenes):
            m = objects[b, 0]
            if not bool(m.any()) or bool(m.all()):
                continue
            d = z[b][:, m] - z[b][:, ~m].median(dim=1).values[:, None]
            moments.append(d @ d.T / d.shape[1])
            keys.append((spec.background, spec.objects[0].color))
    return torch.stack(moments), keys, s / n


def scene_medians(a: torch.Tensor, moments: torch.Tensor, keys: list) -> dict[tuple[str, str], float]:
    """Scene → median over its clips of the contrast ``sqrt(tr(AᵀA E) / C)`` (normalised-latent units) under the mix
    ``a`` (C×C) for second moments ``moments`` K×C×C and their scenes ``keys`` (K). Raises RuntimeError (torch's)
    for sizes that do not match."""
    c = (torch.einsum("ij,bji->b", a.T @ a, moments).clamp_min(0) / a.shape[0]).sqrt()
    return {k: float(c[[i for i, kk in enumerate(keys) if kk == k]].median()) for k in sorted(set(keys))}


def fit_mix(moments: torch.Tensor, keys: list, second_moment: torch.Tensor, max_cond: float = 10.0,
            iters: int = 3000, temperature: float = 0.05) -> torch.Tensor:
    """The mix ``A`` (C×C, float64) that maximises the soft minimum (``temperature``, contrast units) over scenes of
    the mean contrast, with ``tr(A S Aᵀ) = tr(S)`` and a squared penalty on a condition number above ``max_cond``.
    Raises ValueError for ``max_cond`` < 1."""
    if max_cond < 1:
        raise ValueError(f"max_cond must be >= 1, got {max_cond}")
    scenes = sorted(set(keys))
    onehot = torch.zeros(len(scenes), len(keys), dtype=torch.float64)
    for i, k in enumerate(keys):
        onehot[scenes.index(k), i] = 1.0
    onehot /= onehot.sum(1, keepdim=True)
    total = torch.trace(second_moment)
    c = second_moment.shape[0]
    raw = torch.eye(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.01)

    def scaled(x):
        return x * (total / torch.trace(x @ second_moment @ x.T)).sqrt()

    for _ in range(iters):
        a = scaled(raw)
        per_scene = (onehot @ torch.einsum("ij,bji->b", a.T @ a, moments) / c).clamp_min(1e-12).sqrt()
        sv = torch.linalg.svdvals(a)
        soft_min = -temperature * torch.logsumexp(-per_scene / temperature, 0)
        loss = -soft_min + 10 * torch.relu(sv.max() / sv.min() - max_cond) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return scaled(raw).detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="lingen_model/weights/lingen-tiny")
    ap.add_argument("--clips", type=int, default=320)
    ap.add_argument("--max-cond", type=float, default=10.0)
    a = ap.parse_args()
    vae = load_vae(a.vae)
    fit = object_moments(vae, a.clips, 9_300_000)
    fresh = object_moments(vae, a.clips, 9_400_000)
    mix = fit_mix(*fit, max_cond=a.max_cond)
    sv = torch.linalg.svdvals(mix)
    print(f"mix fitted on {a.clips} clips: condition {float(sv.max() / sv.min()):.1f}, "
          f"signal second moment {float(torch.trace(fit[2])):.2f} kept")
    eye = torch.eye(mix.shape[0], dtype=torch.float64)
    for name, (moments, keys, _) in (("fit clips", fit), ("fresh clips", fresh)):
        for label, m in (("channels as they are", eye), ("fitted mix", mix)):
            med = scene_medians(m, moments, keys)
            low = sorted(med, key=med.get)
            print(f"{name:11s} {label:20s} lowest " + ", ".join(f"{b}/{c} {med[(b, c)]:.2f}" for b, c in low[:3])
                  + f" … highest {med[low[-1]]:.2f}")


if __name__ == "__main__":
    main()
