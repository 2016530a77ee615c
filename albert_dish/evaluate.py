"""Measure a dish tagger on labelled CSVs: exact-span entity P/R/F1, token accuracy, seen vs unseen dishes,
beside a gazetteer baseline (exact case-insensitive matches of the training dish names).

Input: a `dish-tagger` folder, labelled CSVs, the training CSV. Output: `EvalReport`s (and an errors CSV).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from albert_dish.data import LabelledData, LabelledReview, Span, dish_pattern, read_labelled
from albert_dish.files import write_text_atomic


@dataclass
class Counts:
    """True positives, predictions and gold spans for one group of dishes."""

    tp: int = 0
    predicted: int = 0
    gold: int = 0

    @property
    def precision(self) -> float:
        return self.tp / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.tp / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(precision=round(self.precision, 4), recall=round(self.recall, 4), f1=round(self.f1, 4),
                    tp=self.tp, predicted=self.predicted, gold=self.gold)


@dataclass
class EvalReport:
    """Scores of one tagger on one file; `seen`/`unseen` split dishes by whether they occur in the training rows."""

    tagger: str
    data: str
    reviews: int
    overall: dict
    seen: dict
    unseen: dict
    token_accuracy: float | None


@dataclass
class Error:
    """A miss (gold span not predicted) or a false alarm (predicted span not in the gold)."""

    line: int
    review: str
    kind: str
    dish: str
    start: int
    end: int


class Gazetteer:
    """Baseline: tags exact, case-insensitive, whole-word matches of known dish names (longest first)."""

    def __init__(self, dishes: set[str]):
        self.pattern = dish_pattern(*sorted({d.lower() for d in dishes}))

    def tag_batch(self, texts: list[str]) -> list[list[Span]]:
        return [[Span(m.group(), m.start(), m.end()) for m in self.pattern.finditer(t)] for t in texts]


def training_dishes(train_csv: Path) -> set[str]:
    """Lower-cased dish names labelled in the training file."""
    return {s.text.lower() for r in read_labelled(train_csv).reviews for s in r.spans}


def score_spans(reviews: list[LabelledReview], predictions: list[list[Span]], seen: set[str],
                tokenizer=None) -> tuple[dict[str, Counts], float | None, list[Error]]:
    """Exact-span counts overall/seen/unseen, token accuracy (BIO over the tokenizer's tokens) and the errors."""
    from albert_dish.data import bio_labels

    counts = {"overall": Counts(), "seen": Counts(), "unseen": Counts()}
    errors: list[Error] = []
    correct = total = 0
    for review, predicted in zip(reviews, predictions):
        gold = {(s.start, s.end): s for s in review.spans}
        guess = {(s.start, s.end): s for s in predicted}
        for key, span in gold.items():
            group = "seen" if span.text.lower() in seen else "unseen"
            for name in ("overall", group):
                counts[name].gold += 1
                counts[name].tp += key in guess
            if key not in guess:
                errors.append(Error(review.line, review.review, "miss", span.text, *key))
        for key, span in guess.items():
            group = "seen" if span.text.lower() in seen else "unseen"
            for name in ("overall", group):
                counts[name].predicted += 1
            if key not in gold:
                errors.append(Error(review.line, review.review, "false alarm", span.text, *key))
        if tokenizer is not None:
            offsets = tokenizer(review.review, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
            truth, guess_labels = bio_labels(offsets, review.spans), bio_labels(offsets, predicted)
            correct += sum(t == g for t, g in zip(truth, guess_labels))
            total += len(truth)
    return counts, (round(correct / total, 4) if total else None), errors


def entity_scores(reviews: list[LabelledReview], predictions: list[list[Span]]) -> dict[str, float]:
    """Overall exact-span entity precision / recall / F1, rounded to 4 places."""
    scores = score_spans(reviews, predictions, seen=set())[0]["overall"].as_dict()
    return {key: scores[key] for key in ("precision", "recall", "f1")}


def evaluate_file(name: str, tagger, data: LabelledData, seen: set[str],
                  tokenizer=None) -> tuple[EvalReport, list[Error]]:
    """Run `tagger` over a labelled file (read once by the caller) and score it."""
    predictions = tagger.tag_batch([r.review for r in data.reviews])
    counts, token_accuracy, errors = score_spans(data.reviews, predictions, seen, tokenizer)
    return EvalReport(name, str(data.path), len(data.reviews), counts["overall"].as_dict(), counts["seen"].as_dict(),
                      counts["unseen"].as_dict(), token_accuracy), errors


def format_reports(reports: list[EvalReport]) -> str:
    """A plain-text table of the reports."""
    head = f"{'tagger':<12} {'data':<24} {'P':>6} {'R':>6} {'F1':>6} {'tok acc':>7} {'seen F1':>8} {'unseen F1':>9} {'gold seen/unseen':>17}"
    rows = [head, "-" * len(head)]
    for r in reports:
        acc = f"{r.token_accuracy:.4f}" if r.token_accuracy is not None else "-"
        rows.append(f"{r.tagger:<12} {Path(r.data).name:<24} {r.overall['precision']:>6.4f} {r.overall['recall']:>6.4f} "
                    f"{r.overall['f1']:>6.4f} {acc:>7} {r.seen['f1']:>8.4f} {r.unseen['f1']:>9.4f} "
                    f"{r.seen['gold']:>8}/{r.unseen['gold']:<8}")
    return "\n".join(rows)


def write_errors(path: Path, errors: list[tuple[str, Error]]) -> None:
    """Write misses and false alarms as a CSV, atomically."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["data", "line", "kind", "dish", "start", "end", "review"])
    for data, e in errors:
        writer.writerow([data, e.line, e.kind, e.dish, e.start, e.end, e.review])
    write_text_atomic(path, out.getvalue())


def main(args: argparse.Namespace) -> int:
    """`python -m albert_dish evaluate`: the model, the model without its corpus lexicon (if it has one) and the
    gazetteer on each --data file."""
    from albert_dish.predict import DishTagger

    tagger = DishTagger.load(args.model)
    alone = tagger.without_lexicon() if tagger.lexicon is not None else None
    seen = training_dishes(args.train)
    gazetteer = Gazetteer(seen)
    reports, errors = [], []
    for data_csv in args.data:
        data = read_labelled(data_csv)
        report, errs = evaluate_file("model", tagger, data, seen, tagger.tokenizer)
        reports.append(report)
        errors += [(Path(data_csv).name, e) for e in errs]
        if alone is not None:
            reports.append(evaluate_file("no lexicon", alone, data, seen, tagger.tokenizer)[0])
        reports.append(evaluate_file("gazetteer", gazetteer, data, seen, tagger.tokenizer)[0])
    if args.errors:
        write_errors(args.errors, errors)
    print(json.dumps([asdict(r) for r in reports], indent=2) if args.json else format_reports(reports))
    return 0
