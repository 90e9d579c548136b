"""LinGenPipeline: the whole data path of ``lingen generate`` in one place.

    prompt ─► text encoder ─► context B×L×D, mask B×L                      (encode_prompt)
    seed ─► noise z₁ ~ N(0, I), B×C×T'×H'×W', T' = 1 + (frames−1)/4, H' = H/8   (prepare_latents)
    z₁ ─► rectified-flow sampler (Euler/Heun, time shift, CFG with "") ─► z₀   (denoise)
    z₀ ─► VAE decode in temporal chunks ─► uint8 T×H×W×3                     (decode)

    frames ─► H.264 mp4 + JSON sidecar                                         (lingen_model.io.video)

A :class:`GenerationRequest` says what to make (``None`` = the checkpoint's default);
:meth:`LinGenPipeline.resolve` fills and checks it once against the checkpoint (a
:class:`ResolvedRequest`), and :meth:`LinGenPipeline.generate` returns a :class:`GenerationOutput`
(frames, the resolved request, per-phase timings).

(docs/design.md §2; LinGen arXiv 2412.09856 §3; rectified flow as in SD3, Esser et al. 2024.)
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from lingen_model.errors import InputError
from lingen_model.generation.checkpoint import CheckpointError, load_checkpoint
from lingen_model.generation.contrast import opposite_direction
from lingen_model.generation.flow import METHODS, make_step_cache, sample, shift_for_tokens, staggered_steps
from lingen_model.generation.step_cache import CACHE_MODES
from lingen_model.geometry import (
    DEFAULT_LENGTH_S,
    frames_for_length,
    frames_for_seconds,
    latent_frames,
    latent_grid,
    parse_resolution,
)
from lingen_model.models.text_encoder import build_text_encoder

EMBEDDED_MODEL = "lingen-tiny"
#: progress(phase, done, total) with phase in {"encode", "denoise", "decode"}
Progress = Callable[[str, int, int], Any]


#: Sampler defaults when a checkpoint's config.json has no ``sampling`` entry.
DEFAULT_STEPS, DEFAULT_CFG_SCALE = 20, 5.0
#: Highest frame rate accepted (frames/s).
MAX_FPS = 240.0


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """What to generate. ``None`` fields take the checkpoint's defaults when resolved.

    Fields: ``prompt``; ``negative_prompt`` (the CFG unconditional text; None = the checkpoint's
    ``sampling.negative_prompt``, else "");
    ``num_frames`` (1 + 4k) or ``length`` (``"4s"``, ``"97f"``, ``"1m"``; at ``fps``; default 4 s);
    ``height``/``width`` in pixels or ``resolution`` (``"512"``, ``"512x288"``, ``"768p"``; default
    native); ``fps`` (frames/s; default native); ``steps``; ``cfg_scale``; ``seed`` (≥ 0);
    ``shift`` (time shift; None = from the checkpoint or the token count); ``method`` (euler, heun,
    unipc); ``cache`` (step caching: none, delta = Δ-DiT, taylor = TaylorSeer; None = the
    checkpoint's ``sampling.cache``, else none); ``stagger`` (t per latent frame by which each frame
    runs behind the one before, see ``flow.sample``; None = the checkpoint's ``sampling.stagger``,
    else 0; > 0 needs Euler, no step caching and a denoiser that takes per-frame times);
    ``stagger_context`` (with stagger: None = the whole clip at every step, N = only the moving latent
    frames and N before them, see ``flow.sample``; None = the checkpoint's ``sampling.stagger_context``);
    ``direction_guidance`` (the weight w of guidance away from the prompt with its direction words
    swapped, ``contrast.opposite_direction``; 0 = off; None = the checkpoint's
    ``sampling.direction_guidance``, else 0; see ``flow.sample``, contrast guidance);
    ``cfg_max_t`` (CFG only at times t ≤ this, in [0, 1]: guidance in a limited interval, see
    ``flow.sample``; None = the checkpoint's ``sampling.cfg_max_t``, else 1 = every step);
    ``head`` (with stagger: the first N latent frames, of ``temporal_factor`` video frames each after
    the first, are sampled first as a short clip at the checkpoint's short-clip settings and held while
    the staircase samples the rest, see :meth:`LinGenPipeline.denoise`; 0 = off; None = the checkpoint's
    ``sampling.head``, e.g. in its long-clip profile, else 0).
    """

    prompt: str
    negative_prompt: str | None = None
    num_frames: int | None = None
    length: str | None = None
    height: int | None = None
    width: int | None = None
    resolution: str | None = None
    fps: float | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int = 0
    shift: float | None = None
    method: str = "euler"
    cache: str | None = None
    stagger: float | None = None
    stagger_context: int | None = None
    direction_guidance: float | None = None
    cfg_max_t: float | None = None
    head: int | None = None


@dataclasses.dataclass(frozen=True)
class ResolvedRequest:
    """A request with every setting decided and checked (see :meth:`LinGenPipeline.resolve`).
    ``contrast_prompt``: the prompt with its direction words swapped when ``direction_guidance`` is
    on and the prompt has any (None otherwise: no contrast term runs).
    ``head``: latent frames sampled first (0 = none), in ``head_steps`` steps with step caching
    ``head_cache`` (the checkpoint's short-clip ``sampling.steps`` and ``sampling.cache``).
    ``notes``: how a request was adjusted (a length rounded to 1 + 4k frames), one line each."""

    prompt: str
    negative_prompt: str
    num_frames: int
    height: int
    width: int
    fps: float
    steps: int
    cfg_scale: float
    seed: int
    shift: float | None
    method: str
    cache: str = "none"
    stagger: float = 0.0
    stagger_context: int | None = None
    direction_guidance: float = 0.0
    contrast_prompt: str | None = None
    cfg_max_t: float = 1.0
    head: int = 0
    head_steps: int = 0
    head_cache: str = "none"
    notes: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        """Time the clip spans: (frames − 1) / fps seconds."""
        return (self.num_frames - 1) / self.fps

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (notes left out; direction guidance, ``cfg_max_t`` and the head
        only when on, so that clip names and cache keys of requests without them are those of earlier releases)."""
        d = dataclasses.asdict(self)
        d.pop("notes")
        if not self.head:
            for key in ("head", "head_steps", "head_cache"):
                d.pop(key)
        if self.cfg_max_t >= 1.0:
            d.pop("cfg_max_t")
        if not self.direction_guidance:
            d.pop("direction_guidance")
            d.pop("contrast_prompt")
        return d


@dataclasses.dataclass
class GenerationOutput:
    """What :meth:`LinGenPipeline.generate` returns: ``frames`` uint8 T×H×W×3, the ``request`` as
    resolved, ``timings`` (seconds per phase: ``encode_s``, ``denoise_s``, ``decode_s``) and
    ``full_calls`` (denoiser evaluations that ran the whole network)."""

    frames: np.ndarray
    request: ResolvedRequest
    timings: dict[str, float]
    full_calls: int = 0  # denoiser evaluations that ran every block (fewer than the calls with step caching)


def _int_field(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise InputError(f"{name} must be in [{lo}, {hi if hi is not None else '∞'}), got {value}")
    return int(value)


def _float_field(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise InputError(f"{name} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}")
    return v


def long_clip_sampling(sampling: dict, seconds: float, request: GenerationRequest) -> tuple[dict, str | None]:
    """A checkpoint's sampling defaults for a clip of ``seconds`` (its span, (frames − 1) / fps).

    A checkpoint may carry a long-clip profile, ``sampling.long_clip = {"from_seconds": S, <sampling
    keys>}``: for clips of at least S seconds its keys replace the ``sampling`` defaults (e.g. the
    staggered, windowed sampler of docs/design.md §7 for minute-long clips, where sampling every
    frame at once re-decides the layout every few seconds). Settings the request gives still win;
    the profile is skipped as a whole when the request turns staggering off (``stagger=0``) or asks
    for step caching (``cache`` other than none), since its settings were chosen together.

    Returns ``(sampling defaults to use, a one-line note or None)``. Raises InputError for a
    profile that is not a mapping or whose ``from_seconds`` is not a number > 0.
    """
    profile = sampling.get("long_clip")
    if profile is None:
        return sampling, None
    if not isinstance(profile, dict):
        raise InputError("the checkpoint's sampling.long_clip must be a mapping")
    start = profile.get("from_seconds")
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start) or start <= 0:
        raise InputError(f"the checkpoint's sampling.long_clip.from_seconds must be a number > 0, got {start!r}")
    if seconds < start or request.stagger == 0 or request.cache not in (None, "none"):
        return sampling, None
    merged = {**sampling, **{k: v for k, v in profile.items() if k != "from_seconds"}}
    merged.pop("long_clip", None)
    shown = ", ".join(f"{k} {merged[k]}" for k in ("stagger", "stagger_context", "steps", "shift", "head")
                      if k in profile and getattr(request, k) is None)
    if not shown:
        return merged, None
    return merged, f"clips of {start:g} s or more sample with the model's long-clip settings ({shown})"


def embedded_model_path() -> Path:
    """Directory of the checkpoint shipped inside the package (may be absent in a source tree)."""
    return Path(__file__).resolve().parents[1] / "weights" / EMBEDDED_MODEL


def _resolve(name_or_path: str | Path | None, allow_download: bool) -> Path:
    if name_or_path is None or str(name_or_path) == EMBEDDED_MODEL:
        path = embedded_model_path()
        if not (path / "config.json").is_file():
            raise CheckpointError(f"the embedded model {EMBEDDED_MODEL} is not installed in {path.parent}")
        return path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    from lingen_model.hub import (
        resolve_model,  # registry names and ORG/REPO ids (huggingface_hub)
    )

    return Path(resolve_model(str(name_or_path), allow_download=allow_download))


class LinGenPipeline:
    """Text-to-video pipeline: ``frames = pipe(prompt, num_frames=33, height=128, width=128, seed=0)``.

    Args:
        denoiser: a ``Denoiser``; vae: a ``CausalVideoVAE``; text_encoder: a ``TextEncoder``.
        config: the checkpoint's config.json dict (``native`` fps/height/width, ``sampling`` defaults).
        device, dtype: where and in which dtype the denoiser runs (the VAE stays float32).
        vae_chunk_frames: latent frames per VAE decode chunk (None = 4).
        offload_text_encoder: move the text encoder to CPU after encoding.
    """

    def __init__(self, denoiser, vae, text_encoder, config: dict, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, vae_chunk_frames: int | None = None,
                 offload_text_encoder: bool = False):
        self.denoiser, self.vae, self.text_encoder, self.config = denoiser, vae, text_encoder, config
        self.device, self.dtype = torch.device(device), dtype
        # Wan-converted models integrate the flow ODE in float32 (as Wan's pipeline does), so the
        # timestep the model sees is not rounded to the low-precision dtype either.
        self.state_dtype = torch.float32 if getattr(denoiser.config, "arch", None) == "wan" else dtype
        self.vae_chunk_frames = vae_chunk_frames or 4
        self.offload_text_encoder = offload_text_encoder

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path | None = None, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None, allow_download: bool = True,
                        max_params_m: float | None = None, **kwargs) -> "LinGenPipeline":
        """Load a pipeline from a checkpoint directory, ``lingen-tiny`` (embedded; also the default
        when ``name_or_path`` is None), a model-zoo name or an ``ORG/REPO[@REV]`` id.
        ``max_params_m``: refuse, before building it, a denoiser with more parameters (millions).

        Raises:
            CheckpointError (a ValueError): missing, incomplete or corrupt checkpoint, or too large.
            InputError (a ValueError): an unknown name or a bad device.
            OperationError (a RuntimeError): the model could not be fetched.
        """
        try:
            device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        except (RuntimeError, TypeError) as e:
            raise InputError(f"unknown device {device!r}: {str(e).splitlines()[0]}") from None
        dtype = dtype or torch.float32
        path = _resolve(name_or_path, allow_download)
        denoiser, vae, cfg = load_checkpoint(path, device=device, dtype=dtype,
                                             max_params=None if max_params_m is None else max_params_m * 1e6)
        text_encoder = build_text_encoder(cfg["text_encoder"], device=device)
        if text_encoder.dim != denoiser.config.text_dim:
            raise CheckpointError(f"{path}: text encoder width {text_encoder.dim} != denoiser text_dim {denoiser.config.text_dim}")
        pipe = cls(denoiser, vae, text_encoder, cfg, device=device, dtype=dtype, **kwargs)
        pipe.path = path
        return pipe

    # ------------------------------------------------------------------ settings
    @property
    def native(self) -> dict:
        """Native ``fps``, ``height``, ``width`` (frames/s, pixels) of the checkpoint."""
        return self.config["native"]

    @property
    def mixer(self) -> str:
        """The denoiser's token mixer: ``"mate"`` (LinGen) or ``"attention"`` (DiT twin)."""
        return self.denoiser.config.mixer

    @property
    def num_parameters(self) -> int:
        """Parameters of the denoiser (the part that sets the memory tier)."""
        return sum(p.numel() for p in self.denoiser.parameters())

    @property
    def spatial_stride(self) -> int:
        """Pixels per token side: VAE spatial factor × patch size (height/width must divide by it)."""
        return self.vae.spatial_factor * self.denoiser.config.patch_size

    def check_size(self, num_frames: int, height: int, width: int) -> None:
        """Check a clip size against this checkpoint's grid.

        Raises:
            InputError (a ValueError): unless frames = 1 + ft·k ≥ 1 and height/width are positive
                multiples of :attr:`spatial_stride` pixels.
        """
        latent_frames(num_frames, self.vae.temporal_factor)
        s = self.spatial_stride
        if height < s or width < s or height % s or width % s:
            raise InputError(f"height and width must be positive multiples of {s} pixels, got {width}x{height}")

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(C, T', H', W') of the latent for a clip of ``num_frames`` × ``height`` × ``width`` pixels."""
        t, h, w = latent_grid(num_frames, height, width, self.vae.spatial_factor, self.vae.temporal_factor)
        return (self.vae.latent_channels, t, h, w)

    def default_shift(self, latent_shape) -> float:
        """The sampling schedule's time shift when none is asked for: the checkpoint's
        ``sampling.shift``, else :func:`flow.shift_for_tokens` of the denoiser's token count for a
        latent of ``latent_shape`` (B×C×T'×H'×W', latent voxels)."""
        return self.config.get("sampling", {}).get("shift") or shift_for_tokens(
            int(np.prod(self.denoiser.token_grid(latent_shape))))

    # ------------------------------------------------------------------ phases
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts (B) → (context B×L×D, mask B×L bool) on the pipeline device."""
        self.text_encoder.to(self.device)
        ctx, mask = self.text_encoder.encode(prompts)
        if self.offload_text_encoder:
            self.text_encoder.offload()
        return ctx.to(self.device), mask.to(self.device)

    def prepare_latents(self, num_frames: int, height: int, width: int, seed: int, batch: int = 1) -> torch.Tensor:
        """Initial noise z₁ ~ N(0, I), B×C×T'×H'×W', drawn on the CPU from ``seed`` (same on every device);
        in the model dtype, or float32 for Wan-converted models."""
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        noise = torch.randn((batch, *self.latent_shape(num_frames, height, width)), generator=gen)
        return noise.to(self.device, self.state_dtype)

    @torch.no_grad()
    def denoise(self, noise, context, mask, uncond_context=None, uncond_mask=None, steps: int = 20,
                cfg_scale: float = 1.0, shift: float | None = None, method: str = "euler",
                progress: Progress | None = None, cache="none", stagger: float = 0.0,
                stagger_context: int | None = None, contrast_context=None, contrast_mask=None,
                contrast_scale: float = 0.0, cfg_max_t: float = 1.0, head: int = 0, head_steps: int = 30,
                head_cache="none") -> torch.Tensor:
        """Integrate from t=1 (noise) to t=0 (latent). ``shift`` None: chosen from the token count.
        ``cache``: step caching, ``"none"`` | ``"delta"`` | ``"taylor"`` or a ``StepCache`` (see
        ``flow.sample``; pass a ``StepCache`` made by ``flow.make_step_cache`` to read its
        ``full_calls`` afterwards). ``stagger``, ``stagger_context``: staggered sampling;
        ``contrast_context`` (tokens 1×L×D or B×L×D of the contrast caption, e.g. the prompt with its
        direction words swapped), ``contrast_mask`` (1×L or B×L bool), ``contrast_scale`` (the weight w):
        contrast guidance (both ``flow.sample``; ValueError there for a wrong width or batch);
        ``cfg_max_t``: CFG only at times t ≤ this (``flow.sample``, guidance interval).

        ``head`` N > 0 (with ``stagger``; N below the latent frames T): the head first. Latent frames
        0 … N − 1 are sampled alone as a short clip, all at one time, in ``head_steps`` Euler steps with
        step caching ``head_cache`` (a mode name or a ``StepCache``) and the time shift of their own token
        count (:meth:`default_shift`), with the same guidance (CFG, ``cfg_max_t``, contrast); then the
        staircase runs over frames N … T − 1 beside them, the head held at t = 0 as context
        (``flow.sample(fixed_frames=N)``). The head's frames are thus those of a short clip of the same
        noise, and the minute's layout is decided beside them rather than beside frames still at noise
        (docs/design.md §7, "Head first"). Raises ValueError for a head without stagger or of T or more
        frames."""
        if head:
            if stagger <= 0 or isinstance(head, bool) or not isinstance(head, int) or not 0 < head < noise.shape[2]:
                raise ValueError(f"head must be an int in [1, {noise.shape[2]}) latent frames with stagger > 0, "
                                 f"got {head!r}")
        if shift is None:
            shift = self.default_shift(noise.shape)

        def velocity(z, t, ctx, m, cache=None, t_offset=None):
            extra = {} if cache is None else {"cache": cache}  # denoisers without step caching (Wan) take none
            if t_offset is not None:  # a window of the clip (staggered sampling with stagger_context)
                extra["t_offset"] = t_offset
            return self.denoiser(z, t.to(z.dtype), ctx, m, **extra)

        guidance = dict(cfg_scale=cfg_scale, context=context, context_mask=mask, uncond_context=uncond_context,
                        uncond_mask=uncond_mask, contrast_context=contrast_context, contrast_mask=contrast_mask,
                        contrast_scale=contrast_scale, cfg_max_t=cfg_max_t)
        if head:
            head_noise = noise[:, :, :head].contiguous()
            noise = noise.clone()
            noise[:, :, :head] = sample(velocity, head_noise, head_steps, shift=self.default_shift(head_noise.shape),
                                        method="euler", cache=head_cache, **guidance)
        return sample(velocity, noise, steps, shift=shift, method=method,
                      progress=(lambda k, n: progress("denoise", k, n)) if progress else None, cache=cache,
                      stagger=stagger, stagger_context=stagger_context, fixed_frames=head, **guidance)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, progress: Progress | None = None) -> np.ndarray:
        """Latents B×C×T'×H'×W' → uint8 frames T×H×W×3 of the first sample (VAE decode in chunks)."""
        frames = self.vae.decode_uint8(latents[:1].float(), chunk_frames=self.vae_chunk_frames,
                                       progress=(lambda k, n: progress("decode", k, n)) if progress else None)
        return frames[0].cpu().numpy()  # uint8 chunks: peak memory does not grow with the clip

    # ------------------------------------------------------------------ all together
    def resolve(self, request: GenerationRequest) -> ResolvedRequest:
        """Fill a request's ``None`` fields from the checkpoint and check every value, once.

        Defaults: native fps and size, 4 s at that fps (1 + 4k frames), the checkpoint's
        ``sampling`` steps and CFG scale; for clips at least as long as a ``sampling.long_clip``
        profile's ``from_seconds``, that profile's settings (:func:`long_clip_sampling`).

        Raises:
            TypeError: a field of the wrong type (e.g. ``num_frames=5.0``, ``seed=True``).
            InputError (a ValueError): an empty prompt; a zero, negative or non-finite value; a
                frame count that is not 1 + 4k; a size that is not a multiple of the stride; an
                unknown method; both ``num_frames`` and ``length`` (or size and ``resolution``); a
                ``head`` asked for without stagger or of as many latent frames as the clip or more.
        """
        if not isinstance(request.prompt, str) or not request.prompt.strip():
            raise InputError("prompt must be a non-empty string")
        native, sampling = self.native, self.config.get("sampling", {})
        negative_prompt = request.negative_prompt if request.negative_prompt is not None else sampling.get("negative_prompt", "")
        if not isinstance(negative_prompt, str):
            raise TypeError(f"negative_prompt must be a string, got {type(negative_prompt).__name__}")
        fps = _float_field("fps", request.fps if request.fps is not None else native["fps"], 0.0, MAX_FPS, lo_open=True)
        notes: list[str] = []
        if request.num_frames is not None and request.length is not None:
            raise InputError("give num_frames or length, not both")
        if request.num_frames is not None:
            num_frames = _int_field("num_frames", request.num_frames, 1)
        elif request.length is not None:
            num_frames, note = frames_for_length(request.length, fps, self.vae.temporal_factor)
            notes += [note] if note else []
        else:
            num_frames = frames_for_seconds(DEFAULT_LENGTH_S, fps, self.vae.temporal_factor)
        if request.resolution is not None:
            if request.height is not None or request.width is not None:
                raise InputError("give height/width or resolution, not both")
            width, height = parse_resolution(request.resolution, (native["width"], native["height"]), self.spatial_stride)
        else:
            height = _int_field("height", request.height if request.height is not None else native["height"], 1)
            width = _int_field("width", request.width if request.width is not None else native["width"], 1)
        self.check_size(num_frames, height, width)
        sampling, note = long_clip_sampling(sampling, (num_frames - 1) / fps, request)
        notes += [note] if note else []
        steps = _int_field("steps", request.steps if request.steps is not None else sampling.get("steps", DEFAULT_STEPS), 1, 1000)
        cfg = request.cfg_scale if request.cfg_scale is not None else sampling.get("cfg_scale", DEFAULT_CFG_SCALE)
        cfg_scale = _float_field("cfg_scale", cfg, 0.0, 50.0)
        seed = _int_field("seed", request.seed, 0, 2**63 - 1)
        shift = request.shift if request.shift is not None else sampling.get("shift")  # None: from the token count
        shift = None if shift is None else _float_field("shift", shift, 0.0, 1000.0, lo_open=True)
        if request.method not in METHODS:
            raise InputError(f"unknown method {request.method!r}; use {' or '.join(METHODS)}")
        cache = request.cache if request.cache is not None else sampling.get("cache", "none")
        if cache not in CACHE_MODES:
            raise InputError(f"unknown cache {cache!r}; use {', '.join(CACHE_MODES)}")
        stagger = _float_field("stagger", request.stagger if request.stagger is not None else sampling.get("stagger", 0.0),
                               0.0, 1.0)
        if stagger > 0:
            if getattr(self.denoiser.config, "arch", None) == "wan":
                raise InputError("stagger needs a denoiser with per-frame timesteps; Wan-converted models have none")
            if request.method != "euler":
                raise InputError(f"stagger works with the euler method only, got {request.method!r}")
            if cache != "none":
                if request.cache is not None:
                    raise InputError(f"stagger does not combine with step caching (--cache {cache}); use --cache none")
                notes.append(f"step caching ({cache}) is off with stagger")
                cache = "none"
        context = request.stagger_context if request.stagger_context is not None else sampling.get("stagger_context")
        if context is not None:
            context = _int_field("stagger_context", context, 0)
            if stagger == 0:
                if request.stagger_context is not None:
                    raise InputError("stagger_context needs stagger > 0")
                context = None
        dg = request.direction_guidance
        direction_guidance = _float_field("direction_guidance",
                                          dg if dg is not None else sampling.get("direction_guidance", 0.0), 0.0, 100.0)
        contrast_prompt = opposite_direction(request.prompt) if direction_guidance > 0 else None
        cmt = request.cfg_max_t
        cfg_max_t = _float_field("cfg_max_t", cmt if cmt is not None else sampling.get("cfg_max_t", 1.0), 0.0, 1.0)
        head = _int_field("head", request.head if request.head is not None else sampling.get("head", 0), 0)
        latent_frames = self.latent_shape(num_frames, height, width)[1]
        if head and request.head is not None:
            if stagger == 0:
                raise InputError("head needs stagger > 0 (the head is sampled first, the staircase after it)")
            if head >= latent_frames:
                raise InputError(f"head must be fewer latent frames than the clip's {latent_frames}, got {head}")
        if stagger == 0 or head >= latent_frames:
            head = 0  # the checkpoint's head for a clip it does not fit: the plain staircase
        short = self.config.get("sampling", {})  # the head is a short clip: the top-level (short-clip) settings
        head_steps = _int_field("sampling.steps", short.get("steps", DEFAULT_STEPS), 1, 1000) if head else 0
        head_cache = short.get("cache", "none") if head else "none"
        if head_cache not in CACHE_MODES:
            raise InputError(f"unknown cache {head_cache!r} in the checkpoint's sampling; use {', '.join(CACHE_MODES)}")
        return ResolvedRequest(prompt=request.prompt, negative_prompt=negative_prompt, num_frames=num_frames,
                               height=height, width=width, fps=fps, steps=steps, cfg_scale=cfg_scale, seed=seed,
                               shift=shift, method=request.method, cache=cache, stagger=stagger,
                               stagger_context=context, direction_guidance=direction_guidance,
                               contrast_prompt=contrast_prompt, cfg_max_t=cfg_max_t, head=head,
                               head_steps=head_steps, head_cache=head_cache, notes=tuple(notes))

    def generate(self, request: GenerationRequest | ResolvedRequest,
                 progress: Progress | None = None) -> GenerationOutput:
        """Generate one clip: resolve the request (unless already resolved), encode, denoise, decode.

        Returns a :class:`GenerationOutput` (frames uint8 T×H×W×3, the resolved request, timings).

        Raises:
            TypeError, InputError: see :meth:`resolve`.
        """
        req = request if isinstance(request, ResolvedRequest) else self.resolve(request)
        timings = {}
        t0 = time.perf_counter()
        if progress:
            progress("encode", 0, 1)
        use_cfg = req.cfg_scale != 1.0
        texts = [req.prompt] + ([req.negative_prompt] if use_cfg else []) + ([req.contrast_prompt] if req.contrast_prompt else [])
        ctx, mask = self.encode_prompt(texts)
        k = 2 if use_cfg else 1  # the contrast caption's row
        if progress:
            progress("encode", 1, 1)
        timings["encode_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        noise = self.prepare_latents(req.num_frames, req.height, req.width, req.seed)
        step_cache = make_step_cache(req.cache, req.steps, req.method)
        head_cache = make_step_cache(req.head_cache, req.head_steps) if req.head else None
        z0 = self.denoise(noise, ctx[:1], mask[:1], ctx[1:2] if use_cfg else None, mask[1:2] if use_cfg else None,
                          steps=req.steps, cfg_scale=req.cfg_scale, shift=req.shift, method=req.method,
                          progress=progress, cache=step_cache if step_cache is not None else "none",
                          stagger=req.stagger, stagger_context=req.stagger_context,
                          contrast_context=ctx[k:] if req.contrast_prompt else None,
                          contrast_mask=mask[k:] if req.contrast_prompt else None,
                          contrast_scale=req.direction_guidance, cfg_max_t=req.cfg_max_t, head=req.head,
                          head_steps=req.head_steps, head_cache=head_cache if head_cache is not None else "none")
        timings["denoise_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        frames = self.decode(z0, progress=progress)
        timings["decode_s"] = time.perf_counter() - t0
        calls = (req.steps * (2 if req.method == "heun" else 1) if req.stagger == 0
                 else staggered_steps(req.steps, req.stagger, noise.shape[2] - req.head))
        if req.head:  # the head's short clip first (its step cache counts its full calls)
            calls += head_cache.full_calls if head_cache is not None else req.head_steps
        return GenerationOutput(frames=frames, request=req, timings=timings,
                                full_calls=step_cache.full_calls if step_cache is not None else calls)

    def __call__(self, prompt: str, num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, fps: float | None = None, steps: int | None = None,
                 cfg_scale: float | None = None, seed: int = 0, shift: float | None = None,
                 method: str = "euler", negative_prompt: str | None = None, progress: Progress | None = None,
                 cache: str | None = None, stagger: float | None = None,
                 stagger_context: int | None = None) -> np.ndarray:
        """Generate one clip and return only its frames, uint8 ``T×H×W×3`` (T = num_frames, pixels H×W).

        Shorthand for ``generate(GenerationRequest(...)).frames``; defaults come from the
        checkpoint (native height/width, 4 s at native fps, its ``sampling`` steps / cfg_scale;
        ``fps`` only sets the default frame count).

        Raises:
            TypeError, InputError (a ValueError): see :meth:`resolve`.
        """
        request = GenerationRequest(prompt=prompt, negative_prompt=negative_prompt, num_frames=num_frames,
                                    height=height, width=width, fps=fps, steps=steps, cfg_scale=cfg_scale,
                                    seed=seed, shift=shift, method=method, cache=cache, stagger=stagger,
                                    stagger_context=stagger_context)
        return self.generate(request, progress=progress).frames
