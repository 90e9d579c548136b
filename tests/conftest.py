"""Shared pytest hooks: print the Triton-interpreter parity errors at the end of a run."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from support.triton_interp import LAST_RESULTS

    if "skipped" in LAST_RESULTS:
        terminalreporter.write_line(f"triton interpreter parity: skipped ({LAST_RESULTS['skipped']})")
    elif LAST_RESULTS.get("cases"):
        terminalreporter.write_line(summary_line(LAST_RESULTS))


def summary_line(rec: dict) -> str:
    """One line: the largest relative error of outputs and of gradients per case, and where the JSON is."""
    parts = []
    for name, case in rec["cases"].items():
        outs = [v for k, v in case.items() if k in ("y", "velocity")]
        grads = list(case.get("grads", {}).values())
        s = f"{name} out {max(e['rel'] for e in outs):.1e}"
        if grads:
            s += f" grads {max(e['rel'] for e in grads):.1e}"
        parts.append(s)
    return (f"triton interpreter parity (float32, max|triton-torch|/max|torch|, tol {rec['rel_tol']:.0e}): "
            + "; ".join(parts) + f" -> {rec.get('path', '')}")
