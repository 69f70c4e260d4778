"""The suite's report: the ratio table, adamtune's promise against its re-train, the plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from .methods import LABELS

WITHIN = 0.05  # expected_objective within 5% of the unseen-seed mean (or within its spread)


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if all(math.isfinite(v) for v in values) else math.inf


def best_peer(result: dict[str, Any]) -> tuple[str, float]:
    """The method other than adamtune with the lowest unseen-seed mean (adamtune itself in a
    run of adamtune alone: add the peers of a saved run with ``--peers``)."""
    peers = {m: r["unseen_mean"] for m, r in result["methods"].items() if m != "adamtune"}
    peers = peers or {m: r["unseen_mean"] for m, r in result["methods"].items()}
    name = min(peers, key=peers.__getitem__)
    return name, peers[name]


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """Each method's unseen-seed mean / the best peer's (adamtune's bar: <= 1.00)."""
    _, best = best_peer(result)
    return {m: r["unseen_mean"] / best for m, r in result["methods"].items()}


def promise(result: dict[str, Any]) -> dict[str, Any] | None:
    """adamtune's expected_objective against its unseen-seed re-train."""
    run = result["methods"].get("adamtune")
    if run is None or run.get("error") or run.get("expected_objective") is None:
        return None
    expected, actual = run["expected_objective"], run["unseen_mean"]
    losses = run["unseen_losses"]
    spread = statistics.stdev(losses) if len(losses) > 1 and math.isfinite(actual) else math.inf
    std = (run.get("extra", {}).get("recommendation") or {}).get("objective_std")
    rel = (actual - expected) / actual if math.isfinite(actual) else math.inf
    band = max(spread, float(std) if std is not None else 0.0)
    return {"expected": expected, "unseen_mean": actual, "relative_error": rel,
            "unseen_std": spread, "objective_std": std,
            "within_5pct": abs(rel) <= WITHIN, "within_spread": abs(actual - expected) <= band}


def paired(result: dict[str, Any], method: str = "adamtune") -> dict[str, Any] | None:
    """``method`` against the best other method, seed by seed: the geometric mean of the
    per-seed loss ratios and its 95% confidence interval (t on the log ratios; every pick is
    re-trained on the same unseen seeds, so the pairs share model init and batch order).
    None without a peer, or where a loss diverged."""
    others = {m: r for m, r in result["methods"].items() if m != method and not r.get("error")}
    ours = result["methods"].get(method)
    if not others or ours is None or ours.get("error"):
        return None
    peer = min(others, key=lambda m: others[m]["unseen_mean"])
    pairs = list(zip(ours["unseen_losses"], others[peer]["unseen_losses"], strict=True))
    if len(pairs) < 2 or not all(math.isfinite(a) and math.isfinite(b) and a > 0 and b > 0
                                 for a, b in pairs):
        return None
    logs = [math.log(a / b) for a, b in pairs]
    from scipy import stats  # scikit-learn's dependency, there with the suite's data

    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    centre = statistics.fmean(logs)
    low, high = math.exp(centre - half), math.exp(centre + half)
    verdict = ("better" if high < 1.0 else "worse" if low > 1.0 else "not distinguishable")
    return {"peer": peer, "ratio": math.exp(centre), "low": low, "high": high,
            "seeds": len(logs), "verdict": verdict}


def paired_table(results: list[dict[str, Any]]) -> str:
    """Markdown: adamtune against the best peer, seed by seed, with the 95% interval."""
    lines = ["| workload | best peer | paired ratio | 95% interval | adamtune is |",
             "|---|---|---|---|---|"]
    for result in results:
        p = paired(result)
        if p is None:
            continue
        lines.append(f"| {result['workload']} | {LABELS[p['peer']]} | {p['ratio']:.3f} | "
                     f"{p['low']:.3f} .. {p['high']:.3f} | {p['verdict']} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "diverged"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def table(results: list[dict[str, Any]]) -> str:
    """Markdown: ratio to the best peer per workload and method, then the grid column."""
    methods = list(results[0]["methods"])
    head = ["workload", "grid-best lr", *[LABELS[m] for m in methods], "adamtune / grid-best"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        r = ratios(result)
        grid = result.get("grid")
        cells = ["failed" if result["methods"][m].get("error") else
                 f"**{_fmt(r[m])}**" if m == best_peer(result)[0] else _fmt(r[m])
                 for m in methods]
        grid_ratio = (_fmt(result["methods"]["adamtune"]["unseen_mean"] / grid["best_mean"])
                      if grid and "adamtune" in result["methods"] else "-")
        lr = f"{grid['best_lr']:.1e}" if grid else "-"
        lines.append("| " + " | ".join([result["workload"], lr, *cells, grid_ratio]) + " |")
    return "\n".join(lines)


def promise_table(results: list[dict[str, Any]]) -> str:
    lines = ["| workload | expected_objective | unseen-seed mean (std) | error | within 5% | "
             "within spread |", "|---|---|---|---|---|---|"]
    for result in results:
        p = promise(result)
        if p is None:
            continue
        lines.append(f"| {result['workload']} | {p['expected']:.4g} | {p['unseen_mean']:.4g} "
                     f"({p['unseen_std']:.2g}) | {100 * p['relative_error']:+.1f}% | "
                     f"{'yes' if p['within_5pct'] else 'no'} | "
                     f"{'yes' if p['within_spread'] else 'no'} |")
    return "\n".join(lines)


def multiplier_table(results: list[dict[str, Any]]) -> str:
    rows = [r for r in results if r.get("multiplier")]
    if not rows:
        return ""
    lines = ["| workload | adamtune steps | Optuna TPE | random |", "|---|---|---|---|"]
    for result in rows:
        mult = result["multiplier"]
        cells = []
        for method in ("optuna_tpe", "random"):
            m = mult[method]["multiplier"]
            cap = mult[method].get("cap", mult["cap"])
            cells.append(f"{m:.1f}x" if m is not None else f"> {cap:g}x")
        lines.append(f"| {result['workload']} | {mult['adamtune_steps']} | " + " | ".join(cells)
                     + " |")
    for method in ("optuna_tpe", "random"):
        values = [r["multiplier"][method]["multiplier"] for r in rows]
        capped = [v if v is not None else math.inf for v in values]
        cap = max(r["multiplier"][method].get("cap", r["multiplier"]["cap"]) for r in rows)
        lines.append(f"\nmedian {LABELS[method]}: {statistics.median(capped):.1f}x"
                     if math.isfinite(statistics.median(capped))
                     else f"\nmedian {LABELS[method]}: > {cap:g}x (its cap)")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path, title: str) -> None:
    """Grouped bars: each method's unseen-seed mean / the best peer's, per workload (log y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(results[0]["methods"])
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(results)), 4.5))
    xs = np.arange(len(results))
    for i, method in enumerate(methods):
        values = [min(ratios(r)[method], 20.0) for r in results]  # diverged/huge: clipped
        ax.bar(xs + (i - len(methods) / 2 + 0.5) * width, values, width, label=LABELS[method])
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(xs, [r["workload"] for r in results], rotation=20, ha="right")
    ax.set_ylabel("unseen-seed loss / best peer's (clipped at 20)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def steps_table(results: list[dict[str, Any]]) -> str:
    """Training steps each method spent choosing its pick (the re-training is not counted)."""
    methods = [m for m in results[0]["methods"] if results[0]["methods"][m]["steps_spent"]]
    lines = ["| workload | " + " | ".join(LABELS[m] for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for result in results:
        lines.append(f"| {result['workload']} | "
                     + " | ".join(str(result["methods"][m]["steps_spent"]) for m in methods)
                     + " |")
    return "\n".join(lines)
