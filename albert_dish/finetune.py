"""Stage 3: fine-tune the pretrained encoder as a dish tagger (BIO token classification).

Input: `OUT/albert-pretrained/` and `review,dish_name` CSVs. Output: `OUT/finetune/` (metrics, checkpoints) and
`OUT/dish-tagger/` (a transformers token-classification folder with its tokenizer).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from albert_dish.data import IGNORE, LabelledReview, bio_labels, read_labelled
from albert_dish.model import LABELS, label_kwargs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Training budget of the fine-tuning stage; the best epoch by validation entity F1 is kept."""

    # With dishes renamed each epoch the tagger keeps improving for long: on data_toy 30 epochs beat 22 and 15
    # (validation F1 0.83 / 0.81 / 0.78); 26 is what fits the tiny preset's 10-minute CPU budget.
    epochs: int = 26
    batch_size: int = 32  # 64 (LAMB lr 7e-3) was only 6% faster a step and ~5 F1 points worse after 24 epochs
    learning_rate: float = 5e-3  # LAMB; 5e-3 beat 1e-3 on validation F1 (0.74 vs 0.62) on data_toy
    warmup_steps: int = 30
    weight_decay: float = 0.01
    max_length: int = 128
    stride: int = 32
    # validation F1 wanders by several points between epochs while the rate is high, and the late, low-rate epochs
    # gain most: patience 5 stopped a 26-epoch run at epoch 15 (best 0.60 at 10; the same budget run to the end: 0.69)
    patience: int = 10
    logging_steps: int = 10
    seed: int = 0
    from_scratch: bool = False  # ablation: same fine-tuning from a randomly initialised encoder
    swap_rate: float = 0.5  # share of training dishes renamed each epoch (see augment.py); 0.8 did worse
    invented_share: float = 0.5  # of the renamed ones, share given a made-up name rather than another training dish

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}.")
        if not (0 <= self.swap_rate <= 1 and 0 <= self.invented_share <= 1):
            raise ValueError(f"swap_rate and invented_share must be in [0, 1], got {self.swap_rate} and "
                             f"{self.invented_share}.")
        if not 0 <= self.stride < self.max_length // 2:
            raise ValueError(f"stride must be in [0, max_length/2), got {self.stride} with max_length {self.max_length}.")


PRESETS = {
    "tiny": FinetuneConfig(),
    "small": FinetuneConfig(epochs=8, batch_size=32, learning_rate=5e-4),
    "base": FinetuneConfig(epochs=5, batch_size=32, learning_rate=2e-4, warmup_steps=100),
    "test": FinetuneConfig(epochs=2, batch_size=8, max_length=64, stride=16, warmup_steps=2, logging_steps=2),
}


def encode_reviews(tokenizer, reviews: list[LabelledReview], max_length: int, stride: int) -> list[dict]:
    """Tokenize reviews into overlapping windows of at most `max_length` tokens, each with BIO `labels`."""
    encoded = tokenizer([r.review for r in reviews], truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True, return_offsets_mapping=True)
    windows = []
    for i, sample in enumerate(encoded["overflow_to_sample_mapping"]):
        windows.append(dict(input_ids=encoded["input_ids"][i], attention_mask=encoded["attention_mask"][i],
                            labels=bio_labels(encoded["offset_mapping"][i], reviews[sample].spans)))
    return windows


class SwapCollator:
    """Batches of training reviews, each re-drawn with some dishes renamed (seeded by seed, epoch and review).

    Items are `{"index": i, "input_ids": ...}` (the ids only let the Trainer group reviews by length); windows and
    BIO labels are built here, after the renaming, so they always match the text.
    """

    def __init__(self, tokenizer, reviews: list[LabelledReview], cfg: FinetuneConfig):
        from transformers import DataCollatorForTokenClassification

        from albert_dish.augment import WORD, NameMaker

        self.tokenizer, self.reviews, self.cfg = tokenizer, reviews, cfg
        self.names = sorted({s.text.lower() for r in reviews for s in r.spans})
        words = {w.lower() for r in reviews for w in WORD.findall(r.review)}
        self.maker = NameMaker(self.names, avoid=words) if self.names and cfg.invented_share > 0 else None
        self.pad = DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)
        self.epoch = 0

    def __call__(self, items: list[dict]) -> dict[str, torch.Tensor]:
        from albert_dish.augment import swap_dishes

        if "index" not in items[0]:  # evaluation windows, already encoded
            return self.pad(items)
        reviews = []
        for item in items:
            review = self.reviews[item["index"]]
            if self.names and self.cfg.swap_rate > 0:
                rng = random.Random(f"{self.cfg.seed}:{self.epoch}:{item['index']}")
                review = swap_dishes(review, rng, self.names, self.maker, self.cfg.swap_rate, self.cfg.invented_share)
            reviews.append(review)
        windows = encode_reviews(self.tokenizer, reviews, self.cfg.max_length, self.cfg.stride)
        return self.pad(windows)


def compute_tagging_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Entity precision/recall/F1 (seqeval, exact span) and token accuracy from [N, T, 3] logits and [N, T] labels."""
    from seqeval.metrics import f1_score, precision_score, recall_score

    predictions = logits.argmax(-1)
    keep = labels != IGNORE
    truth = [[LABELS[l] for l in row[k]] for row, k in zip(labels, keep)]
    guess = [[LABELS[p] for p in row[k]] for row, k in zip(predictions, keep)]
    return dict(precision=round(precision_score(truth, guess, zero_division=0), 4),
                recall=round(recall_score(truth, guess, zero_division=0), 4),
                f1=round(f1_score(truth, guess, zero_division=0), 4),
                token_accuracy=round(float((predictions[keep] == labels[keep]).mean()), 4))


def load_encoder(pretrained_dir: Path, from_scratch: bool = False):
    """Token-classification model from a pretraining folder (or the same shape, randomly initialised)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    pretrained_dir = Path(pretrained_dir)
    if not (pretrained_dir / "config.json").exists():
        raise FileNotFoundError(f"{pretrained_dir} is not a pretrained model folder (no config.json); run "
                                "`python -m albert_dish pretrain` first or pass --pretrained DIR.")
    if from_scratch:
        config = AutoConfig.from_pretrained(pretrained_dir, **label_kwargs())
        return AutoModelForTokenClassification.from_config(config)
    return AutoModelForTokenClassification.from_pretrained(pretrained_dir, **label_kwargs())


def run_finetune(pretrained_dir: Path, train_csv: Path, val_csv: Path, out_dir: Path, cfg: FinetuneConfig,
                 resume: bool = False, on_step=None) -> Path | None:
    """Fine-tune, keep the best epoch by validation F1, export `out_dir/dish-tagger`; None if stopped."""
    from transformers import AutoTokenizer, EarlyStoppingCallback

    from albert_dish.engine import EpochCallback, RunLogger, StageTrainer, build_training_args, export_model, lamb_optimizer, run_stage
    from albert_dish.files import write_json_atomic

    out_dir = Path(out_dir)
    run_dir = out_dir / "finetune"
    run_dir.mkdir(parents=True, exist_ok=True)
    train, val = read_labelled(train_csv), read_labelled(val_csv)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    torch.manual_seed(cfg.seed)
    model = load_encoder(pretrained_dir, cfg.from_scratch)
    max_length = min(cfg.max_length, model.config.max_position_embeddings)
    cfg = replace(cfg, max_length=max_length)
    train_items = [dict(index=i, input_ids=ids) for i, ids in
                   enumerate(tokenizer([r.review for r in train.reviews], truncation=True, max_length=max_length)["input_ids"])]
    val_windows = encode_reviews(tokenizer, val.reviews, max_length, cfg.stride)
    args = build_training_args(run_dir, cfg, num_train_epochs=cfg.epochs, eval_strategy="epoch",
                               save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="f1",
                               greater_is_better=True)
    collator = SwapCollator(tokenizer, train.reviews, cfg)
    trainer = StageTrainer(
        model=model, args=args, train_dataset=train_items, eval_dataset=val_windows, data_collator=collator,
        compute_metrics=lambda p: compute_tagging_metrics(p.predictions, p.label_ids),
        optimizer_cls_and_kwargs=lamb_optimizer(cfg),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience), EpochCallback(collator)])
    logger = RunLogger(run_dir, "finetune", on_step)
    run_stage(trainer, logger, cfg, resume)
    if logger.stop_requested:
        log.info("Fine-tuning stopped at step %d; resume with --resume.", trainer.state.global_step)
        return None
    best = trainer.evaluate()
    summary = dict(validation=str(val_csv), train=str(train_csv), pretrained=str(pretrained_dir),
                   best_checkpoint=trainer.state.best_model_checkpoint, missing_dishes=train.missing + val.missing,
                   **{k.removeprefix("eval_"): v for k, v in best.items()})
    write_json_atomic(run_dir / "results.json", summary)
    export_dir = export_model(trainer.model, tokenizer, out_dir / "dish-tagger", files={
        name: (run_dir / name).read_text(encoding="utf-8") for name in ("metrics.jsonl", "run_config.json", "results.json")})
    log.info("Dish tagger written to %s (validation F1 %.4f)", export_dir, best.get("eval_f1", float("nan")))
    return export_dir
