"""Stage 2: pretrain ALBERT (or BERT, for comparison) on the review corpus with masked LM + sentence-order prediction.

Input: `restaurant_review.txt`. Output: `OUT/pretrain/` (metrics, checkpoints) and `OUT/albert-pretrained/`
(a transformers model folder with its tokenizer).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from albert_dish.data import IGNORE, read_corpus, split_segments
from albert_dish.model import ModelShape, build_model, pretraining_heads, training_attention

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """Tokenizer, model shape and training budget of the pretraining stage."""

    kind: Literal["albert", "bert"] = "albert"
    vocab_size: int = 8000
    embedding_size: int = 64
    hidden_size: int = 128
    # ALBERT runs its one shared layer num_hidden_layers times: the parameters are the same at any depth, only the
    # arithmetic changes. On data_toy 3 passes beat 4 within the 10-minute budget (a 3-pass step is ~25% cheaper,
    # so more steps and epochs fit): the 4-pass encoder fine-tuned for 24 epochs scored validation / test F1
    # 0.857 / 0.825, the same encoder run 3 passes for 32 epochs 0.869 / 0.843 in about the same time, and a 3-pass
    # encoder pretrained 1,200 steps then fine-tuned 32 epochs 0.872 / 0.854. Two passes were no faster an epoch.
    num_hidden_layers: int = 3
    num_attention_heads: int = 2
    intermediate_size: int = 512
    max_length: int = 128
    # With the co-occurrence embeddings below, more masked-LM steps pay on data_toy (all with 26 fine-tuning epochs;
    # validation / test F1): 100 steps 0.805 / 0.769, 700 0.857 / 0.840, 1,200 0.875 / 0.841 and 0.871 / 0.835 in a
    # second run (held-out MLM loss 5.67 at 700, 5.06 at 1,200); but 1,200 + 26 took 621 s end to end in a noisy run,
    # over the 10-minute budget. 1,400 steps with 22 epochs gave 0.860 / 0.835: the epochs matter too. With 3 layer
    # passes, 1,100 steps and 40 epochs took 510 s end to end in an ordinary spell of this machine (30 epochs: 445-484
    # s, and 646 s in a slow spell with 16 s fine-tuning epochs instead of 11; README, "Training time").
    max_steps: int = 1100
    batch_size: int = 64
    learning_rate: float = 1e-2  # LAMB; 1e-2 learned fastest of 2e-3/4e-3/1e-2 in 300-step trials on data_toy
    warmup_steps: int = 100
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    max_ngram: int = 3
    # Word embeddings start from the corpus's co-occurrence statistics (PPMI + truncated SVD, ~5 s for the tiny
    # preset) instead of noise: in 700 CPU steps the masked LM barely leaves the unigram plateau (held-out loss 5.9
    # from random embeddings, vs the corpus's unigram entropy of 6.26 nats), and its embeddings stay near-random;
    # these already put "waiter" beside "waitress" and "bartender", and "tacos" beside "carnitas" and "lengua".
    embedding_init: Literal["random", "cooccurrence"] = "cooccurrence"
    cooccurrence_window: int = 4
    eval_fraction: float = 0.02
    eval_steps: int = 250
    save_steps: int = 250
    logging_steps: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("albert", "bert"):
            raise ValueError(f"kind must be 'albert' or 'bert', got {self.kind!r}.")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        if self.embedding_init not in ("random", "cooccurrence") or self.cooccurrence_window < 1:
            raise ValueError(f"embedding_init must be 'random' or 'cooccurrence' and cooccurrence_window at least 1, "
                             f"got {self.embedding_init!r} and {self.cooccurrence_window}.")
        if self.max_length < 16:
            raise ValueError(f"max_length must be at least 16 tokens, got {self.max_length}.")
        self.shape  # validates the shape too

    @property
    def shape(self) -> ModelShape:
        """The transformer shape (positions sized to `max_length`)."""
        return ModelShape(self.vocab_size, self.embedding_size, self.hidden_size, self.num_hidden_layers,
                          self.num_attention_heads, self.intermediate_size, max(self.max_length, 128))


PRESETS = {
    # With fine-tuning, ~7.5 minutes end to end on 2 CPU cores with native bf16 (AVX512-BF16; estimated from stage
    # times), ~22 minutes on 2 AVX2-only cores in fp32 (measured, session 9); hidden 256 took ~0.6 s a step on
    # the first, 900 steps alone ~9 min.
    "tiny": PretrainConfig(),
    # A laptop-sized model for longer CPU runs or a small GPU.
    "small": PretrainConfig(vocab_size=16000, embedding_size=128, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                            intermediate_size=2048, max_steps=6000, batch_size=128, learning_rate=1.5e-3),
    # ALBERT-base's shape (ALBERT paper, Table 1: E=128, H=768, L=12, 12 heads, FFN 3072); needs a GPU.
    "base": PretrainConfig(vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                           intermediate_size=3072, max_steps=20000, batch_size=256, learning_rate=1.76e-3,
                           warmup_steps=1000, eval_steps=1000, save_steps=1000, logging_steps=50),
    # Test-sized: seconds on a CPU.
    "test": PretrainConfig(vocab_size=300, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_length=64, max_steps=20, batch_size=8,
                           warmup_steps=2, eval_steps=10, save_steps=10, logging_steps=2),
}


def mask_tokens(input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int,
                probability: float = 0.15, max_ngram: int = 3,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """ALBERT n-gram masking of a [B, T] batch: returns (masked input_ids, labels with -100 where not predicted).

    Spans of n tokens (n <= max_ngram, p(n) proportional to 1/n) cover `probability` of the non-special tokens;
    a chosen token becomes [MASK] 80%, a random token 10%, itself 10% of the time. Special tokens are never chosen.
    """
    input_ids = input_ids.clone()
    labels = torch.full_like(input_ids, IGNORE)
    ngram_weights = torch.tensor([1.0 / n for n in range(1, max_ngram + 1)])
    for row in range(input_ids.shape[0]):
        candidates = (~special_mask[row]).nonzero().flatten().tolist()
        if not candidates:
            continue
        allowed = set(candidates)
        budget = max(1, round(len(candidates) * probability))
        chosen: set[int] = set()
        starts = torch.randperm(len(candidates), generator=generator).tolist()
        lengths = (torch.multinomial(ngram_weights, len(candidates), True, generator=generator) + 1).tolist()
        for start_index, n in zip(starts, lengths):
            if len(chosen) >= budget:
                break
            start = candidates[start_index]
            span = [p for p in range(start, start + min(n, budget - len(chosen)))]
            if all(p in allowed and p not in chosen for p in span):
                chosen.update(span)
        positions = torch.tensor(sorted(chosen))
        labels[row, positions] = input_ids[row, positions]
        action = torch.rand(len(positions), generator=generator)
        input_ids[row, positions[action < 0.8]] = mask_id
        randomized = positions[(action >= 0.8) & (action < 0.9)]
        # Random replacements avoid the 5 special ids (pad, unk, [CLS], [SEP], [MASK]).
        input_ids[row, randomized] = torch.randint(5, vocab_size, (len(randomized),), generator=generator)
    return input_ids, labels


def cooccurrence_embeddings(token_ids: list[list[int]], vocab_size: int, dim: int, window: int = 4,
                            smoothing: float = 0.75) -> torch.Tensor:
    """[vocab_size, dim] word vectors from token co-occurrence: positive PMI of pairs at most `window` apart
    (weighted 1/distance, context counts smoothed by `smoothing`), reduced by a randomized truncated SVD (U sqrt(S)).

    Each row has unit variance on average; tokens that never occur get zeros. Levy, Goldberg & Dagan (2015) describe
    this PPMI-SVD recipe and the context smoothing.
    """
    rows, cols, weights = [], [], []
    for distance in range(1, window + 1):
        left = torch.tensor([t for ids in token_ids for t in ids[:-distance]], dtype=torch.long)
        right = torch.tensor([t for ids in token_ids for t in ids[distance:]], dtype=torch.long)
        rows += [left, right]
        cols += [right, left]
        weights += [torch.full((len(left),), 1.0 / distance)] * 2
    counts = torch.sparse_coo_tensor(torch.stack([torch.cat(rows), torch.cat(cols)]), torch.cat(weights),
                                     (vocab_size, vocab_size), check_invariants=False).coalesce()  # base's 30k fit
    (row, col), value = counts.indices(), counts.values()
    row_sums = torch.zeros(vocab_size).index_add_(0, row, value)
    context = torch.zeros(vocab_size).index_add_(0, col, value).pow(smoothing)
    pmi = (value * context.sum() / (row_sums[row] * context[col])).log()
    keep = pmi > 0
    ppmi = torch.sparse_coo_tensor(torch.stack([row[keep], col[keep]]), pmi[keep], (vocab_size, vocab_size),
                                   check_invariants=False)
    u, s, _ = torch.svd_lowrank(ppmi, q=min(dim + 8, vocab_size), niter=4)
    vectors = u[:, :dim] * s[:dim].sqrt()
    return vectors / vectors.std().clamp_min(1e-12)


def build_sop_example(first: list[int], second: list[int], swap: bool, max_length: int, cls_id: int,
                      sep_id: int) -> dict[str, list[int]]:
    """[CLS] A [SEP] B [SEP] from two consecutive segments; swapped order gets sentence_order_label 1.

    The longer segment is trimmed first so the pair fits `max_length`.
    """
    first, second = list(first), list(second)
    while len(first) + len(second) > max_length - 3:
        (first if len(first) >= len(second) else second).pop()
    if swap:
        first, second = second, first
    input_ids = [cls_id, *first, sep_id, *second, sep_id]
    token_type_ids = [0] * (len(first) + 2) + [1] * (len(second) + 1)
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, sentence_order_label=int(swap))


class PretrainCollator:
    """Turns segment pairs into padded, masked SOP batches; masks and swaps are re-drawn every epoch.

    Without a fixed `generator`, the randomness of a batch is seeded by (seed, epoch, the batch's first tokens), so a
    resumed run draws exactly the masks an uninterrupted one would, whatever the data loader fetched ahead.
    """

    def __init__(self, tokenizer, cfg: PretrainConfig, generator: torch.Generator | None = None):
        self.tokenizer, self.cfg, self.generator = tokenizer, cfg, generator
        self.epoch = 0

    def __call__(self, pairs: list[dict[str, list[int] | int]]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        generator = self.generator
        if generator is None:
            key = hash((self.cfg.seed, self.epoch, len(pairs), *pairs[0]["input_ids"][:32], *pairs[-1]["input_ids"][:32]))
            generator = torch.Generator().manual_seed(key & 0x7FFF_FFFF_FFFF_FFFF)
        swaps = torch.rand(len(pairs), generator=generator) < 0.5
        examples = [build_sop_example(p["input_ids"][:p["split"]], p["input_ids"][p["split"]:], bool(s),
                                      self.cfg.max_length, tok.cls_token_id, tok.sep_token_id)
                    for p, s in zip(pairs, swaps)]
        width = max(len(e["input_ids"]) for e in examples)
        batch = {key: torch.tensor([e[key] + [0] * (width - len(e[key])) for e in examples])
                 for key in ("input_ids", "token_type_ids")}
        batch["attention_mask"] = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                                for e in examples])
        special = (batch["input_ids"] == tok.cls_token_id) | (batch["input_ids"] == tok.sep_token_id) | (
            batch["attention_mask"] == 0)
        batch["input_ids"], batch["labels"] = mask_tokens(batch["input_ids"], special, tok.mask_token_id, len(tok),
                                                          self.cfg.mlm_probability, self.cfg.max_ngram, generator)
        batch["sentence_order_label"] = torch.tensor([e["sentence_order_label"] for e in examples])
        return batch


def build_segment_pairs(lines: list[str], tokenizer) -> list[dict[str, list[int] | int]]:
    """Per review that splits in two: both segments' token ids as one `input_ids` list and the `split` index.

    One list (not two) lets the Trainer group reviews of similar length into a batch, which cuts padding.
    """
    splits = [s for s in map(split_segments, lines) if s]
    if len(splits) < len(lines):
        log.info("Skipped %d reviews too short for sentence-order pairs", len(lines) - len(splits))
    firsts = tokenizer([a for a, _ in splits], add_special_tokens=False)["input_ids"]
    seconds = tokenizer([b for _, b in splits], add_special_tokens=False)["input_ids"]
    return [dict(input_ids=a + b, split=len(a)) for a, b in zip(firsts, seconds) if a and b]


def compute_pretraining_loss(model, batch: dict[str, torch.Tensor], masked_only: bool = True):
    """MLM + SOP loss and stats; MLM logits only at masked positions (the full head costs ~40% of a tiny step)."""
    labels, order = batch["labels"], batch["sentence_order_label"]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    masked = labels != IGNORE
    if masked_only:
        encoder, mlm_head, order_head = pretraining_heads(model)
        hidden = encoder(**inputs)
        mlm_logits = mlm_head(hidden.last_hidden_state[masked])
        order_logits = order_head(hidden.pooler_output)
    else:  # full forward through the (possibly distributed) wrapper
        out = model(**inputs)
        mlm_logits = out.prediction_logits[masked]
        order_logits = out.sop_logits if hasattr(out, "sop_logits") else out.seq_relationship_logits
    mlm_loss = F.cross_entropy(mlm_logits.float(), labels[masked])
    sop_loss = F.cross_entropy(order_logits.float(), order)
    stats = dict(mlm_loss=mlm_loss.item(), mlm_loss_n=1, sop_loss=sop_loss.item(), sop_loss_n=1,
                 mlm_accuracy=(mlm_logits.argmax(-1) == labels[masked]).sum().item(), mlm_accuracy_n=int(masked.sum()),
                 sop_accuracy=(order_logits.argmax(-1) == order).sum().item(), sop_accuracy_n=len(order))
    return mlm_loss + sop_loss, stats


def init_embeddings(model, token_ids: list[list[int]], cfg: PretrainConfig) -> None:
    """Overwrite the word embeddings (not the special tokens') with co-occurrence vectors at the init scale."""
    embeddings = model.get_input_embeddings().weight
    vectors = cooccurrence_embeddings(token_ids, embeddings.shape[0], embeddings.shape[1], cfg.cooccurrence_window)
    with torch.no_grad():
        embeddings[5:] = vectors[5:] * model.config.initializer_range
    log.info("Word embeddings initialised from corpus co-occurrence (PPMI + SVD, window %d)", cfg.cooccurrence_window)


def _make_trainer_class():
    from albert_dish.engine import StageTrainer

    class PretrainTrainer(StageTrainer):
        """StageTrainer with the masked-position MLM + SOP loss and corpus held-out evaluation."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            self.record(tokens=int(inputs["attention_mask"].sum()))
            # accelerate applies bf16 autocast by wrapping the model's forward, which the masked-position loss
            # bypasses (it calls the encoder and heads directly), so it asks for autocast itself.
            with self.accelerator.autocast():
                loss, stats = compute_pretraining_loss(model, inputs, masked_only=self.args.world_size == 1)
            self.record(**stats)
            return (loss, None) if return_outputs else loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            model = self.model
            was_training = model.training
            model.eval()
            totals: dict[str, float] = {}
            with torch.no_grad(), self.accelerator.autocast():
                for batch in self.eval_batches:
                    batch = self._prepare_inputs(batch)
                    loss, stats = compute_pretraining_loss(model, batch)
                    stats["loss"], stats["loss_n"] = loss.item(), 1
                    for key, value in stats.items():
                        totals[key] = totals.get(key, 0.0) + value
            model.train(was_training)
            metrics = {f"{metric_key_prefix}_{k}": round(v / totals[f"{k}_n"], 4)
                       for k, v in totals.items() if not k.endswith("_n")}
            self.log(metrics)
            return metrics

    return PretrainTrainer


def run_pretrain(corpus: Path, out_dir: Path, cfg: PretrainConfig, resume: bool = False,
                 on_step=None) -> Path | None:
    """Train the tokenizer (or reuse the run's), pretrain, and export `out_dir/albert-pretrained`; None if stopped."""
    from transformers import AutoTokenizer

    from albert_dish.engine import (EpochCallback, RunLogger, build_training_args, export_model, lamb_optimizer,
                                    run_stage)
    from albert_dish.files import atomic_dir
    from albert_dish.tokenizer import train_tokenizer

    out_dir = Path(out_dir)
    run_dir = out_dir / "pretrain"
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = read_corpus(corpus)
    random.Random(cfg.seed).shuffle(lines)
    n_eval = max(1, int(len(lines) * cfg.eval_fraction)) if len(lines) > 20 else 1
    eval_lines, train_lines = lines[:n_eval], lines[n_eval:] or lines
    tokenizer_dir = run_dir / "tokenizer"
    if resume and (tokenizer_dir / "tokenizer.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        tokenizer = train_tokenizer(train_lines, cfg.vocab_size)
        with atomic_dir(tokenizer_dir) as tmp:
            tokenizer.save_pretrained(tmp)
    cfg = replace(cfg, vocab_size=len(tokenizer))
    train_pairs = build_segment_pairs(train_lines, tokenizer)
    eval_pairs = build_segment_pairs(eval_lines, tokenizer)
    if not train_pairs:
        raise ValueError(f"{corpus}: no review has two or more words; the corpus needs real reviews, one per line.")

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.kind, cfg.shape, "pretraining", **training_attention())
    if cfg.embedding_init == "cooccurrence":  # on resume the checkpoint's weights replace these
        init_embeddings(model, [p["input_ids"] for p in train_pairs], cfg)
    eval_collator = PretrainCollator(tokenizer, cfg, torch.Generator().manual_seed(cfg.seed + 1))
    eval_batches = [eval_collator(eval_pairs[i:i + cfg.batch_size]) for i in range(0, len(eval_pairs), cfg.batch_size)]
    args = build_training_args(run_dir, cfg, max_steps=cfg.max_steps, eval_strategy="steps",
                               eval_steps=cfg.eval_steps, save_strategy="steps", save_steps=cfg.save_steps)
    collator = PretrainCollator(tokenizer, cfg)
    trainer = _make_trainer_class()(model=model, args=args, train_dataset=train_pairs, eval_dataset=eval_pairs,
                                    data_collator=collator, optimizer_cls_and_kwargs=lamb_optimizer(cfg),
                                    callbacks=[EpochCallback(collator)])
    trainer.eval_batches = eval_batches
    logger = RunLogger(run_dir, "pretrain", on_step)
    run_stage(trainer, logger, cfg, resume)
    if logger.stop_requested:
        log.info("Pretraining stopped at step %d; resume with --resume.", trainer.state.global_step)
        return None
    export_dir = export_model(trainer.model, tokenizer, out_dir / "albert-pretrained", files={
        "metrics.jsonl": (run_dir / "metrics.jsonl").read_text(encoding="utf-8"),
        "run_config.json": (run_dir / "run_config.json").read_text(encoding="utf-8"),
    })
    log.info("Pretrained model written to %s", export_dir)
    return export_dir

