"""Probe (session 35, issue 14): how far the VAE is from mirror-equivariant, and what averaging its encoder costs.

A left–right mirror ``M`` (flip of the width axis) of a clip should mirror its latents, ``enc(M x) = M enc(x)``, if
the latent space is to share the world's symmetry; a denoiser made mirror-equivariant (``proto_mirror.py``,
``proto_mirror_train.py``) assumes it. This prints, over fresh shapes clips (seeds 9,100,000 + i, 128×128, 9 frames):

- ``‖enc(M x) − M enc(x)‖ / ‖enc(M x)‖``, and the same after the best linear map of the latent channels
  (least squares, ``enc(M x) ≈ R · M enc(x)``): 0 for an equivariant encoder;
- the mean absolute error (pixels in [-1, 1]) of the decoded clip, over all pixels and over the object's pixels
  (those more than 0.5 from the frame's median colour, summed over RGB), for the VAE's own latents ``enc(x)``, the
  mirror-averaged latents ``enc_s(x) = ½ [enc(x) + M enc(M x)]`` (``proto_mirror_train.SymmetricEncoder``) and the
  latents of the mirror image read back, ``M enc(M x)``.

    python recipes/lingen-tiny/probe_vae_mirror.py [--vae lingen_model/weights/lingen-tiny] [--clips 40]

Raises what ``load_vae`` raises for a missing or malformed VAE.
"""
import argparse

import torch

from lingen_model.shapes.clips import make_clip
from lingen_model.training.data import _to_tensor as frames_to_tensor  # uint8 T×H×W×3 → 3×T×H×W in [-1, 1]
from lingen_model.training.trainer import load_vae


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ over all elements of two tensors of one shape (unitless). Raises RuntimeError (torch's) when
    the shapes do not broadcast."""
    return float((a - b).norm() / b.norm())


def channel_fit(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``source`` B×C×… mapped by the least-squares C×C channel matrix ``R`` onto ``target`` (same shape):
    ``Σ_c source[:, c] R[c, d]`` for each output channel ``d``, shape B×C×…. Raises RuntimeError (torch's) for
    tensors of different shapes."""
    c = source.shape[1]
    a, b = source.transpose(0, 1).reshape(c, -1).T, target.transpose(0, 1).reshape(c, -1).T
    r = torch.linalg.lstsq(a, b).solution
    return (a @ r).T.reshape(c, *source.transpose(0, 1).shape[1:]).transpose(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vae", default="lingen_model/weights/lingen-tiny")
    ap.add_argument("--clips", type=int, default=40)
    a = ap.parse_args()
    vae = load_vae(a.vae)
    video = torch.stack([frames_to_tensor(make_clip(9_100_000 + i, 9, 128, 128, 8.0, max_objects=1, entry_prob=1.0)[0])
                         for i in range(a.clips)])
    with torch.no_grad():
        z, z_mirror = vae.encode(video), vae.encode(video.flip(-1))
        print(f"{a.clips} clips, latents {tuple(z.shape[1:])}")
        print(f"||enc(Mx) - M enc(x)|| / ||enc(Mx)||: {relative(z.flip(-1), z_mirror):.3f}; "
              f"after the best channel map: {relative(channel_fit(z.flip(-1), z_mirror), z_mirror):.3f}")
        median = video.flatten(3).median(-1).values[..., None, None]
        objects = ((video - median).abs().sum(1, keepdim=True) > 0.5).expand_as(video)
        print(f"object pixels: {float(objects.float().mean()):.3f} of all")
        # enc_s from the two encodings already at hand (SymmetricEncoder.encode would run both again)
        for name, lat in (("enc(x)", z), ("enc_s(x)", 0.5 * (z + z_mirror.flip(-1))), ("M enc(Mx)", z_mirror.flip(-1))):
            err = (vae.decode(lat) - video).abs()
            print(f"decode({name}): MAE all pixels {float(err.mean()):.4f}, object pixels {float(err[objects].mean()):.4f}")


if __name__ == "__main__":
    main()
