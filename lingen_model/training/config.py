"""The training YAML's schema: one dataclass, loaded strictly by :func:`lingen_model.schema.from_dict`
(unknown key, wrong type or out-of-range value → one line naming the file and the key).

Example (``recipes/lingen-tiny/denoiser.yaml``)::

    stage: denoiser
    run_dir: runs/lingen-tiny
    vae_checkpoint: lingen_model/weights/lingen-tiny
    steps: 3000
    data: {source: shapes, height: 128, width: 128, fps: 8, frames: [33]}
    export: {dir: ..., name: lingen-tiny, sampling: {steps: 20, cfg_scale: 5.0}}   # denoiser stage

Distillation of a Wan-converted checkpoint (``lingen convert``; docs/wan.md)::

    stage: distill
    run_dir: runs/wan-distill
    student: ./lingen-wan-1.3b        # its denoiser is the student, its VAE/text encoder encode the data
    train: ma                         # ma: MA-branch only, teacher = the same weights (as_teacher); all: every weight, frozen teacher copy
    data: {source: shards, path: shards/wan-480p}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from lingen_model.errors import InputError
from lingen_model.schema import from_dict


@dataclass
class TrainConfig:
    """Every key of a training YAML, with its default and range.

    Units: ``lr`` per step (linear warm-up over ``warmup_steps``, then a cosine to ``lr_floor`` · ``lr`` at ``steps``;
    0 warm-up steps start on the cosine); ``warmup_steps``, ``save_every_steps``, ``log_every`` in optimizer steps;
    ``schedule_start`` is the optimizer step the warm-up and cosine are counted from: a stage that continues a run
    saved at step N with a fresh schedule sets N (the default 0 counts from the run's first step);
    ``save_every_minutes`` and ``max_minutes`` (a wall-clock budget for one invocation) in minutes;
    ``stop_at_step`` ends the run (saved, exported) at that optimizer step while the learning-rate schedule
    still runs to ``steps``: the reproducible form of a stage that ``max_minutes`` once stopped; ``t_offset_max`` in latent frames; times ``t`` in [0, 1].
    ``data`` is a :class:`~lingen_model.training.data.DataConfig`, ``vae`` a
    :class:`~lingen_model.models.vae.VAEConfig` (VAE stage), ``denoiser`` ``{size, mixer}``,
    ``text_encoder`` the backend spec, ``export`` ``{dir, name, sampling}`` (denoiser and distill stages).
    Distill stage: ``student`` is a checkpoint directory written by ``lingen convert`` (its VAE and
    text encoder are used; ``vae_checkpoint``, ``denoiser``, ``text_encoder`` do not apply), ``train``
    ``ma`` (only the MA-branch; the teacher is the student's own weights with full windows, MA off)
    or ``all`` (every weight; the teacher is a frozen copy of the converted weights).
    Under torchrun: ``activation_checkpointing`` recomputes each block in backward (FSDP2 run),
    ``dp_replicate`` > 1 makes a 2-D (replicate, shard) mesh (HSDP); ``context_parallel`` = C > 1
    splits each clip's latent frames over groups of C consecutive ranks (denoiser stage;
    models/context_parallel.py); ``batch_size`` is per data-parallel replica (world / C of them).
    ``object_weight`` = w > 0 (denoiser stage, shapes world): the flow-matching loss weighs each
    latent voxel an object touches by 1 + w instead of 1 (:func:`training.object_weight.weight_map`).
    """

    stage: Literal["vae", "denoiser", "distill"]
    run_dir: str
    steps: int = field(default=1000, metadata={"ge": 1})
    batch_size: int = field(default=8, metadata={"ge": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0, "le": 1})
    weight_decay: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    warmup_steps: int = field(default=100, metadata={"ge": 0})
    lr_floor: float = field(default=0.1, metadata={"ge": 0, "le": 1})  # the cosine ends at lr_floor · lr
    schedule_start: int = field(default=0, metadata={"ge": 0})  # the step the warm-up and cosine start at
    grad_clip: float = field(default=1.0, metadata={"ge": 0})
    ema_decay: float = field(default=0.999, metadata={"ge": 0, "le": 1})
    seed: int = field(default=0, metadata={"ge": 0})
    log_every: int = field(default=10, metadata={"ge": 1})
    save_every_steps: int = field(default=200, metadata={"ge": 1})
    save_every_minutes: float = field(default=10.0, metadata={"gt": 0})
    max_minutes: Optional[float] = field(default=None, metadata={"gt": 0})
    stop_at_step: Optional[int] = field(default=None, metadata={"ge": 1})
    num_threads: Optional[int] = field(default=None, metadata={"ge": 1})
    data: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    kl_weight: float = field(default=1e-6, metadata={"ge": 0})
    vae_checkpoint: Optional[str] = None
    denoiser: dict[str, Any] = field(default_factory=lambda: {"size": "tiny", "mixer": "mate"})
    text_encoder: dict[str, Any] = field(default_factory=lambda: {"backend": "minilm"})
    caption_dropout: float = field(default=0.1, metadata={"ge": 0, "le": 1})
    export: Optional[dict[str, Any]] = None
    t_offset_max: int = field(default=0, metadata={"ge": 0})
    t_offset_prob: float = field(default=0.5, metadata={"ge": 0, "le": 1})
    t_logit_mean: float = field(default=0.0, metadata={"ge": -5, "le": 5})
    amp: Literal["auto", "bf16", "off"] = "auto"
    contrast_weight: float = field(default=0.0, metadata={"ge": 0, "le": 0.5})
    contrast_t_min: float = field(default=0.5, metadata={"ge": 0, "le": 1})
    t_high_prob: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    t_high_min: float = field(default=0.9, metadata={"ge": 0, "le": 0.99})
    t_ramp_prob: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    t_ramp_max: float = field(default=0.15, metadata={"ge": 0, "le": 1})
    object_weight: float = field(default=0.0, metadata={"ge": 0, "le": 100})
    activation_checkpointing: bool = False
    dp_replicate: int = field(default=1, metadata={"ge": 1})
    student: Optional[str] = None
    train: Literal["ma", "all"] = "ma"
    context_parallel: int = field(default=1, metadata={"ge": 1})

    def __post_init__(self) -> None:
        if self.stage == "denoiser" and not self.vae_checkpoint:
            raise ValueError("the denoiser stage needs 'vae_checkpoint'")
        if self.stage == "distill":
            if not self.student:
                raise ValueError("the distill stage needs 'student' (a checkpoint directory written by lingen convert)")
            if self.vae_checkpoint or self.contrast_weight > 0:
                raise ValueError("the distill stage takes its VAE from 'student' and has no contrastive term: "
                                 "drop 'vae_checkpoint' and 'contrast_weight'")
        elif self.student or self.train != "ma":
            raise ValueError("'student' and 'train' are keys of the distill stage")
        if isinstance(self.data, dict) and self.data.get("source") == "shards" and (
                self.stage == "vae" or self.contrast_weight > 0):
            raise ValueError("data.source 'shards' (preprocessed latents) is for the denoiser stage and the distill stage, "
                             "without contrast_weight (its negative needs the raw clip)")
        if self.object_weight > 0 and (self.stage != "denoiser" or self.contrast_weight > 0
                                       or self.context_parallel > 1
                                       or (self.data.get("source", "shapes") if isinstance(self.data, dict)
                                           else self.data.source) != "shapes"):
            raise ValueError("object_weight is for the denoiser stage on the shapes world, without contrast_weight "
                             "or context_parallel")
        if self.schedule_start >= self.steps:
            raise ValueError(f"schedule_start ({self.schedule_start}) must be before steps ({self.steps}), "
                             "where the schedule ends")
        if self.stop_at_step is not None and self.stop_at_step > self.steps:
            raise ValueError(f"stop_at_step ({self.stop_at_step}) is past steps ({self.steps}), where every run ends")
        if self.context_parallel > 1 and self.stage != "denoiser":
            raise ValueError("context_parallel splits the denoiser's tokens: it is for the denoiser stage")


#: Top-level keys of a training YAML.
TOP_KEYS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def load_train_config(path: str | Path, overrides: dict | None = None) -> dict[str, Any]:
    """Read a training YAML, apply ``overrides`` (top-level keys; None values ignored) and check
    every key against :class:`TrainConfig` (and ``data`` against ``DataConfig``, ``vae`` against
    ``VAEConfig``). Returns the config as a dict whose ``data`` is a ``DataConfig``.

    Raises:
        InputError (a ValueError): the file cannot be read, or a key is unknown, missing, of the
            wrong type or out of range; the message names the file and the key.
    """
    from lingen_model.models.vae import VAEConfig
    from lingen_model.training.data import DataConfig

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InputError(f"cannot read training config {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    cfg = dataclasses.asdict(from_dict(TrainConfig, raw, str(path)))
    cfg["data"] = from_dict(DataConfig, cfg["data"], f"{path}: data")
    if cfg["stage"] == "vae":
        from_dict(VAEConfig, cfg["vae"], f"{path}: vae")  # checked here; the trainer builds it
    return cfg
