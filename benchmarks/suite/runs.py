"""What the suite's scripts (``benchmarks/suite.py``, ``benchmarks/quality.py``) share when
they start a run: the seed rule and a quiet, single-threaded process."""

from __future__ import annotations

import argparse
import logging

import torch


def refuse_selected_seed(parser: argparse.ArgumentParser, seed: int, unseen: list[int]) -> None:
    """Exit with a usage error where the selection seed is also an evaluation seed: a
    figure measured on the seed it was picked on is not honest."""
    if seed in unseen:
        parser.error(f"--seed {seed} is among --unseen-seeds: pick seeds it was not selected on")


def quiet_single_thread() -> None:
    """Timestamped INFO logs without Optuna's and the tuner's chatter, one torch thread
    (tiny models: more threads only contend)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("optuna", "tuner"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(1)
