#!/usr/bin/env bash
# One-shot check of lingen's GPU path on a CUDA machine; every log and JSON goes into OUT_DIR.
#
#   scripts/gpu_check.sh OUT_DIR
#
# Steps (each under a time limit taken from one overall budget, default 12 min, install
# included; a failed step is recorded and the next one still runs):
#   1. stop at once, with one line and exit 3, if torch sees no CUDA device;
#   2. install what is missing: mamba-ssm + causal-conv1d (no build isolation, so they build
#      against the torch already there), then this repository with `.[cuda,test]`; pip runs
#      with a constraint that keeps the installed torch;
#   3. `lingen info --json`, nvidia-smi;
#   4. `pytest -m cuda` (the numbers the tests measure land in cuda_test_numbers.jsonl);
#   5. `lingen generate --preset auto` on the embedded model, a 4 s and a 60 s clip;
#   6. `lingen benchmark --model 4b --device cuda --dtype bfloat16 --res 512` at 17 s, 34 s
#      and 68 s (one run per length, so a late timeout loses one length only; every cell,
#      DiT ones included, has --cell-timeout);
#   7. summary.json + a Markdown table of the benchmark for docs/benchmarks.md.
# Exit status: 0 all steps passed, 1 a step failed or timed out, 2 bad usage or no torch,
# 3 no CUDA device.
#
# Environment: PYTHON (default python3), LINGEN_GPU_CHECK_BUDGET_S (720),
# LINGEN_GPU_CHECK_CELL_TIMEOUT (150 s per benchmark cell), LINGEN_GPU_CHECK_SKIP_INSTALL=1
# (use what is installed; for machines without network access).
set -uo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    echo "usage: scripts/gpu_check.sh OUT_DIR   (writes every log and JSON of the GPU check into OUT_DIR)" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1" 2>/dev/null || { echo "gpu_check: error: cannot create the output folder $1" >&2; exit 2; }
OUT=$(cd "$1" && pwd)
PY=${PYTHON:-python3}
BUDGET=${LINGEN_GPU_CHECK_BUDGET_S:-720}
CELL_TIMEOUT=${LINGEN_GPU_CHECK_CELL_TIMEOUT:-150}
START=$(date +%s)
LOG="$OUT/gpu_check.log"
: > "$LOG"
: > "$OUT/steps.tsv"
cd "$ROOT"

say() { echo "gpu_check: $*" | tee -a "$LOG" >&2; }
die() { local code=$1; shift; say "error: $*"; exit "$code"; }

# --- 1. a CUDA device, before anything is installed --------------------------------------
command -v "$PY" >/dev/null 2>&1 || die 2 "no Python interpreter '$PY' on PATH (set PYTHON)"
probe=$("$PY" - 2>>"$LOG" <<'EOF'
try:
    import torch
except Exception as e:  # noqa: BLE001
    print("notorch", f"{type(e).__name__}: {e}".replace("\n", " "))
    raise SystemExit(0)
if not torch.cuda.is_available():
    print("nocuda", torch.__version__, torch.version.cuda or "none")
else:
    p = torch.cuda.get_device_properties(0)
    print("ok", torch.__version__, torch.version.cuda, f"{p.total_memory / 2**30:.0f}GiB", p.name)
EOF
)
read -r status torch_version cuda_version rest <<<"${probe:-notorch no output}"
case $status in
    ok) say "torch $torch_version, CUDA $cuda_version, $rest" ;;
    nocuda) die 3 "no CUDA device: torch $torch_version (CUDA build: $cuda_version) sees no GPU; run this on a machine with an NVIDIA GPU" ;;
    *) die 2 "torch is not importable with $PY ($torch_version $cuda_version $rest); install your CUDA build of torch first" ;;
esac

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }
FAILED=0
# step NAME CAP_SECONDS LOGFILE COMMAND...: run under min(CAP, budget left - 15 s), record rc and seconds
step() {
    local name=$1 cap=$2 log=$3; shift 3
    local left=$(( $(remaining) - 15 )) limit rc s
    limit=$(( cap < left ? cap : left ))
    if (( limit < 20 )); then
        say "$name: skipped, the ${BUDGET} s budget is spent"
        printf '%s\tskipped\t0\t%s\n' "$name" "$log" >> "$OUT/steps.tsv"
        FAILED=1
        return 1
    fi
    say "$name (limit ${limit} s) -> $(basename "$log")"
    s=$(date +%s)
    timeout --kill-after=15 "$limit" "$@" > "$log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - s ))" "$log" >> "$OUT/steps.tsv"
    if (( rc == 124 || rc == 137 )); then
        say "$name: timed out after ${limit} s"
    elif (( rc != 0 )); then
        say "$name: failed (exit $rc): $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
    fi
    (( rc == 0 )) || FAILED=1
    return $rc
}

# --- 2. install -------------------------------------------------------------------------
if [[ ${LINGEN_GPU_CHECK_SKIP_INSTALL:-0} != 1 ]]; then
    echo "torch==$torch_version" > "$OUT/constraints.txt"
    if ! "$PY" -c "import mamba_ssm, causal_conv1d" >/dev/null 2>&1; then
        step install_cuda_kernels 330 "$OUT/install_cuda_kernels.log" bash -c \
            '"$0" -m pip install -c "$1" packaging ninja wheel setuptools &&
             "$0" -m pip install --no-build-isolation -c "$1" "mamba-ssm>=2.2" "causal-conv1d>=1.4"' \
            "$PY" "$OUT/constraints.txt"
    fi
    extras=test
    if "$PY" -c "import mamba_ssm, causal_conv1d" >/dev/null 2>&1; then
        extras=cuda,test
    else
        say "mamba-ssm/causal-conv1d not importable: installing .[test] only; the scan runs on the torch backend"
    fi
    step install_lingen 240 "$OUT/install_lingen.log" "$PY" -m pip install -c "$OUT/constraints.txt" -e ".[$extras]"
else
    say "LINGEN_GPU_CHECK_SKIP_INSTALL=1: using the installed packages"
fi

# --- 3. environment ---------------------------------------------------------------------
step info 60 "$OUT/info.log" bash -c '"$0" -m lingen_cli info --json > "$1"' "$PY" "$OUT/info.json"
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

# --- 4. CUDA tests ----------------------------------------------------------------------
: > "$OUT/cuda_test_numbers.jsonl"
step pytest_cuda 300 "$OUT/pytest_cuda.log" env LINGEN_TEST_RECORD="$OUT/cuda_test_numbers.jsonl" \
    "$PY" -m pytest -m cuda -v -rs -p no:cacheprovider --junitxml "$OUT/pytest_cuda.xml"

# --- 5. generate with the embedded model --------------------------------------------------
mkdir -p "$OUT/generate"
for length in 4s 60s; do
    step "generate_$length" 150 "$OUT/generate_$length.log" "$PY" -m lingen_cli generate \
        "a red circle moving right on a gray background" --preset auto --length "$length" --seed 3 \
        --out "$OUT/generate" --json --quiet --no-download
done

# --- 6. LinGen-4B vs DiT-4B ---------------------------------------------------------------
for length in 17s 34s 68s; do
    repeats=3
    [[ $length == 68s ]] && repeats=1   # a DiT-4B forward at 68 s is about a minute
    step "benchmark_4b_$length" 420 "$OUT/benchmark_4b_$length.log" "$PY" -m lingen_cli benchmark \
        --model 4b --device cuda --dtype bfloat16 --res 512 --length "$length" --compare dit \
        --warmup 1 --repeats "$repeats" --cell-timeout "$CELL_TIMEOUT" --json "$OUT/benchmark_4b_$length.json"
done

# --- 7. summary ---------------------------------------------------------------------------
"$PY" - "$OUT" "$(( $(date +%s) - START ))" <<'EOF' 2>>"$LOG" | tee -a "$LOG"
import json, sys
from pathlib import Path

out, wall = Path(sys.argv[1]), int(sys.argv[2])
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, secs, log = line.split("\t")
    steps.append({"step": name, "exit": rc, "seconds": int(secs), "log": Path(log).name})
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None
info = load("info.json") or {}
numbers = [json.loads(l) for l in (out / "cuda_test_numbers.jsonl").read_text().splitlines() if l.strip()] \
    if (out / "cuda_test_numbers.jsonl").exists() else []
clips = []
for log in sorted(out.glob("generate_*.log")):
    clips += [json.loads(l) for l in log.read_text().splitlines() if l.startswith("{")]
rows = []
for length in ("17s", "34s", "68s"):
    rep = load(f"benchmark_4b_{length}.json")
    if not rep:
        rows.append({"length": length, "status": "no report"})
        continue
    by = {c["mixer"]: c for c in rep.get("cells", [])}
    gpu = rep.get("machine", {}).get("gpu")
    rows.append({"length": length, "gpu": gpu, **{f"{m}_{k}": by.get(m, {}).get(k) for m in ("mate", "attention")
                 for k in ("status", "median_s", "first_call_s", "peak_memory_bytes", "scan_backend", "message")}})
summary = {"wall_s": wall, "steps": steps, "environment": info.get("environment", info),
           "cuda_test_numbers": numbers, "generate": clips, "benchmark_4b_512": rows}
(out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")

def fmt_s(r, m):
    s = r.get(f"{m}_median_s")
    return f"{s:.2f}" if s is not None else str(r.get(f"{m}_status") or "–")
def fmt_gb(r, m):
    b = r.get(f"{m}_peak_memory_bytes")
    return f"{b / 2**30:.1f}" if b else "–"
print("\n| 512² | LinGen-4B s/step | DiT-4B s/step | DiT ÷ LinGen | LinGen peak GiB | DiT peak GiB | scan | GPU |")
print("|---|---:|---:|---:|---:|---:|---|---|")
for r in rows:
    a, d = r.get("mate_median_s"), r.get("attention_median_s")
    ratio = f"{d / a:.1f}×" if a and d else "–"
    print(f"| {r['length']} | {fmt_s(r, 'mate')} | {fmt_s(r, 'attention')} | {ratio} | {fmt_gb(r, 'mate')} | "
          f"{fmt_gb(r, 'attention')} | {r.get('mate_scan_backend') or '–'} | {r.get('gpu') or '–'} |")
print()
for s in steps:
    print(f"{s['step']:<22} exit {s['exit']:>7}  {s['seconds']:>4} s  {s['log']}")
print(f"total {wall} s; summary: {out / 'summary.json'}")
EOF

if (( FAILED )); then
    say "done with failures (see steps above and $OUT)"
    exit 1
fi
say "done: all steps passed ($OUT)"
