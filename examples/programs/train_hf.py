"""A Hugging Face ``Trainer`` tuned by adamtune: a tiny BERT built from a config (no download)
classifying synthetic token sequences (is token 7 in the sequence?).

Alone: ``python train_hf.py``; under a worker: ``--program bert='python train_hf.py'``.
"""

from __future__ import annotations

import argparse

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

import adamtune
from adamtune.integrations.huggingface import AdamTuneCallback, trainer_optimizers

VOCAB, LENGTH = 32, 16


class Sequences(torch.utils.data.Dataset):
    """Random sequences labelled by whether token 7 occurs in them (seeded, in memory)."""

    def __init__(self, n: int, seed: int):
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, VOCAB, (n, LENGTH), generator=gen)
        self.labels = (self.ids == 7).any(dim=1).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.labels[i]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200, help="steps when run standalone")
    parser.add_argument("--output", default="/tmp/adamtune-hf-example")
    args = parser.parse_args()
    trial = adamtune.trial(total_steps=args.steps)
    seed = trial.seed if trial.seed is not None else 0
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=LENGTH, num_labels=2,
    )
    model = BertForSequenceClassification(config)
    training_args = TrainingArguments(
        output_dir=args.output,
        max_steps=trial.total_steps or args.steps,
        per_device_train_batch_size=32,
        eval_strategy="steps",
        eval_steps=trial.eval_every or 50,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    callback = AdamTuneCallback(trial)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=Sequences(2048, seed),
        eval_dataset=Sequences(256, 10_000),
        optimizers=trainer_optimizers(model, trial),
        callbacks=[callback],
    )
    trainer.train()
    if callback.pruned is not None:
        print(f"adamtune pruned this trial: {callback.pruned}")
        return
    trial.finish(val_loss=trainer.evaluate()["eval_loss"])


if __name__ == "__main__":
    main()
