"""Reproduce the shipped model and its measured results in one command.

Input: data_toy (or given files). Output, under OUT: `albert/` (ALBERT pretrained + fine-tuned), `scratch/` (the same
fine-tuning from a randomly initialised encoder), `bert/` (a BERT of the same shape, same tokenizer, corpus, budgets
and labelled data); then `checkpoints/` gets the tagger, the encoder, a model card, `results.md` and
`bert-vs-albert.json`. Stages whose model already exists are reused, so an interrupted run continues.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
from pathlib import Path

from albert_dish.data import read_labelled
from albert_dish.evaluate import EvalReport, Gazetteer, evaluate_file, training_dishes
from albert_dish.files import atomic_dir, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_toy"
COMMAND = "python -m albert_dish reproduce --out runs/shipped"


def _elapsed(run_dir: Path) -> float:
    """Training seconds of a run folder's stages (from their status.json)."""
    total = 0.0
    from albert_dish.jobs import stage_folders

    for status in [folder / "status.json" for folder in stage_folders(run_dir)]:
        if status.exists():
            total += json.loads(status.read_text()).get("elapsed_s", 0.0)
    return round(total, 1)


def train_all(out: Path, corpus: Path, train: Path, val: Path, preset: str = "tiny") -> dict[str, Path]:
    """Train ALBERT, the no-pretraining ablation and the same-shape BERT (skipping finished ones)."""
    from albert_dish import finetune, pretrain

    runs = {"albert": out / "albert", "scratch": out / "scratch", "bert": out / "bert"}
    for name, kind in (("albert", "albert"), ("bert", "bert")):
        run = runs[name]
        if not (run / "dish-tagger" / "config.json").exists():
            cfg = dataclasses.replace(pretrain.PRESETS[preset], kind=kind)
            resume = (run / "pretrain").exists()
            if not (run / "albert-pretrained" / "config.json").exists():
                if pretrain.run_pretrain(corpus, run, cfg, resume=resume) is None:
                    raise RuntimeError(f"{name} pretraining was stopped; run the command again to resume.")
            if finetune.run_finetune(run / "albert-pretrained", train, val, run, finetune.PRESETS[preset],
                                     resume=(run / "finetune").exists(), corpus=corpus) is None:
                raise RuntimeError(f"{name} fine-tuning was stopped; run the command again to resume.")
        if name == "albert" and not (runs["scratch"] / "dish-tagger" / "config.json").exists():
            cfg = dataclasses.replace(finetune.PRESETS[preset], from_scratch=True)
            finetune.run_finetune(run / "albert-pretrained", train, val, runs["scratch"], cfg,
                                  resume=(runs["scratch"] / "finetune").exists(), corpus=corpus)
    return runs


LABELS = {"albert": "ALBERT (pretrained)", "scratch": "ALBERT, no pretraining", "bert": "BERT (pretrained)"}
NO_LEXICON = "ALBERT (pretrained), no lexicon"


def load_taggers(runs: dict[str, Path]) -> dict[str, object]:
    """The dish tagger of each run, keyed by its table label, and the ALBERT one without its corpus lexicon."""
    from albert_dish.predict import DishTagger

    taggers = {LABELS[k]: DishTagger.load(v / "dish-tagger") for k, v in runs.items()}
    albert = taggers[LABELS["albert"]]
    if albert.lexicon is not None:
        taggers = {LABELS["albert"]: albert, NO_LEXICON: albert.without_lexicon(), **taggers}
    return taggers


def lexicon_note(runs: dict[str, Path]) -> str:
    """A sentence on the shipped tagger's corpus lexicon (empty when it has none)."""
    from albert_dish.lexicon import load_lexicon

    lexicon = load_lexicon(runs["albert"] / "dish-tagger")
    if lexicon is None:
        return ""
    return (f" At prediction time the corpus lexicon (`corpus_lexicon.json`) makes the tagger consistent with itself: "
            f"it tagged the {lexicon.info.get('lines', 0):,} corpus lines once, and phrases it tagged in at least "
            f"{lexicon.info.get('min_share', 0):.0%} of the lines they occur in ({len(lexicon.add):,}) are added where "
            f"the model misses them, while phrases tagged in under {lexicon.info.get('drop_max_share', 0):.0%} of "
            f"at least {lexicon.info.get('drop_min_lines', 0)} lines ({len(lexicon.drop):,}) are dropped. Every "
            f"model in the table has its own lexicon; the 'no lexicon' row is the ALBERT model alone.")


def evaluate_all(taggers: dict[str, object], train: Path, files: list[Path]) -> list[EvalReport]:
    """Every model and the gazetteer baseline on every file (each file read once)."""
    seen = training_dishes(train)
    tokenizer = taggers[LABELS["albert"]].tokenizer
    reports = []
    for path in files:
        data = read_labelled(path)
        for name, tagger in {**taggers, "gazetteer": Gazetteer(seen)}.items():
            reports.append(evaluate_file(name, tagger, data, seen, tokenizer)[0])
    return reports


def format_markdown(reports: list[EvalReport]) -> str:
    """A Markdown table: entity P/R/F1, token accuracy and seen/unseen F1 per model and split."""
    rows = ["| split | model | precision | recall | entity F1 | token acc. | F1 seen dishes | F1 unseen dishes |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in reports:
        acc = f"{r.token_accuracy:.3f}" if r.token_accuracy is not None else "–"
        unseen = f"{r.unseen['f1']:.3f} ({r.unseen['gold']})" if r.unseen["gold"] else "–"
        rows.append(f"| {Path(r.data).stem.removeprefix('dish_name_')} | {r.tagger} | {r.overall['precision']:.3f} | "
                    f"{r.overall['recall']:.3f} | **{r.overall['f1']:.3f}** | {acc} | {r.seen['f1']:.3f} | {unseen} |")
    return "\n".join(rows)


def same_task_result(runs: dict[str, Path], taggers: dict[str, object], reports: list[EvalReport]) -> dict:
    """BERT vs ALBERT on the dish task: parameters, training time, F1 per split (for the app's compare tab)."""
    from albert_dish.model import count_parameters

    result = {"command": COMMAND,
              "note": "both fine-tuned at the preset's rate, which was tuned on ALBERT; at 5e-3 and without lexicons "
                      "(session 7) BERT scored 0.4-1.1 F1 points above the ALBERT of that time (README, Results)"}
    for key in ("albert", "bert"):
        label = LABELS[key]
        entry = {"parameters": count_parameters(taggers[label].model), "training_seconds": _elapsed(runs[key]),
                 "size_mb": round((runs[key] / "dish-tagger" / "model.safetensors").stat().st_size / 1e6, 2)}
        for r in reports:
            if r.tagger == label:
                split = Path(r.data).stem.removeprefix("dish_name_")
                entry[f"{split}_f1"] = r.overall["f1"]
                entry[f"{split}_unseen_f1"] = r.unseen["f1"]
        result[key] = entry
    return result


def self_training_note(fin: dict) -> str:
    """A sentence on the self-training rounds of a fine-tuning config (empty when it had none)."""
    if not fin.get("self_training_rounds"):
        return ""
    return (f" Then {fin['self_training_rounds']} self-training round(s): the tagger tags the corpus, and "
            f"{fin['self_training_epochs']} more epochs run on the training rows plus up to {fin['self_training_rows']} "
            f"corpus reviews in which it is sure of every dish (score >= {fin['self_training_min_score']}).")


def embedding_notes(pre: dict, fin: dict) -> tuple[str, str]:
    """How the word embeddings were made (pretraining) and treated (fine-tuning), from the run configs."""
    made = ("; word embeddings initialised from the corpus's co-occurrence statistics, PPMI + SVD"
            if pre.get("embedding_init") == "cooccurrence" else "")
    scale = fin.get("embedding_lr_scale", 1.0)
    kept = ("; word embeddings frozen" if scale == 0 else
            f"; word embeddings at {scale:g}x the learning rate" if scale < 1 else "")
    return made, kept


def model_card(runs: dict[str, Path], table: str) -> str:
    """README.md of the shipped tagger: data, command, configuration and measured results."""
    pre = json.loads((runs["albert"] / "pretrain" / "run_config.json").read_text())
    fin = json.loads((runs["albert"] / "finetune" / "run_config.json").read_text())
    made, kept = embedding_notes(pre, fin)
    typos = (f"; {fin['typo_rate']:.0%} of the other words are misspelled each epoch, as in real reviews"
             if fin.get("typo_rate") else "")
    status = runs["albert"] / "finetune" / "status.json"
    device = json.loads(status.read_text()).get("device", "a CPU") if status.exists() else "a CPU"
    return f"""---
language: en
library_name: transformers
pipeline_tag: token-classification
tags: [albert, ner, restaurant-reviews, dish-names]
---

# albert-dish dish tagger (tiny ALBERT)

Finds dish names in restaurant reviews (BIO labels `O`, `B-DISH`, `I-DISH`). An ALBERT encoder
(embedding {pre['embedding_size']}, hidden {pre['hidden_size']}, {pre['num_hidden_layers']} shared layers,
{pre['num_attention_heads']} heads, FFN {pre['intermediate_size']}, SentencePiece vocabulary {pre['vocab_size']})
pretrained from scratch with masked LM + sentence-order prediction and LAMB on `data_toy/restaurant_review.txt`
({pre['max_steps']} steps × {pre['batch_size']}{made}), then fine-tuned on `data_toy/dish_name_train.csv`
({fin['epochs']} epochs max, batch {fin['batch_size']}, best epoch by validation entity F1{kept}; each epoch
{fin['swap_rate']:.0%} of the training dishes are renamed, to another training dish or to a made-up name, so the tagger
learns where dishes sit in a review rather than a list of names{typos}).{self_training_note(fin)}{lexicon_note(runs)}
Trained in {_elapsed(runs['albert']) / 60:.1f} minutes of stage time on {device}.

Reproduce (also the ablation and the BERT comparison): `{COMMAND}`

```python
from albert_dish import DishTagger
DishTagger.load("checkpoints/dish-tagger").tag("The khao soi was great but the spring rolls were soggy.")
# or: transformers.pipeline("token-classification", model="checkpoints/dish-tagger", aggregation_strategy="simple")
```

## Results (exact-span entity scores; measured by `python -m albert_dish evaluate`)

"Unseen" dishes never occur in the training rows; the count of gold mentions is in brackets.
The gazetteer tags exact matches of the training dish names.

{table}

Validation is used to pick the best epoch (and, in session 8, the corpus lexicon's thresholds); test is used for nothing but this table.
"""


def ship(runs: dict[str, Path], table: str, same_task: dict, target: Path) -> None:
    """Copy the ALBERT tagger and encoder into `target` (without training checkpoints) with the card and results."""
    for name in ("dish-tagger", "albert-pretrained"):
        with atomic_dir(target / name) as tmp:
            for item in (runs["albert"] / name).iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
            if name == "dish-tagger":
                (tmp / "README.md").write_text(model_card(runs, table), encoding="utf-8")
    write_text_atomic(target / "results.md", table + "\n")
    write_json_atomic(target / "bert-vs-albert.json", same_task)


def main(argv: list[str] | None = None) -> int:
    """`python -m albert_dish reproduce`: train (or reuse) all three runs, evaluate, and ship to checkpoints/."""
    parser = argparse.ArgumentParser(prog="python -m albert_dish reproduce", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shipped"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--corpus", type=Path, default=DATA / "restaurant_review.txt")
    parser.add_argument("--train", type=Path, default=DATA / "dish_name_train.csv")
    parser.add_argument("--val", type=Path, default=DATA / "dish_name_val.csv")
    parser.add_argument("--test", type=Path, default=DATA / "dish_name_test.csv")
    parser.add_argument("--target", type=Path, default=ROOT / "checkpoints", help="where the shipped model goes")
    args = parser.parse_args(argv)
    runs = train_all(args.out, args.corpus, args.train, args.val, args.preset)
    taggers = load_taggers(runs)
    reports = evaluate_all(taggers, args.train, [args.val, args.test])
    table = format_markdown(reports)
    ship(runs, table, same_task_result(runs, taggers, reports), args.target)
    print(table)
    return 0
