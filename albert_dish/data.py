"""Read the tutorial's formats and turn labelled reviews into character spans and BIO token labels.

Input: `restaurant_review.txt` (one review per line) and `review,dish_name` CSVs.
Output: lists of reviews and `LabelledReview`s; pure helpers for spans, BIO labels and SOP segments.
"""
from __future__ import annotations

import csv
import functools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from albert_dish.model import LABELS

log = logging.getLogger(__name__)
LABEL2ID = {label: i for i, label in enumerate(LABELS)}
IGNORE = -100


@dataclass(frozen=True)
class Span:
    """A dish mention: its exact `text` and character offsets `start`/`end` in the review."""

    text: str
    start: int
    end: int
    score: float = 1.0


@dataclass
class LabelledReview:
    """One review with every occurrence of its listed dishes as spans; `line` is the first CSV line it came from."""

    review: str
    dishes: list[str]
    spans: list[Span]
    line: int


@dataclass
class LabelledData:
    """A labelled CSV read into reviews, plus what could not be labelled."""

    path: Path
    reviews: list[LabelledReview]
    missing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs: counts of reviews, spans and dishes not found."""
        spans = sum(len(r.spans) for r in self.reviews)
        return (f"{self.path.name}: {len(self.reviews)} reviews, {spans} dish mentions, "
                f"{sum(not r.spans for r in self.reviews)} without dishes, {len(self.missing)} listed dishes not found")


def read_corpus(path: Path) -> list[str]:
    """Return the non-empty lines of a UTF-8 corpus file (one review per line)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Corpus file {path} does not exist; give a UTF-8 text file with one review per line.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text ({err.reason}); re-save the file as UTF-8.") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise ValueError(f"Corpus file {path} has no reviews; put one review per line.")
    return lines


@functools.lru_cache(maxsize=4096)
def dish_pattern(*names: str) -> re.Pattern[str]:
    """Case-insensitive whole-word pattern of dish names, longest first (the labelling rule every module shares)."""
    ordered = sorted(names, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)", re.IGNORECASE)


def find_spans(review: str, dishes: list[str]) -> tuple[list[Span], list[str]]:
    """Find every case-insensitive whole-word occurrence of each dish; return (spans sorted, dishes not found).

    Longer dishes win where two overlap ("chicken tikka masala" over "chicken").
    """
    found: list[Span] = []
    missing = []
    for dish in sorted(set(dishes), key=len, reverse=True):
        hits = [Span(review[m.start():m.end()], m.start(), m.end()) for m in dish_pattern(dish).finditer(review)]
        if not hits:
            missing.append(dish)
        for hit in hits:
            if all(hit.end <= s.start or hit.start >= s.end for s in found):
                found.append(hit)
    return sorted(found, key=lambda s: s.start), missing


def split_dishes(cell: str) -> list[str]:
    """Split a `dish_name` cell on `;` into stripped, non-empty names."""
    return [d.strip() for d in (cell or "").split(";") if d.strip()]


def read_labelled(path: Path) -> LabelledData:
    """Read a `review,dish_name` CSV; rows repeating a review merge; dishes not in their review are reported."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Labelled file {path} does not exist; give a CSV with columns review,dish_name.")
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "review" not in columns or "dish_name" not in columns:
            raise ValueError(f"{path}, line 1: expected columns 'review,dish_name', found {reader.fieldnames}; "
                             "rename the header row.")
        reader.fieldnames = columns
        merged: dict[str, tuple[int, list[str]]] = {}
        for row in reader:
            line = reader.line_num
            review = (row.get("review") or "").strip()
            if not review:
                log.warning("%s, line %d: empty review, skipped", path, line)
                continue
            first_line, dishes = merged.setdefault(review, (line, []))
            dishes.extend(d for d in split_dishes(row.get("dish_name") or "") if d not in dishes)
    if not merged:
        raise ValueError(f"{path} has no rows; add rows with a review and its dish names.")
    data = LabelledData(path, [])
    for review, (line, dishes) in merged.items():
        spans, missing = find_spans(review, dishes)
        for dish in missing:
            log.warning("%s, line %d: dish %r does not occur in its review; it is not labelled", path, line, dish)
            data.missing.append(f"{path.name}:{line}: {dish}")
        data.reviews.append(LabelledReview(review, dishes, spans, line))
    log.info(data.summary())
    return data


def bio_labels(offsets: list[tuple[int, int]], spans: list[Span]) -> list[int]:
    """BIO label ids for tokens with character `offsets`; special tokens ((0, 0)) get -100."""
    labels = []
    previous_span = None
    for start, end in offsets:
        if start == end:
            labels.append(IGNORE)
            previous_span = None
            continue
        span = next((s for s in spans if start < s.end and end > s.start), None)
        if span is None:
            labels.append(LABEL2ID["O"])
        elif span is previous_span:
            labels.append(LABEL2ID["I-DISH"])
        else:
            labels.append(LABEL2ID["B-DISH"])
        previous_span = span
    return labels


def spans_from_labels(text: str, offsets: list[tuple[int, int]], labels: list[int],
                      scores: list[float] | None = None) -> list[Span]:
    """Decode token label ids back to character spans; an I after O starts a span; score = mean token score."""
    spans: list[Span] = []
    current: list[int] = []

    def close() -> None:
        if current:
            start, end = offsets[current[0]][0], offsets[current[-1]][1]
            while start < end and text[start].isspace():
                start += 1
            score = sum(scores[i] for i in current) / len(current) if scores else 1.0
            spans.append(Span(text[start:end], start, end, round(float(score), 4)))
            current.clear()

    for i, ((start, end), label) in enumerate(zip(offsets, labels)):
        name = LABELS[label] if label >= 0 else "O"
        if start == end or name == "O":
            close()
        elif name == "B-DISH" or not current or start > offsets[current[-1]][1] + 1:
            close()
            current.append(i)
        else:
            current.append(i)
    close()
    return spans


def split_segments(text: str) -> tuple[str, str] | None:
    """Split a review into two consecutive segments for sentence-order prediction (None if under two words).

    Splits at the sentence boundary nearest the middle; a one-sentence review splits at its middle word.
    """
    boundaries = [m.end() for m in re.finditer(r"[.!?]+\s+", text)]
    middle = len(text) / 2
    if boundaries:
        cut = min(boundaries, key=lambda b: abs(b - middle))
    else:
        words = [m.start() for m in re.finditer(r"\s\S", text)]
        if not words:
            return None
        cut = min(words, key=lambda b: abs(b - middle)) + 1
    first, second = text[:cut].strip(), text[cut:].strip()
    return (first, second) if first and second else None


def word_ids(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """Word index of each token: sub-words joined without a gap share a word; punctuation is a word of its own."""
    ids: list[int] = []
    previous_end, previous_punct = -1, False
    for start, end in offsets:
        piece = text[start:end]
        punct = bool(piece) and not any(c.isalnum() for c in piece)
        new_word = not ids or start > previous_end or punct or previous_punct
        ids.append(ids[-1] + 1 if ids and new_word else (ids[-1] if ids else 0))
        previous_end, previous_punct = end, punct
    return ids
