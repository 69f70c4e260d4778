"""Matplotlib figures of the quality benchmarks (Agg backend: files only, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

plt.switch_backend("Agg")

COLORS = {"adamtune": "tab:blue", "optuna_tpe": "tab:orange", "random": "tab:green",
          "default": "tab:gray"}


def _save(fig: Figure, ax: Axes, path: Path) -> None:
    """Grid and legend, then write the figure to ``path`` (its folder made) and free it."""
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def best_on_grid(curve: Sequence[tuple[int, float]], grid: np.ndarray) -> np.ndarray:
    """Best objective so far at every grid step (NaN before the first completed trial)."""
    out = np.full(grid.shape, np.nan)
    for steps, value in curve:
        later = grid >= steps
        out[later] = np.fmin(out[later], value)  # fmin ignores the NaN of "nothing yet"
    return out


def time_to_quality(
    path: Path,
    title: str,
    curves: dict[str, list[list[tuple[int, float]]]],
    labels: dict[str, str],
    budget_steps: int,
    target: float | None,
) -> None:
    """Best objective against cumulative training steps: median over seeds, min-max band.

    ``curves[method]`` holds one best-so-far curve per seed. A method's line starts once every
    seed has a completed trial, so the median is never taken over a partial set of seeds.
    """
    grid = np.linspace(0, budget_steps, 400)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, per_seed in curves.items():
        values = np.vstack([best_on_grid(c, grid) for c in per_seed])
        color = COLORS.get(method)
        ax.plot(grid, np.median(values, axis=0), color=color, label=labels.get(method, method),
                linestyle="--" if method == "default" else "-")
        ax.fill_between(grid, values.min(axis=0), values.max(axis=0), color=color, alpha=0.18,
                        linewidth=0)
    if target is not None:
        ax.axhline(target, color="black", linewidth=0.8, linestyle=":",
                   label="within 1% of the best found (median over seeds)")
    ax.set_yscale("log")
    ax.set_xlim(0, budget_steps)
    ax.set_xlabel("cumulative training steps (sweep and pruned trials included)")
    ax.set_ylabel("best validation loss so far")
    n_seeds = max(len(v) for v in curves.values())
    ax.set_title(f"{title}: median and min-max over {n_seeds} seeds", fontsize=10)
    _save(fig, ax, path)


def lr_grid(
    path: Path,
    title: str,
    grid_lrs: Sequence[float],
    grid_losses: Sequence[float],
    grid_best: float,
    suggestions: dict[str, Sequence[float]],
    labels: dict[str, str],
) -> None:
    """Final loss against constant lr on the dense grid, with each rule's suggestions marked."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    losses = np.asarray(grid_losses, dtype=float)
    ax.plot(grid_lrs, np.where(np.isfinite(losses), losses, np.nan), "o-", color="black",
            markersize=3, label="constant-lr grid (mean over seeds)")
    diverged = [lr for lr, loss in zip(grid_lrs, losses, strict=True) if not np.isfinite(loss)]
    if diverged:
        top = np.nanmax(np.where(np.isfinite(losses), losses, np.nan))
        ax.plot(diverged, [top] * len(diverged), "x", color="black",
                label="diverged on some seed (no loss)")
    ax.axvspan(grid_best / 2, grid_best * 2, color="gold", alpha=0.25,
               label="within 2x of grid-best")
    markers = {"adamtune": "tab:blue", "torch_lr_finder": "tab:red", "fastai_valley": "tab:purple"}
    for rule, lrs in suggestions.items():
        for i, lr in enumerate(lrs):
            ax.axvline(lr, color=markers.get(rule), linewidth=1.2, alpha=0.8,
                       label=labels.get(rule, rule) if i == 0 else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate (constant)")
    ax.set_ylabel("final validation loss")
    ax.set_title(title, fontsize=10)
    _save(fig, ax, path)
