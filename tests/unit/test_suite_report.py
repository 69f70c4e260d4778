"""The suite report's seed-by-seed comparison: the paired ratio and its interval."""

from __future__ import annotations

import math

import pytest

from benchmarks.suite.report import paired, paired_table


def _result(ours: list[float], **peers: list[float]) -> dict:
    methods = {"adamtune": {"unseen_losses": ours, "unseen_mean": sum(ours) / len(ours)}}
    for name, losses in peers.items():
        methods[name] = {"unseen_losses": losses, "unseen_mean": sum(losses) / len(losses)}
    return {"workload": "w", "methods": methods}


def test_a_constant_per_seed_ratio_is_the_paired_ratio_with_no_width() -> None:
    peer = [0.5, 1.0, 2.0, 4.0]  # seeds differ 8x; the ratio on each is 0.9
    p = paired(_result([0.9 * v for v in peer], optuna_tpe=peer, random=[9.0] * 4))
    assert p is not None and p["peer"] == "optuna_tpe"  # the best peer by mean
    assert p["ratio"] == pytest.approx(0.9) and p["low"] == pytest.approx(0.9)
    assert p["verdict"] == "better" and p["seeds"] == 4


def test_the_interval_is_a_t_interval_on_the_log_ratios() -> None:
    ours, peer = [1.1, 0.9, 1.05], [1.0, 1.0, 1.0]
    p = paired(_result(ours, optuna_tpe=peer))
    logs = [math.log(v) for v in ours]
    centre = sum(logs) / 3
    sd = math.sqrt(sum((x - centre) ** 2 for x in logs) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert p is not None and p["ratio"] == pytest.approx(math.exp(centre))
    assert (p["low"], p["high"]) == pytest.approx((math.exp(centre - half),
                                                   math.exp(centre + half)), rel=1e-5)
    assert p["verdict"] == "not distinguishable"
    worse = paired(_result([1.02, 1.03, 1.025], optuna_tpe=peer))
    assert worse is not None and worse["verdict"] == "worse"


def test_no_peer_a_divergence_or_one_seed_gives_no_row() -> None:
    assert paired(_result([1.0, 2.0])) is None
    assert paired(_result([1.0, math.inf], optuna_tpe=[1.0, 1.0])) is None
    assert paired(_result([1.0], optuna_tpe=[1.0])) is None
    assert paired_table([_result([1.0, 2.0])]) == ""
    row = paired_table([_result([1.0, 2.0], optuna_tpe=[1.1, 2.2])]).splitlines()[-1]
    assert row.startswith("| w | Optuna TPE") and row.endswith("better |")
