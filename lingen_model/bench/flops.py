"""Analytic FLOP model of one denoiser forward: LinGen (MATE mixer) and its DiT twin.

Counts the FLOPs of the matrix products of one forward pass at batch ``B``, written from
the architecture of LinGen (Wang et al., arXiv 2412.09856, §3; docs/design.md §4) as this
package implements it (``lingen_model.models.denoiser``). Needs only the config, never the
weights, so paper-scale sizes (``4b``) cost nothing to count.

Convention (the one of ``torch.utils.flop_counter.FlopCounterMode``, so the two can be
compared one to one): a multiply-add is 2 FLOPs; only matrix products and convolutions
count — ``mm``/``addmm``/``bmm`` (linears, einsums), scaled-dot-product attention and
``conv``. Biases, normalisations (RMSNorm, gated RMSNorm, QK-norm), adaLN modulation,
activations (SiLU, softplus), softmax, ``exp`` of the SSD decays, the cumulative sums and
segment sums of the SSD scan, its sequential inter-chunk recurrence
(``state·decay + chunk_state``: B·H·P·N multiply-adds per chunk), positional-embedding
adds, review-token average pooling, permutations, padding and copies are **left out**
(all are O(N) elementwise work; on CPU they still cost time — see docs/benchmarks.md).

Notation: B batch, N = T·⌈H/p⌉·⌈W/p⌉ video tokens (latent T×H×W, patch p), d width,
F FFN hidden width, L text tokens, D_t text width, C latent channels,
``lin(n, a, b) = 2·n·a·b`` (n tokens through an a→b linear).

Stem (once per forward)::

    patch_embed   lin(B·N, C·p², d)
    conditioning  lin(B, 256, d) + lin(B, d, d) + lin(B, d, 6d) + lin(B, d, 2d)   (timestep MLP, adaLN-single)
    text_proj     lin(B·L, D_t, d)
    final_layer   lin(B·N, d, C·p²)

Per block (× depth)::

    cross_attention  lin(B·N, d, d) [q] + lin(B·L, d, 2d) [kv] + 4·B·N·L·d [QKᵀ, AV] + lin(B·N, d, d) [proj]
    ffn (SwiGLU)     lin(B·N, d, 2F) + lin(B·N, F, d)

Mixer, DiT twin (full 3D self-attention)::

    attn_projections  lin(B·N, d, 3d) + lin(B·N, d, d)
    self_attention    4·B·N²·d                                     ← quadratic in N

Mixer, LinGen (MATE = MA-branch + TE-branch), with d_i = expand·d, H = d_i/P heads,
N_s = d_state, G groups, Q = chunk size, k = d_conv, r review size::

    MA-branch (bidirectional Mamba2 over S = N + T·r² tokens: video + review tokens)
      ma_projections  lin(B·S, d, 2·d_i + 2·G·N_s + H) [in_proj] + lin(B·S, d_i, d) [out_proj]
      conv            2 directions × 2·B·(d_i + 2·G·N_s)·(S + k − 1)·k   (depthwise, padded k − 1)
      ssd_scan        2 directions × 2·B·S_Q·(G·Q·N_s + H·(Q·P + 2·P·N_s))
                      with S_Q = ⌈S/Q⌉·Q (tail padded to a whole chunk):
                        Q·N_s  intra-chunk scores C·Bᵀ (once per group, shared by its heads),
                        Q·P    scores·(dt·x),
                        P·N_s  chunk states Bᵀ(dt·x),       P·N_s  entering state → outputs C·S
    TE-branch (TESA: attention inside Tw×Hw×Ww windows; each window side clamped to the
      grid, which is padded to whole windows, so padded slots are computed too; odd layers
      shift by half a window, rolled cyclically into the same slots)
      tesa_projections  lin(B·N, d, 3d) [qkv, projected before padding] + lin(B·N, d, d) [proj]
      tesa_attention    4·B·N_pad·W·d,  W = Tw·Hw·Ww window tokens, N_pad = ∏ ⌈n/w⌉·w (slots)

Everything in LinGen is linear in N (the window W and chunk Q are fixed); the DiT's
``4·B·N²·d`` per layer is what makes it quadratic, and it dominates at paper scale.
On CUDA the Triton SSD kernels are invisible to ``FlopCounterMode`` (they count zero), so
CUDA numbers use this model; on the torch scan path the two agree (tests/test_flops.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from lingen_model.models.config import DenoiserConfig

Grid = tuple[int, int, int]

#: Width of the sinusoidal timestep embedding fed to the timestep MLP (layers.timestep_embedding).
TIMESTEP_FREQ_DIM = 256


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one forward pass, by component (2 FLOPs per multiply-add; see module docstring).

    Attributes:
        components: component name → FLOPs (ints). Keys depend on the mixer; see
            :func:`denoiser_flops`.
        tokens: video tokens N per sample. batch: B.
    """

    components: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    batch: int = 1

    @property
    def total(self) -> int:
        """Sum of all components (FLOPs)."""
        return sum(self.components.values())

    def __add__(self, other: "FlopCount") -> "FlopCount":
        keys = list(dict.fromkeys([*self.components, *other.components]))
        merged = {k: self.components.get(k, 0) + other.components.get(k, 0) for k in keys}
        return FlopCount(merged, max(self.tokens, other.tokens), max(self.batch, other.batch))


def linear_flops(tokens: int, d_in: int, d_out: int) -> int:
    """FLOPs of ``tokens`` rows through a ``d_in → d_out`` linear layer: ``2·tokens·d_in·d_out`` (bias left out)."""
    return 2 * tokens * d_in * d_out


def attention_flops(batch: int, n_query: int, n_key: int, width: int) -> int:
    """FLOPs of the two products of scaled-dot-product attention, ``QKᵀ`` and ``softmax·V``:
    ``4·B·n_query·n_key·width`` (all heads together; softmax and scaling left out)."""
    return 4 * batch * n_query * n_key * width


def token_grid(config: DenoiserConfig, latent_shape: Sequence[int]) -> Grid:
    """Token grid (T, ⌈H/p⌉, ⌈W/p⌉) of a latent whose last three sizes are (T, H, W) latent voxels.

    Raises:
        ValueError: fewer than three sizes, or a size < 1.
    """
    if len(latent_shape) < 3:
        raise ValueError(f"latent_shape must end with (T, H, W), got {tuple(latent_shape)}")
    t, h, w = (int(v) for v in latent_shape[-3:])
    if min(t, h, w) < 1:
        raise ValueError(f"latent T, H, W must be >= 1, got {(t, h, w)}")
    p = config.patch_size
    return (t, -(-h // p), -(-w // p))


def ssd_flops(batch: int, seq_len: int, nheads: int, headdim: int, d_state: int, chunk_size: int,
              ngroups: int = 1) -> int:
    """Matrix-product FLOPs of one chunked SSD scan (mamba_ssm ``ssd_minimal`` algorithm; Dao & Gu 2024, §6).

    ``2·B·S_Q·(G·Q·N + H·(Q·P + 2·P·N))`` with ``S_Q = ⌈seq_len/Q⌉·Q`` (the tail chunk is
    zero-padded and computed); the intra-chunk ``C·Bᵀ`` is computed once per group G and
    shared by the group's heads (as ``ssd.ssd_chunked`` and mamba_ssm's ``bmm_chunk`` do).
    Elementwise work (decays, segment sums, the inter-chunk recurrence) is left out.
    Raises ValueError for non-positive sizes.
    """
    for name, v in (("batch", batch), ("seq_len", seq_len), ("nheads", nheads), ("headdim", headdim),
                    ("d_state", d_state), ("chunk_size", chunk_size), ("ngroups", ngroups)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    q = chunk_size
    padded = math.ceil(seq_len / q) * q
    return 2 * batch * padded * (ngroups * q * d_state + nheads * (q * headdim + 2 * headdim * d_state))


def bimamba2_flops(config: DenoiserConfig, batch: int, seq_len: int) -> dict[str, int]:
    """FLOPs of the bidirectional Mamba2 layer (``mamba2.BiMamba2``) over ``seq_len`` tokens.

    Returns ``{"ma_projections", "conv", "ssd_scan"}`` (shared in/out projections; two
    directions of depthwise conv and SSD scan).
    """
    d, di, g, ns, h = config.width, config.d_inner, config.ngroups, config.d_state, config.mamba_heads
    conv_dim = di + 2 * g * ns
    in_out = linear_flops(batch * seq_len, d, 2 * di + 2 * g * ns + h) + linear_flops(batch * seq_len, di, d)
    # causal, padded k − 1 in front and behind as conv2d runs it (mamba2.causal_depthwise_conv_silu):
    # L + k − 1 outputs per channel and direction, k multiply-adds each
    conv = 2 * (2 * batch * conv_dim * (seq_len + config.d_conv - 1) * config.d_conv)
    scan = 2 * ssd_flops(batch, seq_len, h, config.headdim, ns, config.chunk_size, g)
    return {"ma_projections": in_out, "conv": conv, "ssd_scan": scan}


def tesa_padded_grid(grid: Grid, window: Sequence[int], shifted: bool) -> tuple[Grid, int]:
    """(slot grid, tokens per window) of TESA for a token grid (``tesa.window_layout`` rules).

    Each window side is clamped to the grid side and the grid is padded to whole windows,
    ⌈n/w⌉·w per axis; a shifted layer rolls its shifted windows cyclically into the same slots
    (Swin's batch computation), so ``shifted`` does not change the size.
    """
    padded, win = [], 1
    for n, w in zip(grid, window):
        w = min(int(w), n)
        padded.append(-(-n // w) * w)
        win *= w
    return (padded[0], padded[1], padded[2]), win


def tesa_flops(config: DenoiserConfig, batch: int, grid: Grid, shifted: bool) -> dict[str, int]:
    """FLOPs of one TESA layer (``tesa.TESA``): ``{"tesa_projections", "tesa_attention"}``."""
    d = config.width
    n = grid[0] * grid[1] * grid[2]
    pgrid, win = tesa_padded_grid(grid, config.window, shifted)
    n_pad = pgrid[0] * pgrid[1] * pgrid[2]
    return {
        "tesa_projections": linear_flops(batch * n, d, 3 * d) + linear_flops(batch * n, d, d),
        "tesa_attention": 4 * batch * n_pad * win * d,
    }


def mixer_flops(config: DenoiserConfig, batch: int, grid: Grid, layer_idx: int) -> dict[str, int]:
    """FLOPs of the token mixer of block ``layer_idx`` (MATE or full self-attention) on a token grid."""
    d = config.width
    n = grid[0] * grid[1] * grid[2]
    if config.mixer == "attention":
        return {
            "attn_projections": linear_flops(batch * n, d, 3 * d) + linear_flops(batch * n, d, d),
            "self_attention": attention_flops(batch, n, n, d),
        }
    review = grid[0] * config.review_size ** 2
    out = bimamba2_flops(config, batch, n + review)
    out.update(tesa_flops(config, batch, grid, shifted=layer_idx % 2 == 1))
    return out


def denoiser_flops(config: DenoiserConfig, latent_shape: Sequence[int], batch: int = 1, text_len: int = 64) -> FlopCount:
    """Analytic FLOPs of one denoiser forward (one network evaluation of one denoising step).

    Args:
        config: the denoiser config (``config.mixer`` picks LinGen or the DiT twin).
        latent_shape: sizes ending with the latent (T, H, W) (latent frames, latent pixels);
            H, W not divisible by the patch are padded, as the model does.
        batch: B (2 for a classifier-free-guidance step).
        text_len: L, text tokens of the context.
    Returns:
        :class:`FlopCount` with components ``patch_embed``, ``conditioning``, ``text_proj``,
        ``final_layer``, ``cross_attention``, ``ffn`` and, for the DiT twin,
        ``attn_projections``, ``self_attention``; for LinGen ``ma_projections``, ``conv``,
        ``ssd_scan``, ``tesa_projections``, ``tesa_attention``.
    Raises:
        ValueError: batch or text_len < 1, or a bad latent shape.
    """
    if batch < 1 or text_len < 1:
        raise ValueError(f"batch and text_len must be >= 1, got batch={batch}, text_len={text_len}")
    grid = token_grid(config, latent_shape)
    n = grid[0] * grid[1] * grid[2]
    d, f, c, p = config.width, config.ffn_dim, config.in_channels, config.patch_size
    bn, bl = batch * n, batch * text_len
    comp: dict[str, int] = {
        "patch_embed": linear_flops(bn, c * p * p, d),
        "conditioning": (linear_flops(batch, TIMESTEP_FREQ_DIM, d) + linear_flops(batch, d, d)
                         + linear_flops(batch, d, 6 * d) + linear_flops(batch, d, 2 * d)),
        "text_proj": linear_flops(bl, config.text_dim, d),
        "final_layer": linear_flops(bn, d, c * p * p),
    }
    for layer in range(config.depth):
        block = mixer_flops(config, batch, grid, layer)
        block["cross_attention"] = (linear_flops(bn, d, d) + linear_flops(bl, d, 2 * d)
                                    + attention_flops(batch, n, text_len, d) + linear_flops(bn, d, d))
        block["ffn"] = linear_flops(bn, d, 2 * f) + linear_flops(bn, f, d)
        for k, v in block.items():
            comp[k] = comp.get(k, 0) + v
    return FlopCount(comp, tokens=n, batch=batch)


__all__ = [
    "FlopCount", "TIMESTEP_FREQ_DIM", "attention_flops", "bimamba2_flops", "denoiser_flops", "linear_flops",
    "mixer_flops", "ssd_flops", "tesa_flops", "tesa_padded_grid", "token_grid",
]
