"""``lingen eval``: generate clips for a prompt set and score them with the shapes-world judge
(colour, shape, motion direction, persistence, flicker — our analogues of VBench's colour,
object class, dynamic degree, subject consistency and temporal flickering; docs/design.md §9)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from lingen_cli.common import CFG_MAX_T_HELP, DIRECTION_GUIDANCE_HELP, HEAD_HELP, SHIFT_HELP, STAGGER_CONTEXT_HELP, STAGGER_HELP, CLIError, console, fail
from lingen_model.io.files import atomic_path


def evaluate(
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompt file (one per line). Default: the built-in set."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name, repo id or checkpoint directory."),
    length: str = typer.Option("4s", "--length", "-l", help="Clip length (4s, 60s, 33f)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's)."),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="CFG scale (default: the model's)."),
    seed_base: int = typer.Option(1_000_003, "--seed-base", help="Seed of prompt i is seed_base + i (never used in training)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score only the first N prompts."),
    two_objects: bool = typer.Option(False, "--two-objects", help="Add the built-in two-object prompts."),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="Also write each clip as mp4 here, and beside it a PNG contact sheet (a frame every 0.5 s, every 2 s for clips over 8 s)."),
    ground_truth: bool = typer.Option(False, "--ground-truth", help="Score the shapes world's own renders of each prompt (judge calibration; no model)."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Write per-prompt scores and the summary as JSON."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: score only prompts whose index is K mod N (same seeds as the full run), to split one run over processes."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Step caching: none, delta (Δ-DiT) or taylor (TaylorSeer) (default: the model's)."),
    stagger: Optional[float] = typer.Option(None, "--stagger", help=STAGGER_HELP),
    stagger_context: Optional[int] = typer.Option(None, "--stagger-context", help=STAGGER_CONTEXT_HELP),
    direction_guidance: Optional[float] = typer.Option(None, "--direction-guidance", help=DIRECTION_GUIDANCE_HELP),
    cfg_max_t: Optional[float] = typer.Option(None, "--cfg-max-t", help=CFG_MAX_T_HELP),
    head: Optional[int] = typer.Option(None, "--head", help=HEAD_HELP),
    shift: Optional[float] = typer.Option(None, "--shift", help=SHIFT_HELP),
    frames_cache: Optional[Path] = typer.Option(None, "--frames-cache", help="Keep generated clips here (keyed by weights, prompt, seed and settings) and reuse them: re-judge without generating again."),
) -> None:
    """Score a model's clips against their prompts; prints a table and a summary of pass rates."""
    import torch
    from rich.table import Table

    from lingen_model.generation.checkpoint import CheckpointError
    from lingen_model.generation.pipeline import GenerationRequest, LinGenPipeline
    from lingen_model.generation.step_cache import CACHE_MODES
    from lingen_model.geometry import frames_for_length
    from lingen_model.io.prompts import read_prompt_lines
    from lingen_model.shapes.judge import ALL_CRITERIA, score_clip, summarize
    from lingen_model.shapes.prompts import EVAL_PROMPTS, EVAL_PROMPTS_TWO

    try:
        if cache is not None and cache not in CACHE_MODES:
            raise CLIError(f"unknown cache {cache!r}; use {', '.join(CACHE_MODES)}")
        _check_options(steps, cfg, limit, save_dir, json_file)
        _check_seconds(length)
        if prompts is not None:
            items = [line for _, line in read_prompt_lines(prompts)]
        else:
            items = list(EVAL_PROMPTS) + (list(EVAL_PROMPTS_TWO) if two_objects else [])
        items = items[:limit] if limit else items
        indices = list(range(len(items)))
        if shard is not None:
            try:
                k, n = (int(v) for v in shard.split("/"))
                if n < 1 or not 0 <= k < n:
                    raise ValueError
            except ValueError:
                raise CLIError(f"--shard must be K/N with 0 <= K < N, got {shard!r}") from None
            indices = indices[k::n]
        if ground_truth:
            pipe, fps, size = None, 8.0, (128, 128)
        else:
            pipe = LinGenPipeline.from_pretrained(model, device="cuda" if torch.cuda.is_available() else "cpu")
            fps, size = pipe.native["fps"], (pipe.native["height"], pipe.native["width"])
        num_frames, _ = frames_for_length(length, fps)
        _check_length(num_frames, fps)
        settings = None
        if pipe is not None:
            settings = pipe.resolve(GenerationRequest(prompt="x", num_frames=num_frames, steps=steps, cfg_scale=cfg,
                                                      cache=cache, stagger=stagger, stagger_context=stagger_context,
                                                      direction_guidance=direction_guidance, shift=shift,
                                                      cfg_max_t=cfg_max_t, head=head))
        digest = None
        if frames_cache is not None and pipe is not None:
            from lingen_model.io import frames_cache as fcache

            digest = fcache.weights_digest(pipe.denoiser, pipe.vae)
    except (CLIError, CheckpointError, ValueError, TypeError) as e:
        raise fail(str(e))
    rows, t0 = [], time.time()
    for i in indices:
        prompt = items[i]
        t1, timing = time.time(), {}
        if pipe is None:
            import numpy as np

            from lingen_model.shapes.clips import scene_from_prompt
            from lingen_model.shapes.render import render

            frames = render(scene_from_prompt(prompt, np.random.default_rng(seed_base + i)), num_frames, *size, fps)
        else:
            req = pipe.resolve(GenerationRequest(prompt, num_frames=num_frames, steps=steps, cfg_scale=cfg,
                                                 seed=seed_base + i, cache=cache, stagger=stagger,
                                                 stagger_context=stagger_context, direction_guidance=direction_guidance,
                                                 shift=shift, cfg_max_t=cfg_max_t, head=head))
            frames, key = None, None
            if digest is not None:
                key = fcache.clip_key(digest, req.to_dict())
                frames = fcache.load(frames_cache, key)
            if frames is None:
                result = pipe.generate(req)
                frames = result.frames
                timing["denoise_s"] = round(result.timings.get("denoise_s", 0.0), 2)
                if result.request.cache != "none":
                    timing["full_calls"] = result.full_calls
                if key is not None:
                    fcache.store(frames_cache, key, frames)
        try:
            score = score_clip(frames, prompt, fps)
        except ValueError as e:
            print(f"[{i + 1}/{len(items)}] {prompt!r}: not scored ({e})", file=sys.stderr)
            continue
        if save_dir is not None:
            from lingen_cli.options import slugify
            from lingen_model.io.contact_sheet import write_contact_sheet
            from lingen_model.io.video import write_mp4

            stem = f"{i:03d}-{slugify(prompt)}"
            try:
                write_mp4(frames, save_dir / f"{stem}.mp4", fps)
                write_contact_sheet(frames, save_dir / f"{stem}.png", fps, title=f"{prompt} (seed {seed_base + i})")
            except (OSError, RuntimeError) as e:
                raise fail(f"cannot write to --save-dir {save_dir}: {getattr(e, 'strerror', None) or e}", 1)
        score = {k: v for k, v in score.items() if k in ALL_CRITERIA or k in ("passed", "detected")}
        rows.append({"prompt": prompt, "seed": seed_base + i, **score, **timing})
        print(f"[{i + 1}/{len(items)}] {prompt}: " + " ".join(f"{c} {_fmt(score[c], '.2f')}" for c in ALL_CRITERIA)
              + f" ({time.time() - t1:.1f}s)", file=sys.stderr, flush=True)
        unread = [c for c in ("color", "shape", "motion") if score[c] is None]
        if unread:
            print(f"[{i + 1}/{len(items)}] note: the prompt names no {'/'.join(unread)} the shapes world knows; "
                  f"{', '.join(unread)} not judged for it", file=sys.stderr, flush=True)
    if not rows:
        raise fail("no clip could be scored", 1)
    label = "ground truth (shapes world)" if ground_truth else (model or "lingen-tiny")
    summary = {"n": len(rows), "num_frames": num_frames, "fps": fps, "model": label,
               "seeds": [rows[0]["seed"], rows[-1]["seed"]], **summarize(rows), "n": len(rows),
               "wall_s": round(time.time() - t0, 1),
               "cache": "none" if settings is None else settings.cache,
               "stagger": 0.0 if settings is None else settings.stagger,
               "stagger_context": None if settings is None else settings.stagger_context,
               "direction_guidance": 0.0 if settings is None else settings.direction_guidance,
               "cfg_max_t": 1.0 if settings is None else settings.cfg_max_t,
               "head": 0 if settings is None else settings.head,
               "shift": None if settings is None else settings.shift}
    table = Table(title=f"lingen eval — {summary['model']}, {len(rows)} prompts, {num_frames} frames @ {fps:g} fps")
    table.add_column("criterion")
    table.add_column("mean", justify="right")
    table.add_column("passed / n", justify="right")
    table.add_column("pass %", justify="right")
    table.add_column("95 % interval (Wilson)", justify="right")
    for c in ALL_CRITERIA:
        name = "jumps / min" if c == "jumps" else c
        if not summary["n_judged"][c]:
            table.add_row(name, "–", "0 / 0", "not judged", "–")
            continue
        lo, hi = summary["pass_ci95"][c]
        table.add_row(name, f"{summary['mean'][c]:.3f}", f"{summary['passed'][c]} / {summary['n_judged'][c]}",
                      f"{summary['pass_pct'][c]:.1f}", f"{lo:.1f}–{hi:.1f}")
    console.print(table)
    if json_file is not None:
        try:
            with atomic_path(json_file) as tmp:
                tmp.write_text(json.dumps({"summary": summary, "clips": rows}, indent=2, default=str) + "\n")
        except OSError as e:
            raise fail(f"cannot write --json {json_file}: {e.strerror or e}", 1)


def _fmt(value, spec: str) -> str:
    """``value`` formatted, or "–" for a criterion that was not judged (None)."""
    return "–" if value is None else format(value, spec)


def _check_options(steps, cfg, limit, save_dir, json_file) -> None:
    """The option values that are wrong whatever the model: CLIError naming the option."""
    import math

    if steps is not None and steps < 1:
        raise CLIError(f"--steps must be >= 1, got {steps}")
    if cfg is not None and not (math.isfinite(cfg) and cfg >= 0):
        raise CLIError(f"--cfg must be a finite number >= 0, got {cfg}")
    if limit is not None and limit < 1:
        raise CLIError(f"--limit must be >= 1, got {limit}")
    for opt, path in (("--json", json_file),):
        if path is not None and Path(path).is_dir():
            raise CLIError(f"{opt} {path} is a directory; give a file name")
    if save_dir is not None:
        if save_dir.exists() and not save_dir.is_dir():
            raise CLIError(f"--save-dir {save_dir} is not a directory")
        try:
            save_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CLIError(f"cannot create --save-dir {save_dir}: {e.strerror or e}") from None


def _check_seconds(length: str) -> None:
    """A length in seconds past the limit is refused before the model loads (frames need its fps)."""
    from lingen_model.geometry import parse_length

    unit, value = parse_length(length)
    if unit == "s":
        _check_length(int(value) + 1, 1.0)


def _check_length(num_frames: int, fps: float) -> None:
    """The same length limit as ``lingen generate`` with its default preset (``auto``)."""
    from lingen_model.presets import pick_tier

    tier = pick_tier("auto")
    if (num_frames - 1) / fps > tier.max_length_s + 1e-9:
        raise CLIError(f"length {(num_frames - 1) / fps:.6g} s exceeds the {tier.name} preset's limit of "
                       f"{tier.max_length_s:g} s")


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the app."""
    app.command("eval")(evaluate)
