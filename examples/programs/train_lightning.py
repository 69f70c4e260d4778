"""A Lightning module tuned by adamtune: the digits MLP of train.py as a LightningModule.

Alone: ``python train_lightning.py``; under a worker:
``--program digits_pl='python train_lightning.py'``.
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import adamtune
from adamtune.integrations.lightning import AdamTuneCallback, lightning_optimizers


class DigitsMLP(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 10)
        )

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self) -> dict[str, Any]:
        return lightning_optimizers(self)  # the trial's optimizer and LambdaLR, per step


def loaders(seed: int) -> tuple[DataLoader, DataLoader]:
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32) / 16.0
    yt = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(yt), generator=torch.Generator().manual_seed(1234))
    xt, yt = xt[order], yt[order]
    train = TensorDataset(xt[360:], yt[360:])
    gen = torch.Generator().manual_seed(seed)
    return (
        DataLoader(train, batch_size=64, shuffle=True, drop_last=True, generator=gen),
        DataLoader(TensorDataset(xt[:360], yt[:360]), batch_size=360),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300, help="steps when run standalone")
    args = parser.parse_args()
    trial = adamtune.trial(total_steps=args.steps)
    seed = trial.seed if trial.seed is not None else 0
    L.seed_everything(seed, verbose=False)
    train, val = loaders(seed)
    callback = AdamTuneCallback(trial)
    trainer = L.Trainer(
        max_steps=trial.total_steps or args.steps,
        val_check_interval=trial.eval_every or 50,
        check_val_every_n_epoch=None,
        callbacks=[callback],
        accelerator="auto",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = DigitsMLP()
    trainer.fit(model, train, val)
    if callback.pruned is not None:
        print(f"adamtune pruned this trial: {callback.pruned}")
        return
    final = trainer.validate(model, dataloaders=val, verbose=False)[0]["val_loss"]
    trial.finish(val_loss=float(final))


if __name__ == "__main__":
    main()
