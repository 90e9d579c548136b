"""``lingen generate``: prompts → mp4 files with JSON sidecars, one prompt or a batch.

Bad input (empty prompt, bad length/resolution, unknown model or preset, unreadable
prompts file, unwritable output, corrupt checkpoint) stops before any generation with a
one-line error and exit code 2. In a batch, a failing prompt is reported and the batch
goes on; the exit code is 1 if any prompt failed. Under ``torchrun`` the prompts are
sharded across ranks; seeds never depend on the rank.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import typer

from lingen_cli.common import CFG_MAX_T_HELP, DIRECTION_GUIDANCE_HELP, HEAD_HELP, SHIFT_HELP, STAGGER_CONTEXT_HELP, STAGGER_HELP, EXIT_BAD_INPUT, EXIT_FAILED, CLIError, err_console, fail, interrupted, write_stdout_line
from lingen_cli.options import DTYPES, resolve_seed, slugify
from lingen_model.environment import versions
from lingen_model.errors import InputError, LinGenError
from lingen_model.geometry import parse_length, parse_resolution
from lingen_model.io.prompts import read_prompt_lines
from lingen_model.schema import from_dict

JOB_KEYS = {"prompt", "negative_prompt", "length", "res", "fps", "steps", "cfg", "seed", "out"}


@dataclasses.dataclass
class Job:
    """One clip to render; ``None`` fields fall back to the command-line values / model defaults.
    A JSONL line of ``--prompts`` is loaded into this strictly (:func:`lingen_model.schema.from_dict`)."""

    index: int
    prompt: str
    negative_prompt: str = ""
    length: Optional[Union[str, float]] = None
    res: Optional[Union[str, int]] = None
    fps: Optional[float] = None
    steps: Optional[int] = None
    cfg: Optional[float] = None
    seed: Optional[int] = None
    out: Optional[str] = None
    error: Optional[str] = None  # a line of the prompts file that could not be read


def read_prompts_file(path: Path) -> list[Job]:
    """Jobs from a prompts file: one prompt per line (blank lines and ``#`` comments skipped),
    or JSON objects per line (JSONL) with ``prompt`` and optional per-line overrides
    (``length``, ``res``, ``fps``, ``steps``, ``cfg``, ``seed``, ``negative_prompt``, ``out``).

    Raises InputError when the file cannot be read or holds no prompt; a bad line becomes a
    job carrying an ``error`` (so the batch goes on).
    """
    jobs: list[Job] = []
    for lineno, line in read_prompt_lines(path):
        idx = len(jobs)
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise InputError(f"{path}:{lineno}: not a JSON object")
                unknown = sorted(set(obj) - JOB_KEYS)
                if unknown:
                    raise InputError(f"{path}:{lineno}: unknown key(s): {', '.join(unknown)}")
                job = from_dict(Job, {**obj, "index": idx}, f"{path}:{lineno}")
                job.length = None if job.length is None else str(job.length)
                job.res = None if job.res is None else str(job.res)
                jobs.append(job)
            except ValueError as e:  # json.JSONDecodeError and InputError
                msg = str(e) if isinstance(e, InputError) else f"{path}:{lineno}: {e}"
                jobs.append(Job(index=idx, prompt=line[:60], error=msg))
        else:
            jobs.append(Job(index=idx, prompt=line))
    return jobs


def _check_output(out: Optional[Path], batch: bool) -> tuple[Path, Optional[Path]]:
    """(output directory, explicit file or None); checks the directory is writable."""
    if out is not None and out.suffix.lower() == ".mp4" and not out.is_dir():
        if batch:
            raise CLIError("--out names one .mp4 file; with --prompts give a directory")
        directory, file = out.parent if str(out.parent) else Path("."), out
    else:
        directory, file = (out or Path(".")), None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".lingen-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"output directory {directory} is not writable ({e.strerror or e})") from None
    return directory, file


def _shared_base_seed(world: int) -> int:
    """A random base seed chosen on rank 0 and broadcast, so seeds do not depend on the rank."""
    base = resolve_seed(-1)
    if world > 1:
        import torch.distributed as dist

        holder = [base]
        dist.broadcast_object_list(holder, src=0)
        base = holder[0]
    return base


def _frames_digest(frames) -> str:
    return hashlib.sha256(frames.tobytes()).hexdigest()


def _check_text(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise CLIError(f"{what} is not valid UTF-8 text") from None


def _output_name(req, model_label: str) -> str:
    """Default clip name: ``slug-seed-hash.mp4``; the hash (6 hex digits of SHA-256) covers the whole
    prompt and every setting, so two different requests never share a name (the slug alone is cut
    at 48 characters)."""
    key = json.dumps({**req.to_dict(), "model": model_label}, sort_keys=True, default=str)
    return f"{slugify(req.prompt)}-{req.seed}-{hashlib.sha256(key.encode()).hexdigest()[:6]}.mp4"


def _plan_job(job: Job, pipe, defaults: dict, tier, directory: Path, file: Optional[Path], base_seed: int,
              model_label: str):
    """Resolve one job and decide its output path, before anything renders. Returns (request, mp4 path)
    (raises CLIError / InputError / TypeError on bad input)."""
    from lingen_model.generation.pipeline import GenerationRequest

    if job.error:
        raise CLIError(job.error)
    prompt = job.prompt.strip() if isinstance(job.prompt, str) else ""
    if not prompt:
        raise CLIError("prompt is empty")
    _check_text("prompt", prompt)
    if isinstance(job.negative_prompt, str):
        _check_text("negative_prompt", job.negative_prompt)
    seed_opt = job.seed if job.seed is not None else defaults["seed"]
    if isinstance(seed_opt, bool) or not isinstance(seed_opt, int):
        raise CLIError(f"seed must be an integer, got {seed_opt!r}")
    seed = (base_seed + job.index) % 2**31 if seed_opt == -1 else resolve_seed(seed_opt)
    pick = lambda key, default: getattr(job, key) if getattr(job, key) is not None else default  # noqa: E731
    req = pipe.resolve(GenerationRequest(
        prompt=prompt, negative_prompt=job.negative_prompt or None, length=pick("length", defaults["length"]),
        resolution=pick("res", defaults["res"]), fps=pick("fps", defaults["fps"]), steps=pick("steps", defaults["steps"]),
        cfg_scale=pick("cfg", defaults["cfg"]), seed=seed, method=defaults["sampler"],
        cache=defaults.get("cache"), stagger=defaults.get("stagger"), stagger_context=defaults.get("stagger_context"),
        direction_guidance=defaults.get("direction_guidance"), shift=defaults.get("shift"),
        cfg_max_t=defaults.get("cfg_max_t"), head=defaults.get("head")))
    if req.seconds > tier.max_length_s + 1e-9:
        raise CLIError(f"length {pick('length', defaults['length'])} ({req.seconds:.3g} s) exceeds the "
                       f"{tier.name} preset's limit of {tier.max_length_s:g} s")
    if file is not None:
        out_path = file
    elif job.out is not None:
        if not isinstance(job.out, str) or not Path(job.out).name.strip(". "):
            raise CLIError(f"'out' must name a file, got {job.out!r}")
        name = Path(job.out).name
        out_path = directory / (name if name.endswith(".mp4") else name + ".mp4")
    else:
        out_path = directory / _output_name(req, model_label)
    return req, out_path


def _render_job(job: Job, req, out_path: Path, pipe, tier, bars: bool, prefix: str, model_label: str,
                overwrite: bool) -> dict:
    """Render one planned job and write its mp4 + sidecar, both or neither; returns the result record."""
    from lingen_cli.progress import PhaseProgress
    from lingen_model.io.outputs import write_clip

    for note in req.notes:
        print(f"{prefix}note: {note}", file=sys.stderr, flush=True)
    t_start = time.perf_counter()
    with PhaseProgress(bars=bars, prefix=prefix) as progress:
        result = pipe.generate(req, progress=progress.update)
        frames = result.frames
        progress.update("write", 0, 1)
        record = {
            "status": "ok", "prompt": req.prompt, "negative_prompt": req.negative_prompt, "path": str(out_path),
            "seed": req.seed, "num_frames": req.num_frames, "fps": req.fps, "length_s": round(req.seconds, 4),
            "width": req.width, "height": req.height, "steps": req.steps, "cfg_scale": req.cfg_scale,
            "cfg_max_t": req.cfg_max_t, "sampler": req.method, "shift": req.shift, "cache": req.cache, "stagger": req.stagger, "stagger_context": req.stagger_context, "head": req.head,
            "direction_guidance": req.direction_guidance, "contrast_prompt": req.contrast_prompt, "model": model_label, "mixer": pipe.mixer, "preset": tier.name,
            "device": str(pipe.device), "dtype": str(pipe.dtype).replace("torch.", ""),
            "frames_sha256": _frames_digest(frames), "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

        def sidecar(write_s: float) -> dict:
            record["timings_s"] = {**{k: round(v, 3) for k, v in result.timings.items()}, "write_s": round(write_s, 3),
                                   "total_s": round(time.perf_counter() - t_start, 3)}
            return record

        write_clip(frames, out_path, req.fps, sidecar, overwrite=overwrite)
        progress.update("write", 1, 1)
    return record


def _check_collisions(plans: list, source: str) -> None:
    """Two jobs of one batch writing the same file (mp4 or sidecar) → CLIError naming both, before any render."""
    seen: dict[str, int] = {}
    for job, req, path, err in plans:
        if path is None:
            continue
        for name in (str(path), str(path.with_suffix(".json"))):
            key = os.path.normcase(os.path.abspath(name))
            if key in seen and seen[key] != job.index:
                raise CLIError(f"{source}: prompts {seen[key] + 1} and {job.index + 1} would both write {name}; "
                               "give them different 'out' names or seeds")
            seen[key] = job.index


def generate(
    prompt: Optional[str] = typer.Argument(None, help="Text prompt (or use --prompts FILE)."),
    length: str = typer.Option("4s", "--length", "-l", help="Clip length: 4s, 2.5s, 1m, 97f, or a named length."),
    res: Optional[str] = typer.Option(None, "--res", help="Resolution: 512, 512x288 (WxH), 768p, or a named one. Default: the model's."),
    fps: Optional[float] = typer.Option(None, "--fps", help="Frames per second (default: the model's native fps)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps (default: the model's)."),
    cfg: Optional[float] = typer.Option(None, "--cfg", help="Classifier-free guidance scale (default: the model's)."),
    seed: int = typer.Option(-1, "--seed", help="Random seed; -1 draws one (always recorded in the sidecar)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Registry name, ORG/REPO[@REV], or checkpoint directory. Default: embedded lingen-tiny."),
    preset: str = typer.Option("auto", "--preset", help="Hardware tier (cpu, 8gb, 24gb, 80gb) or auto."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output .mp4 file, or a directory (default: current directory)."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="File with one prompt per line, or JSONL with per-line overrides."),
    sampler: str = typer.Option("euler", "--sampler", help="ODE solver: euler, heun or unipc (needs the wan extra)."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Step caching: none, delta (Δ-DiT) or taylor (TaylorSeer); fewer full denoiser evaluations (default: the model's, none for lingen-tiny)."),
    stagger: Optional[float] = typer.Option(None, "--stagger", help=STAGGER_HELP),
    stagger_context: Optional[int] = typer.Option(None, "--stagger-context", help=STAGGER_CONTEXT_HELP),
    direction_guidance: Optional[float] = typer.Option(None, "--direction-guidance", help=DIRECTION_GUIDANCE_HELP),
    cfg_max_t: Optional[float] = typer.Option(None, "--cfg-max-t", help=CFG_MAX_T_HELP),
    head: Optional[int] = typer.Option(None, "--head", help=HEAD_HELP),
    shift: Optional[float] = typer.Option(None, "--shift", help=SHIFT_HELP),
    device: Optional[str] = typer.Option(None, "--device", help="Override the preset's device (cpu, cuda, cuda:1)."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Override the preset's dtype (float32, bfloat16, float16)."),
    no_download: bool = typer.Option(False, "--no-download", help="Never download; fail if the model is not cached."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON result line per clip on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, only plain lines."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files (mp4 and sidecar)."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Skip clips whose mp4 and sidecar already exist (finish a half-done batch)."),
    force: bool = typer.Option(False, "--force", help="Try even when the memory estimate exceeds what the device has."),
    cp: int = typer.Option(1, "--cp", help="Context parallelism under torchrun: split each clip's tokens over this many ranks (a divisor of the world size; its first rank writes the file)."),
) -> None:
    """Generate video clip(s) from text prompt(s) and write H.264 mp4 files with JSON sidecars.

    Existing files are never replaced unless --overwrite; --skip-existing keeps them and renders the rest."""
    try:
        jobs, setup = _prepare(prompt, length, res, fps, seed, preset, out, prompts, sampler, device, dtype)
        from lingen_model.generation.step_cache import CACHE_MODES

        if cache is not None and cache not in CACHE_MODES:
            raise CLIError(f"unknown cache {cache!r}; use {', '.join(CACHE_MODES)}")
    except LinGenError as e:
        raise fail(str(e), e.exit_code)
    if cp > 1 and stagger:
        raise fail("--stagger does not combine with --cp: context parallelism denoises every frame at one time", EXIT_BAD_INPUT)
    from lingen_model.training.distributed import finish_distributed, init_distributed

    rank, world = init_distributed()
    if cp < 1 or world % cp:
        raise fail(f"--cp {cp} must be a positive divisor of the number of ranks ({world})", EXIT_BAD_INPUT)
    try:
        pipe, model_label, tier = _load_pipeline(model, setup, no_download, quiet)
    except (LinGenError, ValueError, OSError) as e:  # any model that cannot be used is bad input
        raise fail(str(e), EXIT_BAD_INPUT)
    if overwrite and skip_existing:
        raise fail("--overwrite and --skip-existing exclude each other")
    base_seed = _shared_base_seed(world)
    defaults = {"length": setup["length"], "res": setup["res"], "fps": fps, "steps": steps, "cfg": cfg, "seed": seed, "sampler": sampler,
                # context parallelism takes one time per clip: no staggering, not even a model's long-clip default
                "cache": cache, "stagger": 0.0 if cp > 1 else stagger, "stagger_context": stagger_context,
                "direction_guidance": direction_guidance, "shift": shift, "cfg_max_t": cfg_max_t, "head": head}
    bars = not quiet and sys.stderr.isatty()
    single = len(jobs) == 1 and prompts is None
    plans = []  # (job, request, mp4 path, error): every job is resolved and named before anything renders
    for job in jobs:
        try:
            req, path = _plan_job(job, pipe, defaults, tier, setup["directory"], setup["file"], base_seed, model_label)
            plans.append((job, req, path, None))
        except (LinGenError, ValueError, TypeError) as e:
            if single:
                raise fail(str(e), getattr(e, "exit_code", EXIT_BAD_INPUT))
            plans.append((job, None, None, e))
    try:
        _check_collisions(plans, str(prompts or "--out"))
        skipped = _check_existing(plans, overwrite, skip_existing)
        estimates = _check_memory(plans, pipe, tier, force, quiet)
    except LinGenError as e:
        raise fail(str(e), e.exit_code)
    # context parallelism: ranks form groups of ``cp`` that render each clip together (replicas
    # take every ``world // cp``-th prompt); the group's first rank writes, the others only compute
    replica, replicas, writer = rank // cp, world // cp, rank % cp == 0
    if cp > 1:
        from lingen_model.models.context_parallel import ContextParallelDenoiser, context_parallel_group

        pipe.denoiser = ContextParallelDenoiser(pipe.denoiser, context_parallel_group(cp))
    if _trained_on_shapes(pipe, model_label) and writer:
        _warn_unknown_prompts(plans[replica::replicas], single, len(jobs))
    results = []
    for job, req, out_path, error in plans[replica::replicas]:
        prefix = "" if single else f"[{job.index + 1}/{len(jobs)}] "
        try:
            if error is not None:
                raise error
            if job.index in skipped:
                rec = {"status": "skipped", "prompt": req.prompt, "path": str(out_path), "seed": req.seed}
                print(f"{prefix}skipped {out_path} (exists)", file=sys.stderr, flush=True)
            elif not writer:
                pipe.generate(req)  # this rank's share of the clip; the group's first rank writes it
                continue
            else:
                if job.index in estimates:
                    print(f"{prefix}{estimates[job.index]}", file=sys.stderr, flush=True)
                rec = _render_job(job, req, out_path, pipe, tier, bars, prefix, model_label, overwrite)
        except KeyboardInterrupt:
            raise fail("interrupted; no partial file was left", 130)
        except (LinGenError, ValueError, TypeError, OSError, RuntimeError) as e:
            if interrupted():
                raise fail("interrupted; no partial file was left", 130)
            if single:
                raise fail(str(e), getattr(e, "exit_code", EXIT_FAILED))
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            rec = {"status": "failed", "prompt": job.prompt, "error": msg}
            print(f"error: {prefix}{msg}", file=sys.stderr)
        if not writer:
            continue  # the group's first rank reports the clip
        rec["index"] = job.index
        results.append(rec)
        if json_out:  # one write per line: ranks of a torchrun share this pipe, and print() writes the
            write_stdout_line(json.dumps(rec))  # text and the newline apart, which lets lines interleave
        elif rec["status"] == "ok":
            print(f"{prefix}wrote {rec['path']} (seed {rec['seed']}, {rec['num_frames']} frames, "
                  f"{rec['width']}x{rec['height']}, {rec['timings_s']['total_s']:.1f}s)", file=sys.stderr, flush=True)
    if world > 1:
        import torch.distributed as dist

        gathered: list = [None] * world
        dist.all_gather_object(gathered, results)
        results = sorted((r for part in gathered for r in part), key=lambda r: r["index"])
        finish_distributed()
    failed = [r for r in results if r["status"] == "failed"]
    if not single and rank == 0 and not json_out:
        _summary(results)
    if failed:
        raise typer.Exit(EXIT_FAILED if not single else EXIT_BAD_INPUT)


def _prepare(prompt, length, res, fps, seed, preset, out, prompts, sampler, device, dtype):
    """Check everything that can be checked before loading the model; returns (jobs, setup)."""
    from lingen_model.presets import load_sizes, pick_tier

    if prompt is not None and prompts is not None:
        raise CLIError("give either a PROMPT or --prompts FILE, not both")
    if prompts is not None:
        jobs = read_prompts_file(prompts)
    elif prompt is None or not prompt.strip():
        raise CLIError("prompt is empty: give a PROMPT or --prompts FILE")
    else:
        jobs = [Job(index=0, prompt=prompt)]
    sizes = load_sizes()
    if res is not None:
        parse_resolution(sizes["resolutions"].get(res, res), stride=1)  # format only; stride checked after load
    if fps is not None and not (0 < fps <= 240):
        raise CLIError(f"fps must be in (0, 240], got {fps:g}")
    if seed < -1:
        raise CLIError(f"seed must be -1 (random) or >= 0, got {seed}")
    from lingen_model.generation.flow import METHODS

    if sampler not in METHODS:
        raise CLIError(f"unknown sampler {sampler!r}; use {', '.join(METHODS)}")
    if dtype is not None and dtype not in DTYPES:
        raise CLIError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    tier = pick_tier(preset)
    unit, value = parse_length(sizes["lengths"].get(length, length))
    if unit == "s" and value > tier.max_length_s + 1e-9:  # seconds: refused before the model loads
        raise CLIError(f"length {length} ({value:.6g} s) exceeds the {tier.name} preset's limit of {tier.max_length_s:g} s")
    directory, file = _check_output(out, batch=prompts is not None)
    for job in jobs:  # named sizes resolve to their values once (other types are refused when the job is resolved)
        job.length = sizes["lengths"].get(job.length, job.length) if isinstance(job.length, str) else job.length
        job.res = sizes["resolutions"].get(job.res, job.res) if isinstance(job.res, str) else job.res
    return jobs, {"tier": tier, "directory": directory, "file": file, "device": device, "dtype": dtype,
                  "length": sizes["lengths"].get(length, length), "res": sizes["resolutions"].get(res, res) if res else None}


def _load_pipeline(model, setup, no_download, quiet):
    import torch

    from lingen_cli.progress import PhaseProgress
    from lingen_model.generation.checkpoint import CheckpointError
    from lingen_model.generation.pipeline import LinGenPipeline

    tier = setup["tier"]
    device = setup["device"] or tier.device
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", device):
        raise CLIError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"device {device} requested but CUDA is not available; use --preset cpu")
    dtype = getattr(torch, DTYPES[setup["dtype"] or tier.dtype])
    with PhaseProgress(bars=not quiet and sys.stderr.isatty()) as progress:
        progress.update("load", 0, 1)
        try:
            pipe = LinGenPipeline.from_pretrained(model, device=device, dtype=dtype, allow_download=not no_download,
                                                  vae_chunk_frames=tier.vae_chunk_frames,
                                                  offload_text_encoder=tier.text_encoder_offload,
                                                  max_params_m=tier.max_params_m)
        except CheckpointError as e:
            raise CLIError(str(e)) from None
        progress.update("load", 1, 1)
    n_params = pipe.num_parameters
    if n_params > tier.max_params_m * 1e6:
        raise CLIError(f"model has {n_params / 1e6:.0f}M parameters; the {tier.name} preset allows {tier.max_params_m:g}M")
    label = model or "lingen-tiny"
    return pipe, label, tier


def _check_existing(plans: list, overwrite: bool, skip_existing: bool) -> set[int]:
    """Existing outputs, before anything renders: an error naming the first one (unless --overwrite),
    or with --skip-existing the indices of jobs whose mp4 and sidecar both exist (a half pair is an error)."""
    from lingen_model.io.outputs import OutputExistsError, existing_outputs

    skipped: set[int] = set()
    clashes = []
    for job, req, path, err in plans:
        if path is None:
            continue
        found = existing_outputs(path)
        if any(p.is_dir() for p in found):
            raise OutputExistsError(f"{next(p for p in found if p.is_dir())} is a directory; cannot write a clip there")
        if not found or overwrite:
            continue
        if skip_existing and len(found) == 2:
            skipped.add(job.index)
        elif skip_existing:
            raise OutputExistsError(f"{found[0]} exists without its {'sidecar' if found[0] == path else 'mp4'}; "
                                    "remove it or use --overwrite")
        else:
            clashes.append(found[0])
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise OutputExistsError(f"{clashes[0]} already exists{more}; use --overwrite to replace or --skip-existing to keep")
    return skipped


def _check_memory(plans: list, pipe, tier, force: bool, quiet: bool) -> dict[int, str]:
    """Estimate each job's peak memory before it renders; a job over what the device has becomes an
    error (unless --force). Returns job index → a one-line estimate for long runs (printed before them)."""

    from lingen_model.errors import InputError
    from lingen_model.generation.estimate import device_memory_bytes, estimate_request_memory, run_flops
    from lingen_model.io.files import format_bytes

    den_cfg, vae_cfg = pipe.denoiser.config, pipe.vae.config
    if getattr(den_cfg, "arch", None) == "wan":  # the memory model covers lingen's own denoiser and VAE only
        return {}
    dtype_bytes = pipe.dtype.itemsize if hasattr(pipe.dtype, "itemsize") else 4
    n_den = sum(p.numel() for p in pipe.denoiser.parameters())
    n_vae = sum(p.numel() for p in pipe.vae.parameters())
    avail = device_memory_bytes(pipe.device)
    lines: dict[int, str] = {}
    flops_per_s = None
    for i, (job, req, path, err) in enumerate(plans):
        if req is None:
            continue
        est = estimate_request_memory(den_cfg, vae_cfg, req.num_frames, req.height, req.width, dtype_bytes,
                                      cfg_batch=2 if req.cfg_scale != 1.0 else 1,
                                      vae_chunk_frames=pipe.vae_chunk_frames, den_params=n_den, vae_param_count=n_vae)
        if avail is not None and est.total > avail:
            msg = (f"this clip needs about {format_bytes(est.total)} of memory ({req.num_frames} frames at "
                   f"{req.width}x{req.height}); {pipe.device} has {format_bytes(avail)} available; use a shorter "
                   "length or lower --res, or --force to try anyway")
            if not force:
                plans[i] = (job, None, None, InputError(msg))
                continue
            print(f"warning: {msg.split('; use')[0]}; trying anyway (--force)", file=sys.stderr, flush=True)
        flops = run_flops(den_cfg, req.num_frames, req.height, req.width, req.steps,
                          cfg_batch=2 if req.cfg_scale != 1.0 else 1, heun=req.method == "heun", vae_cfg=vae_cfg,
                          cache=req.cache, stagger=req.stagger, stagger_context=req.stagger_context,
                          contrast=req.contrast_prompt is not None, head=req.head, head_steps=req.head_steps,
                          head_cache=req.head_cache)
        if flops < MIN_TIMED_FLOPS:  # a short run: no estimate printed, no forward timed
            continue
        if flops_per_s is None:
            flops_per_s = _measure_flops_per_s(pipe)
        seconds = flops / flops_per_s if flops_per_s else None
        if seconds is not None and seconds > 60:
            lines[job.index] = (f"estimate: peak memory ~{format_bytes(est.total)}"
                                + (f" of {format_bytes(avail)} available" if avail else "")
                                + f", ~{_fmt_duration(seconds)} of denoising ({flops / 1e12:.3g} TFLOP at "
                                f"{flops_per_s / 1e9:.3g} GFLOP/s measured)")
    return lines


def _fmt_duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


#: Runs of fewer denoiser FLOPs get no time estimate: even at 10 GFLOP/s they take under a minute.
MIN_TIMED_FLOPS = 5e11


def _measure_flops_per_s(pipe) -> float | None:
    """Denoiser FLOP/s on this device, from one timed forward of a native 4 s clip's latent (9 latent
    frames at the native size, batch 2 as with CFG) after one warm-up, and the FLOP model
    (lingen_model.bench.flops). A smaller input ran at a third of the rate of a real sampling call."""
    import torch

    from lingen_model.bench.flops import denoiser_flops

    try:
        shape = (2, pipe.denoiser.config.in_channels, 9, max(2, pipe.native["height"] // pipe.vae.spatial_factor),
                 max(2, pipe.native["width"] // pipe.vae.spatial_factor))
        z = torch.zeros(shape, device=pipe.device, dtype=pipe.dtype)
        t = torch.full((2,), 0.5, device=pipe.device, dtype=pipe.dtype)
        ctx = torch.zeros((2, 8, pipe.denoiser.config.text_dim), device=pipe.device, dtype=pipe.dtype)
        mask = torch.ones((2, 8), device=pipe.device, dtype=torch.bool)
        with torch.no_grad():
            pipe.denoiser(z, t, ctx, mask)
            if pipe.device.type == "cuda":
                torch.cuda.synchronize(pipe.device)
            t0 = time.perf_counter()
            pipe.denoiser(z, t, ctx, mask)
            if pipe.device.type == "cuda":
                torch.cuda.synchronize(pipe.device)
            dt = time.perf_counter() - t0
        return denoiser_flops(pipe.denoiser.config, shape[1:], batch=2, text_len=8).total / max(dt, 1e-6)
    except Exception:  # noqa: BLE001 - an estimate that cannot be made is left out, never fatal
        return None


def _trained_on_shapes(pipe, model_label: str) -> bool:
    """Whether the model learned only the shapes world: the embedded model, or a checkpoint whose
    config records shapes-world training data."""
    training = pipe.config.get("training") if isinstance(pipe.config, dict) else None
    return model_label == "lingen-tiny" or (isinstance(training, dict) and training.get("data") == "shapes")


def _warn_unknown_prompts(plans: list, single: bool, n_jobs: int) -> None:
    """One line for each prompt that names no colour, shape or motion of the shapes world
    (:func:`lingen_model.shapes.world.parse_prompt`); the run goes on."""
    from lingen_model.shapes.language import parse_prompt

    for job, req, path, err in plans:
        if req is None:
            continue
        try:
            parse_prompt(req.prompt)
            known = True
        except ValueError:
            known = False
        if not known:
            prefix = "" if single else f"[{job.index + 1}/{n_jobs}] "
            print(f"{prefix}note: the prompt names no colour, shape or motion the embedded model was trained on "
                  "(the shapes world); expect an unrelated clip", file=sys.stderr, flush=True)


def _summary(results: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="lingen generate")
    for col in ("#", "status", "prompt", "seed", "output / error", "time (s)"):
        table.add_column(col)
    for r in results:
        ok = r["status"] == "ok"
        status = {"ok": "[green]ok[/green]", "skipped": "[yellow]skipped[/yellow]"}.get(r["status"], "[red]failed[/red]")
        table.add_row(str(r["index"] + 1), status, r["prompt"][:40],
                      str(r.get("seed", "")), r.get("path", "") if r["status"] != "failed" else r.get("error", ""),
                      f"{r['timings_s']['total_s']:.1f}" if ok else "")
    err_console.print(table)
    n_ok = sum(r["status"] == "ok" for r in results)
    n_skip = sum(r["status"] == "skipped" for r in results)
    err_console.print(f"{n_ok}/{len(results)} clips written" + (f", {n_skip} skipped (existing)" if n_skip else ""))


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the app."""
    app.command("generate")(generate)
