"""Stage 3: fine-tune the pretrained encoder as a dish tagger (BIO token classification).

Input: `OUT/albert-pretrained/` and `review,dish_name` CSVs. Output: `OUT/finetune/` (metrics, checkpoints) and
`OUT/dish-tagger/` (a transformers token-classification folder with its tokenizer).
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from albert_dish.data import IGNORE, LabelledData, LabelledReview, bio_labels, find_spans, read_corpus, read_labelled
from albert_dish.datagen import LabelledRow, format_csv, normalize_name
from albert_dish.lexicon import FILENAME, CorpusLexicon, build_from_tagger
from albert_dish.model import LABELS, label_kwargs, training_attention
from albert_dish.predict import DishTagger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig:
    """Training budget of the fine-tuning stage; the best epoch by validation entity F1 is kept."""

    # With dishes renamed each epoch the tagger keeps improving for long: on data_toy (4,395 training rows) the same
    # 4-pass encoder scored validation F1 0.857 after 24 epochs and 0.885 after 48 (test 0.825 -> 0.865); the
    # shipped 3-pass encoder 0.891 after 30 and 0.909 after 40 (test 0.880 -> 0.895). An epoch takes ~7 s on 2 CPU
    # cores with native bf16 (AVX512-BF16, eager attention) and ~23 s on 2 AVX2-only cores in fp32 (README,
    # "Training time"). 36, not 40: on a slow spell of the session-10 machine 40 epochs took 9 min 55 s end to end,
    # at the 10-minute bar; 36 took 8 min 41 s there and scored val 0.928 / test 0.913 against 0.930 / 0.923.
    epochs: int = 36
    batch_size: int = 32  # 64 (LAMB lr 7e-3) was only 6% faster a step and ~5 F1 points worse after 24 epochs
    # LAMB. On data_toy 5e-3 beat 1e-3 (validation F1 0.74 vs 0.62, session 2); with the 3-pass encoder and 30 epochs,
    # 8e-3 and 1.2e-2 both beat 5e-3 (validation / test F1 0.895 / 0.873 and 0.894 / 0.881 vs 0.869 / 0.853).
    learning_rate: float = 1e-2
    warmup_steps: int = 30
    weight_decay: float = 0.01
    max_length: int = 128
    stride: int = 32
    # Validation F1 wanders by a few points between epochs while the rate is high; patience 10 stopped a run on the
    # previous data at epoch 24 of 34, just before the low-rate tail, so the tiny preset runs all its epochs.
    patience: int = 30
    logging_steps: int = 10
    seed: int = 0
    from_scratch: bool = False  # ablation: same fine-tuning from a randomly initialised encoder
    # Learning-rate share of the pretrained word embeddings (0 freezes them). Kept small, a dish the labelled rows
    # never show keeps the corpus's picture of it, beside the dishes it is used like, while trained names still
    # adapt a little. On data_toy, from the same encoder: 0.1 gave validation F1 0.856 (seen 0.928, unseen 0.767),
    # frozen 0.836 (0.891 / 0.771); with the co-occurrence embeddings and 1,505 more hand-written training reviews
    # (not measured apart), unseen-dish F1 rose from 0.66 to 0.77. The from-scratch ablation always trains its
    # embeddings fully (a small rate on noise would only hold it back).
    embedding_lr_scale: float = 0.1
    swap_rate: float = 0.5  # share of training dishes renamed each epoch (see augment.py); 0.8 did worse
    invented_share: float = 0.5  # of the renamed ones, share given a made-up name rather than another training dish
    # Share of the words outside dishes misspelled each epoch (augment.misspell_words). From the session-7 encoder, 40
    # epochs: 0.05 gave validation / test F1 0.910 / 0.887 against 0.903-0.909 / 0.892-0.895 without (precision up,
    # recall down); with the corpus lexicon 0.929 / 0.910 against 0.917 / 0.906 (session 8, before `apply` replaced
    # spans inside a match). The session-9 reproduce with it: 0.910 / 0.890 alone, 0.933 / 0.924 with the lexicon
    # (session 10, bf16, 40 epochs: 0.910 / 0.892 and 0.930 / 0.923).
    typo_rate: float = 0.05
    # Self-training: more rounds on the training rows plus corpus reviews the latest tagger is sure of (0: none).
    # After a full 26-epoch run on data_toy, two rounds (8 and 6 epochs, 4,000 reviews) lifted validation F1
    # 0.810 -> 0.818 -> 0.836 and test F1 on unseen dishes 0.747 -> 0.780 -> 0.794. Squeezed into the tiny preset's
    # 10 minutes (18-22 first-round epochs + rounds) it did no better than plain longer fine-tuning (val 0.808-0.812),
    # so the tiny preset spends its budget on epochs and self-training is opt-in (--finetune.self-training-rounds 2).
    self_training_rounds: int = 0
    self_training_rows: int = 4000
    self_training_epochs: int = 6
    self_training_learning_rate: float = 2e-3
    self_training_min_score: float = 0.85  # every dish of a chosen review scored at least this (1 - P(O), 0-1)
    # Corpus lexicon (lexicon.py), built from the finished tagger's output on the corpus and saved beside it. The
    # thresholds were chosen on data_toy validation (session 8); see `lexicon.build_lexicon`.
    corpus_lexicon: bool = True
    lexicon_min_tagged: int = 2
    lexicon_min_share: float = 0.5
    lexicon_drop_min_lines: int = 10
    lexicon_drop_max_share: float = 0.1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be at least 1, got {self.epochs} and {self.batch_size}.")
        if not 0 <= self.embedding_lr_scale <= 1:
            raise ValueError(f"embedding_lr_scale must be in [0, 1] (0 freezes the embeddings), got "
                             f"{self.embedding_lr_scale}.")
        if not (0 <= self.swap_rate <= 1 and 0 <= self.invented_share <= 1 and 0 <= self.typo_rate <= 1):
            raise ValueError(f"swap_rate, invented_share and typo_rate must be in [0, 1], got {self.swap_rate}, "
                             f"{self.invented_share} and {self.typo_rate}.")
        if (min(self.self_training_rows, self.self_training_rounds) < 0 or self.self_training_epochs < 1
                or not 0 <= self.self_training_min_score <= 1):
            raise ValueError(f"self_training_rows and _rounds must be >= 0, self_training_epochs >= 1 and "
                             f"self_training_min_score in [0, 1]; got {self.self_training_rows}, "
                             f"{self.self_training_rounds}, {self.self_training_epochs} and "
                             f"{self.self_training_min_score}.")
        if not (0 <= self.lexicon_min_share <= 1 and 0 <= self.lexicon_drop_max_share <= 1
                and min(self.lexicon_min_tagged, self.lexicon_drop_min_lines) >= 1):
            raise ValueError(f"lexicon_min_share and lexicon_drop_max_share must be in [0, 1] and lexicon_min_tagged, "
                             f"lexicon_drop_min_lines at least 1; got {self.lexicon_min_share}, "
                             f"{self.lexicon_drop_max_share}, {self.lexicon_min_tagged} and "
                             f"{self.lexicon_drop_min_lines}.")
        if not 0 <= self.stride < self.max_length // 2:
            raise ValueError(f"stride must be in [0, max_length/2), got {self.stride} with max_length {self.max_length}.")


PRESETS = {
    "tiny": FinetuneConfig(),
    "small": FinetuneConfig(epochs=8, batch_size=32, learning_rate=5e-4),
    "base": FinetuneConfig(epochs=5, batch_size=32, learning_rate=2e-4, warmup_steps=100),
    "test": FinetuneConfig(epochs=2, batch_size=8, max_length=64, stride=16, warmup_steps=2, logging_steps=2,
                           self_training_rows=16, self_training_rounds=1, self_training_epochs=1,
                           self_training_min_score=0.0),
}


def tokenize_windows(tokenizer, reviews: list[LabelledReview], max_length: int, stride: int):
    """The tokenizer's overlapping windows of at most `max_length` tokens (with offsets and the sample mapping)."""
    return tokenizer([r.review for r in reviews], truncation=True, max_length=max_length, stride=stride,
                     return_overflowing_tokens=True, return_offsets_mapping=True)


def labelled_windows(encoded, reviews: list[LabelledReview]) -> list[dict]:
    """Model inputs of each window of `tokenize_windows(reviews)`, with BIO `labels`."""
    return [dict(input_ids=encoded["input_ids"][i], attention_mask=encoded["attention_mask"][i],
                 labels=bio_labels(encoded["offset_mapping"][i], reviews[sample].spans))
            for i, sample in enumerate(encoded["overflow_to_sample_mapping"])]


def encode_reviews(tokenizer, reviews: list[LabelledReview], max_length: int, stride: int) -> list[dict]:
    """Tokenize reviews into overlapping windows of at most `max_length` tokens, each with BIO `labels`."""
    return labelled_windows(tokenize_windows(tokenizer, reviews, max_length, stride), reviews)


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
        from albert_dish.augment import misspell_words, swap_dishes

        if "index" not in items[0]:  # evaluation windows, already encoded
            return self.pad(items)
        reviews = []
        for item in items:
            review = self.reviews[item["index"]]
            if self.names and self.cfg.swap_rate > 0:
                rng = random.Random(f"{self.cfg.seed}:{self.epoch}:{item['index']}")
                review = swap_dishes(review, rng, self.names, self.maker, self.cfg.swap_rate, self.cfg.invented_share)
            if self.cfg.typo_rate > 0:
                rng = random.Random(f"typo:{self.cfg.seed}:{self.epoch}:{item['index']}")
                review = misspell_words(review, rng, self.cfg.typo_rate)
            reviews.append(review)
        windows = encode_reviews(self.tokenizer, reviews, self.cfg.max_length, self.cfg.stride)
        return self.pad(windows)


def compute_tagging_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Token-level entity P/R/F1 (seqeval over each token's argmax) and token accuracy from [N, T, 3] logits and
    [N, T] labels."""
    from seqeval.metrics.sequence_labeling import precision_recall_fscore_support

    predictions = logits.argmax(-1)
    keep = labels != IGNORE
    truth = [[LABELS[l] for l in row[k]] for row, k in zip(labels, keep)]
    guess = [[LABELS[p] for p in row[k]] for row, k in zip(predictions, keep)]
    # one pass for all three (seqeval's precision_score, recall_score and f1_score each extract every entity again)
    precision, recall, f1, _ = precision_recall_fscore_support(truth, guess, average="micro", zero_division=0)
    return dict(token_precision=round(float(precision), 4), token_recall=round(float(recall), 4),
                token_f1=round(float(f1), 4), token_accuracy=round(float((predictions[keep] == labels[keep]).mean()), 4))


class ValidationScorer:
    """`compute_metrics` for the Trainer: decodes the validation windows' logits into dish spans exactly as
    `DishTagger` does (windows merged, one label per word, best BIO path) and scores them as `evaluate` does, so the
    epoch kept is the one with the best F1 that `python -m albert_dish evaluate` would report.

    Token-level seqeval over sub-word argmaxes ranked epochs differently: the shipped session-3 tagger scored 0.72
    that way and 0.82 decoded.
    """

    def __init__(self, tokenizer, reviews: list[LabelledReview], max_length: int, stride: int):
        enc = tokenize_windows(tokenizer, reviews, max_length, stride)
        self.reviews, self.offsets, self.samples = reviews, enc["offset_mapping"], enc["overflow_to_sample_mapping"]
        self.windows = labelled_windows(enc, reviews)  # the evaluation dataset, in the order scored here

    def __call__(self, prediction) -> dict[str, float]:
        from albert_dish.evaluate import entity_scores
        from albert_dish.predict import decode_windows

        logits, labels = prediction.predictions, prediction.label_ids
        probs = torch.from_numpy(logits).float().softmax(-1).numpy()  # padded positions are never read
        spans = decode_windows([r.review for r in self.reviews], self.offsets, self.samples, probs)
        return dict(**entity_scores(self.reviews, spans), **compute_tagging_metrics(logits, labels))


def load_encoder(pretrained_dir: Path, from_scratch: bool = False):
    """Token-classification model from a pretraining folder (or the same shape, randomly initialised)."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    pretrained_dir = Path(pretrained_dir)
    if not (pretrained_dir / "config.json").exists():
        raise FileNotFoundError(f"{pretrained_dir} is not a pretrained model folder (no config.json); run "
                                "`python -m albert_dish pretrain` first or pass --pretrained DIR.")
    if from_scratch:
        config = AutoConfig.from_pretrained(pretrained_dir, **label_kwargs())
        return AutoModelForTokenClassification.from_config(config, **training_attention())
    return AutoModelForTokenClassification.from_pretrained(pretrained_dir, **label_kwargs(), **training_attention())


def run_finetune(pretrained_dir: Path, train_csv: Path, val_csv: Path, out_dir: Path, cfg: FinetuneConfig,
                 resume: bool = False, on_step=None, corpus: Path | None = None) -> Path | None:
    """Fine-tune (best epoch by validation F1) and export `out_dir/dish-tagger`; None if stopped.

    With a `corpus` and `cfg.self_training_rows`, `cfg.self_training_rounds` more rounds follow
    (`out_dir/selftrain/round-N/`): the latest tagger tags the corpus, and training goes on with the training rows plus
    the corpus reviews it is sure of. The round with the best validation F1 is exported.
    """
    import shutil

    from transformers import AutoTokenizer

    from albert_dish.engine import ProgressStatus, export_model
    from albert_dish.files import write_json_atomic, write_text_atomic

    out_dir = Path(out_dir)
    train, val = read_labelled(train_csv), read_labelled(val_csv)
    tokenizer = AutoTokenizer.from_pretrained(pretrained_dir)
    torch.manual_seed(cfg.seed)
    rounds = [out_dir / "finetune"]
    if corpus is not None and cfg.self_training_rows > 0 and cfg.self_training_rounds > 0:
        rounds += [out_dir / "selftrain" / f"round-{n}" for n in range(1, cfg.self_training_rounds + 1)]
        known = {normalize_name(r.review) for r in train.reviews + val.reviews}  # never self-train on these
        lines = [line for line in read_corpus(corpus) if normalize_name(line) not in known]
    if not resume:
        shutil.rmtree(out_dir / "selftrain", ignore_errors=True)
    shutil.rmtree(out_dir / "lexicon", ignore_errors=True)  # rebuilt below; an old status would hide this run's
    model = load_encoder(pretrained_dir, cfg.from_scratch)
    results = []
    for number, run_dir in enumerate(rounds):
        tagger_dir = run_dir / "tagger"  # kept only when there are several rounds to choose from
        if resume and len(rounds) > 1 and (tagger_dir / "config.json").exists():
            model = load_encoder(tagger_dir)
            results.append(json.loads((run_dir / "results.json").read_text()))
            continue
        reviews, round_cfg, stage = train.reviews, cfg, "finetune"
        if number > 0:
            pseudo_csv = run_dir / "pseudo_labels.csv"
            if not (resume and pseudo_csv.exists()):
                chosen = select_pseudo_labels(DishTagger(model, tokenizer), lines, cfg)
                write_text_atomic(pseudo_csv, format_csv(chosen))
            if len(pseudo_csv.read_text(encoding="utf-8").splitlines()) < 2:
                log.warning("Self-training stops: the tagger is sure of no dish in the corpus (%s).", pseudo_csv)
                break
            reviews = train.reviews + read_labelled(pseudo_csv).reviews
            round_cfg = replace(cfg, epochs=cfg.self_training_epochs, learning_rate=cfg.self_training_learning_rate)
            stage = "selftrain"
        scores = train_round(run_dir, stage, model, tokenizer, reviews, val, round_cfg, resume, on_step)
        if scores is None:
            return None
        results.append(dict(round=number, train_reviews=len(reviews), **scores))
        write_json_atomic(run_dir / "results.json", results[-1])
        if len(rounds) > 1:
            export_model(model, tokenizer, tagger_dir)
    best = max(range(len(results)), key=lambda i: (results[i]["f1"], i))
    if best != len(results) - 1:
        model = load_encoder(rounds[best] / "tagger")
    log.info("Validation F1 by round: %s; keeping round %d", [r["f1"] for r in results], best)
    summary = dict(validation=str(val_csv), train=str(train_csv), pretrained=str(pretrained_dir),
                   missing_dishes=train.missing + val.missing, **results[best],
                   rounds=[dict(round=r["round"], train_reviews=r["train_reviews"], f1=r["f1"]) for r in results])
    files = {name: (rounds[0] / name).read_text(encoding="utf-8") for name in ("metrics.jsonl", "run_config.json")}
    files.update({f"self_training_round_{n}_metrics.jsonl": (rounds[n] / "metrics.jsonl").read_text(encoding="utf-8")
                  for n in range(1, len(results))})
    if corpus is not None and cfg.corpus_lexicon:
        progress = ProgressStatus(out_dir / "lexicon", "lexicon", unit="line")
        lexicon = build_corpus_lexicon(DishTagger(model, tokenizer), corpus, val, cfg, progress)
        progress.finish()
        files[FILENAME] = lexicon.to_json()
        summary["with_lexicon"] = score_tagger(DishTagger(model, tokenizer, lexicon=lexicon), val)
        log.info("Validation F1 with the corpus lexicon: %.4f", summary["with_lexicon"]["f1"])
    export_dir = export_model(model, tokenizer, out_dir / "dish-tagger",
                              files={**files, "results.json": json.dumps(summary, indent=2) + "\n"})
    log.info("Dish tagger written to %s (validation F1 %.4f)", export_dir, summary["f1"])
    return export_dir


def score_tagger(tagger: DishTagger, data: LabelledData) -> dict[str, float]:
    """Entity precision / recall / F1 of a tagger on a labelled file (as `evaluate` reports them)."""
    from albert_dish.evaluate import entity_scores

    return entity_scores(data.reviews, tagger.tag_batch([r.review for r in data.reviews]))


def build_corpus_lexicon(tagger: DishTagger, corpus: Path, val: LabelledData, cfg: FinetuneConfig,
                         on_progress=None) -> CorpusLexicon:
    """The corpus lexicon of a finished tagger, from the corpus lines that are not validation reviews (so that
    validation scores stay measured on text the lexicon never saw)."""
    held_out = {normalize_name(r.review) for r in val.reviews}
    lines = [line for line in read_corpus(corpus) if normalize_name(line) not in held_out]
    log.info("Building the corpus lexicon: tagging %d corpus lines", len(lines))
    return build_from_tagger(tagger, lines, on_progress, min_tagged=cfg.lexicon_min_tagged,
                             min_share=cfg.lexicon_min_share, drop_min_lines=cfg.lexicon_drop_min_lines,
                             drop_max_share=cfg.lexicon_drop_max_share)


def train_round(run_dir: Path, stage: str, model, tokenizer, reviews: list[LabelledReview], val: LabelledData,
                cfg: FinetuneConfig, resume: bool, on_step=None) -> dict | None:
    """Train `model` in place on `reviews` (best epoch by validation F1 restored); its scores, None if stopped."""
    from transformers import EarlyStoppingCallback

    from albert_dish.engine import (EpochCallback, RunLogger, StageTrainer, build_training_args, lamb_optimizer,
                                    run_stage)

    run_dir.mkdir(parents=True, exist_ok=True)
    embeddings = model.get_input_embeddings().weight
    embedding_lr_scale = 1.0 if cfg.from_scratch else cfg.embedding_lr_scale
    embeddings.requires_grad_(embedding_lr_scale > 0)
    max_length = min(cfg.max_length, model.config.max_position_embeddings)
    cfg = replace(cfg, max_length=max_length)
    encoded = tokenizer([r.review for r in reviews], truncation=True, max_length=max_length)["input_ids"]
    train_items = [dict(index=i, input_ids=ids) for i, ids in enumerate(encoded)]
    scorer = ValidationScorer(tokenizer, val.reviews, max_length, cfg.stride)
    args = build_training_args(run_dir, cfg, num_train_epochs=cfg.epochs, eval_strategy="epoch",
                               save_strategy="epoch", load_best_model_at_end=True, metric_for_best_model="f1",
                               greater_is_better=True)
    collator = SwapCollator(tokenizer, reviews, cfg)
    trainer = StageTrainer(
        model=model, args=args, train_dataset=train_items, eval_dataset=scorer.windows, data_collator=collator,
        compute_metrics=scorer,
        optimizer_cls_and_kwargs=lamb_optimizer(cfg, lr_scales={embeddings: embedding_lr_scale}),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=cfg.patience), EpochCallback(collator)])
    logger = RunLogger(run_dir, stage, on_step)
    run_stage(trainer, logger, cfg, resume)
    if logger.stop_requested:
        log.info("%s stopped at step %d; resume with --resume.", stage, trainer.state.global_step)
        return None
    best = trainer.evaluate()
    scores = {k.removeprefix("eval_"): v for k, v in best.items()}
    return dict(best_checkpoint=trainer.state.best_model_checkpoint, **scores)


def select_pseudo_labels(tagger: DishTagger, lines: list[str], cfg: FinetuneConfig,
                         chunk: int = 1000) -> list[LabelledRow]:
    """Up to `cfg.self_training_rows` corpus lines (seeded shuffle) in which the tagger finds at least one dish and is
    sure of every one (score >= `cfg.self_training_min_score`), with those dishes."""
    lines = list(lines)
    random.Random(cfg.seed).shuffle(lines)
    chosen: list[LabelledRow] = []
    for begin in range(0, len(lines), chunk):
        batch = lines[begin:begin + chunk]
        for text, spans in zip(batch, tagger.tag_batch(batch)):
            dishes = tuple(dict.fromkeys(span.text for span in spans))
            if (spans and all(span.score >= cfg.self_training_min_score for span in spans)
                    and not find_spans(text, list(dishes))[1]):  # each dish a whole-word match, as labels must be
                chosen.append(LabelledRow(text, dishes))
        if len(chosen) >= cfg.self_training_rows:
            break
    log.info("Self-training: %d confidently tagged corpus reviews from %d read",
             min(len(chosen), cfg.self_training_rows), min(begin + chunk, len(lines)) if lines else 0)
    return chosen[:cfg.self_training_rows]
