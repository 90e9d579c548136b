"""Assemble a benchmark report: LinGen/DiT pairs and ratios, fits, crossovers; and its PNG plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from lingen_model.bench.cells import BenchSettings, Cell
from lingen_model.bench.constants import LABELS
from lingen_model.bench.fit import (
    crossover_tokens,
    fit_loglog_slope,
    flops_crossover_seconds,
    tokens_to_seconds,
)
from lingen_model.io.files import atomic_path


def _pair(rows: list[dict]) -> list[tuple[dict, Optional[dict]]]:
    out, dit = [], {}
    for r in rows:
        if r["mixer"] == "attention":
            dit[(r["res"], r["length"])] = r
    for r in rows:
        if r["mixer"] == "mate":
            out.append((r, dit.get((r["res"], r["length"]))))
    return out


def _ratios(rows: list[dict]) -> list[dict]:
    out = []
    for lin, dit in _pair(rows):
        if dit is None:
            continue
        item = {"res": lin["res"], "length": lin["length"], "tokens": lin["tokens"], "flops": dit["flops"] / lin["flops"]}
        if lin.get("status") == "ok" and dit.get("status") == "ok":
            item["latency"] = dit["median_s"] / lin["median_s"]
            item["cpu_time"] = dit["cpu_median_s"] / lin["cpu_median_s"]
        out.append(item)
    return out


def _fits(rows: list[dict], mixers: list[str]) -> dict:
    fits: dict[str, dict] = {}
    for mixer in mixers:
        rs = sorted((r for r in rows if r["mixer"] == mixer), key=lambda r: r["tokens"])
        ok = [r for r in rs if r.get("status") == "ok"]
        long_ok = ok[-3:] if len(ok) >= 4 else ok
        long_fl = rs[-3:] if len(rs) >= 4 else rs
        fits[LABELS[mixer]] = {
            "latency_slope": fit_loglog_slope([r["tokens"] for r in ok], [r["median_s"] for r in ok]),
            "latency_slope_long_end": fit_loglog_slope([r["tokens"] for r in long_ok], [r["median_s"] for r in long_ok]),
            "cpu_time_slope": fit_loglog_slope([r["tokens"] for r in ok], [r["cpu_median_s"] for r in ok]),
            "cpu_time_slope_long_end": fit_loglog_slope([r["tokens"] for r in long_ok],
                                                        [r["cpu_median_s"] for r in long_ok]),
            "flops_slope": fit_loglog_slope([r["tokens"] for r in rs], [r["flops"] for r in rs]),
            "flops_slope_long_end": fit_loglog_slope([r["tokens"] for r in long_fl], [r["flops"] for r in long_fl]),
            "tokens_range": [rs[0]["tokens"], rs[-1]["tokens"]] if rs else None,
        }
    return fits


def _crossovers(cells: list[Cell], rows: list[dict], settings: BenchSettings) -> list[dict]:
    from lingen_model.models.config import get_config

    patch = get_config(settings.model, "mate", **settings.overrides).patch_size
    out = []
    for res in dict.fromkeys(c.res_label for c in cells):
        cell = next(c for c in cells if c.res_label == res)
        pairs = [(lin, dit) for lin, dit in _pair(rows) if lin["res"] == res and dit is not None]
        item: dict[str, Any] = {"res": res}
        ok = [(lin, dit) for lin, dit in pairs if lin.get("status") == "ok" and dit.get("status") == "ok"]
        for key, name in (("median_s", "latency"), ("cpu_median_s", "cpu_time")):
            tok, how = crossover_tokens([l["tokens"] for l, _ in ok], [l[key] for l, _ in ok], [d[key] for _, d in ok])
            item[f"{name}_tokens"], item[f"{name}_how"] = tok, how
            item[f"{name}_seconds"] = tokens_to_seconds(tok, cell, patch) if tok else None
        if not settings.overrides:
            item["flops_seconds"] = flops_crossover_seconds(settings.model, cell, settings.batch, settings.text_len)
        out.append(item)
    return out


def _fmt_slope(s: Optional[float]) -> str:
    return "–" if s is None else f"{s:.2f}"


def write_plot(report: dict, path: Path) -> None:
    """PNG in the manner of the paper's efficiency figure: FLOPs and latency per step vs clip
    length for both mixers (log scale), each DiT point annotated with its DiT÷LinGen ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    flops_only = report["settings"]["flops_only"]
    panels = [("flops", "FLOPs per denoising step")] + ([] if flops_only else [("median_s", "latency per step (s)")])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    ratios = {(r["res"], r["length"]): r for r in report["ratios"]}
    styles = {"mate": dict(color="tab:blue", marker="o", ls="-"), "attention": dict(color="tab:red", marker="s", ls="--")}
    res_list = list(dict.fromkeys(r["res"] for r in report["cells"]))
    for ax, (key, ylabel) in zip(axes[0], panels):
        for res in res_list:
            for mixer in ("mate", "attention"):
                rs = [r for r in report["cells"] if r["res"] == res and r["mixer"] == mixer and r.get(key)]
                if not rs:
                    continue
                xs, ys = [r["seconds"] for r in rs], [r[key] for r in rs]
                label = f"{LABELS[mixer]}" + (f" {res}" if len(res_list) > 1 else "")
                ax.plot(xs, ys, label=label, alpha=1.0 if res == res_list[0] else 0.6, **styles[mixer])
                if mixer == "attention":
                    lin = {(q["res"], q["length"]): q.get(key) for q in report["cells"] if q["mixer"] == "mate"}
                    for r, x, y in zip(rs, xs, ys):
                        rat = ratios.get((r["res"], r["length"]), {}).get("flops" if key == "flops" else "latency")
                        if rat:  # above the higher of the two points
                            top = max(y, lin.get((r["res"], r["length"])) or y)
                            ax.annotate(f"{rat:.1f}×", (x, top), textcoords="offset points", xytext=(0, 8),
                                        ha="center", fontsize=8, color="black")
        ax.set_xscale("log")
        ax.set_yscale("log")
        first = [r for r in report["cells"] if r["res"] == res_list[0] and r["mixer"] == "mate"]
        ax.set_xticks([r["seconds"] for r in first], [r["length"] for r in first])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("clip length (s)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    st = report["settings"]
    fig.suptitle(f"LinGen vs DiT twin — {st['model']}, {report['machine'].get('gpu') or st['device']}, "
                 f"{st['dtype']} (annotated: DiT ÷ LinGen)", fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
