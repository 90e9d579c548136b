"""Analysis for ``probe_selfscore.py`` (session 37, issue 14): what best-of-K by the model's own losses would keep.

Given K judged eval runs of the same prompts whose seeds are the K candidates of a best-of-K (``lingen eval --json``
of seed bases b, b + 1,000,003, …) and the ``SELFSCORE_LOG`` of each, every selector below picks one candidate per
prompt from the logged losses alone (no verdict is read to choose), and the table gives the chosen clips' pass
counts per criterion, beside each run alone and the best choice per criterion (an upper bound, per line).

Selectors (lower is better; ``L(c)`` = a caption's loss summed over latent frames, averaged over the times in
``--times`` and the logged noises):

* ``prompt``: L(prompt) — how likely the clip is under its prompt;
* ``empty``: L("") — how likely the clip is at all;
* ``pmi``: L(prompt) − L("") — how much the prompt explains (pointwise mutual information, up to sign);
* ``margin``: L(prompt) − L(contrast) (session 36's; prompts without a contrast fall back to ``prompt``);
* ``prompt_fmax``: the largest per-frame loss under the prompt (a defect in a few frames, such as a second copy).

    python recipes/lingen-tiny/selfscore_select.py runs/p37/ss-3000003 runs/p37/ss-4000006 [--times 0.5,0.7,0.9]

Each argument is a path stem: ``STEM.json`` (the eval) and ``STEM.jsonl`` (the log; or ``STEM.jsonl.gz``).
The session-37 runs (4k, 80 tuning prompts, seed bases 3,000,003 / 4,000,006 / 5,000,009) are in
``docs/eval/tuning/selfscore/``.
"""
import argparse
import gzip
import json
import math
from pathlib import Path

LINES = ("color", "shape", "motion", "persistence", "unity", "motion_consistency", "jumps")
TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)  # as logged by probe_selfscore.py


def caption_loss(row: dict, caption: str, times_idx, reduce: str = "sum") -> float | None:
    """The loss of one logged clip under ``caption``: per-frame losses averaged over noises and the chosen times,
    then summed (``reduce='sum'``) or maxed (``'max'``) over frames. None when the caption was not logged."""
    per_t = row["losses"].get(caption)
    if per_t is None:
        return None
    frames = row["frames"]
    avg = [0.0] * frames
    for i in times_idx:
        for noise in per_t[i]:
            for f in range(frames):
                avg[f] += noise[f] / (len(times_idx) * len(per_t[i]))
    return sum(avg) if reduce == "sum" else max(avg)


def score(row: dict, selector: str, times_idx) -> float:
    """A selector's score of one logged clip (lower is kept). Raises KeyError for an unknown selector."""
    lp = caption_loss(row, "prompt", times_idx)
    if selector == "prompt":
        return lp
    if selector == "empty":
        return caption_loss(row, "empty", times_idx)
    if selector == "pmi":
        return lp - caption_loss(row, "empty", times_idx)
    if selector == "margin":
        lx = caption_loss(row, "contrast", times_idx)
        return lp if lx is None else lp - lx
    if selector == "prompt_fmax":
        return caption_loss(row, "prompt", times_idx, "max")
    raise KeyError(selector)


def load(stem: str):
    """(clips by seed offset, log rows by seed offset) of one candidate run; offsets count from the run's first
    seed, so candidate k's prompt i is offset i in every run."""
    clips = json.load(open(stem + ".json"))["clips"]
    log = Path(stem + ".jsonl")
    text = log.read_text() if log.exists() else gzip.decompress(Path(stem + ".jsonl.gz").read_bytes()).decode()
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    base = clips[0]["seed"]
    if len(rows) != len(clips):
        raise ValueError(f"{stem}: {len(clips)} clips but {len(rows)} log rows")
    return ({c["seed"] - base: c for c in clips}, {r["seed"] - base: r for r in rows})


def table(runs, selectors, times_idx) -> list[tuple[str, dict]]:
    """Rows (name, {line: passes, 'unity_mean': mean}) for each run alone, each selector, and the per-line best."""
    keys = sorted(set.intersection(*(set(c) for c, _ in runs)))
    for c, r in runs:
        for k in keys:
            if c[k]["prompt"] != r[k]["prompt"]:
                raise ValueError(f"prompt mismatch at offset {k}")

    def tally(choice):
        out = {ln: sum(bool(runs[choice[k]][0][k]["passed"][ln]) for k in keys) for ln in LINES}
        out["unity_mean"] = sum(runs[choice[k]][0][k]["unity"] for k in keys) / len(keys)
        return out

    rows = [(f"candidate {j} alone", tally({k: j for k in keys})) for j in range(len(runs))]
    for s in selectors:
        choice = {k: min(range(len(runs)), key=lambda j: score(runs[j][1][k], s, times_idx)) for k in keys}
        rows.append((f"best of {len(runs)} by {s}", tally(choice)))
    best = {ln: sum(any(runs[j][0][k]["passed"][ln] for j in range(len(runs))) for k in keys) for ln in LINES}
    best["unity_mean"] = sum(max(runs[j][0][k]["unity"] for j in range(len(runs))) for k in keys) / len(keys)
    rows.append(("best per line (upper bound)", best))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stems", nargs="+")
    ap.add_argument("--times", default=",".join(str(t) for t in TIMES))
    ap.add_argument("--selectors", default="prompt,empty,pmi,margin,prompt_fmax")
    a = ap.parse_args(argv)
    want = [float(t) for t in a.times.split(",")]
    times_idx = [i for i, t in enumerate(TIMES) if any(math.isclose(t, w) for w in want)]
    runs = [load(s) for s in a.stems]
    rows = table(runs, a.selectors.split(","), times_idx)
    print(f"times {[TIMES[i] for i in times_idx]}; n = {len(runs[0][0])} prompts")
    print("| | " + " | ".join(LINES) + " | unity mean |")
    for name, r in rows:
        print(f"| {name} | " + " | ".join(str(r[ln]) for ln in LINES) + f" | {r['unity_mean']:.3f} |")


if __name__ == "__main__":
    main()
