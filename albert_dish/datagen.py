"""Build and check the toy dish-tagging data.

Input: data_toy/sources/ (lexicon.json, frames.json, handwritten/*.jsonl).
Output: restaurant_review.txt (unlabelled pretraining corpus, one review a line) and dish_name_{train,val,test}.csv
(columns review,dish_name: dish names as written in the review, ';'-separated in order of appearance, empty = no dish).
"""
from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from albert_dish.data import dish_pattern
from albert_dish.files import write_text_atomic

logger = logging.getLogger(__name__)

DEFAULT_SOURCES = Path(__file__).resolve().parent.parent / "data_toy" / "sources"
CORPUS_FILE = "restaurant_review.txt"
SPLITS = ("train", "val", "test")
COLUMNS = ["review", "dish_name"]
SEPARATOR = ";"
TONES = ("positive", "negative", "neutral", "sarcastic")
ARTICLES = ("the", "a", "an", "their", "my", "our", "this", "that", "some")
WORD = re.compile(r"\w+")
AND_GAP = re.compile(r"\W*\band\b\W*", re.IGNORECASE)
A_BEFORE = re.compile(r"(^|\s)[Aa] $")
SPACES = re.compile(r" {2,}")
SLOT = re.compile(r"\{(\w+)\}")
DISH_SLOT = re.compile(r"[AD]([123])")
FILLER_SLOTS = {"drink", "ingredient", "generic", "cuisine", "restaurant", "adj_pos", "adj_neg", "adj_neu",
                "staff", "decor", "price", "wait", "person", "day", "count"}
TEXTING = [(re.compile(rf"\b{long}\b"), short) for long, short in (
    ("you", "u"), ("your", "ur"), ("really", "rly"), ("because", "bc"), ("with", "w"), ("though", "tho"),
    ("definitely", "def"), ("probably", "prob"), ("people", "ppl"), ("please", "pls"), ("thanks", "thx"),
    ("okay", "ok"), ("tonight", "tonite"), ("going to", "gonna"), ("want to", "wanna"), ("to be honest", "tbh"))]
INTERJECTIONS = ("tbh ", "ngl ", "honestly ", "lowkey ", "imo ", "ok so ", "not gonna lie, ")
EMPHASIS = {"so", "never", "best", "worst", "really", "not", "too", "way", "absolutely", "actually", "all",
            "every", "always", "nothing", "still", "huge", "again", "must", "zero", "everything"}


# ---------------------------------------------------------------- config and report


@dataclass(frozen=True)
class DataGenConfig:
    """Sizes and shares of the generated data; the defaults meet the toy data's acceptance bars."""

    lexicon_held_out: float = 0.30  # share of lexicon dishes never shown in train rows
    handwritten_held_out: float = 0.40  # share of handwritten dish names held out (their reviews go to val/test)
    val_held_out: float = 0.35  # share of the held-out names kept for val; the rest are test's
    val_unseen_share: float = 0.40  # val dish mentions of held-out dishes, so val measures generalisation too
    train_rows: int = 4000
    val_rows: int = 800
    test_rows: int = 1000
    min_templated_rows: int = 300  # per split, so every split keeps all generated review shapes
    test_seen_dish_rate: float = 0.25  # templated test dish slots filled with train dishes, so test is not all-new
    min_handwritten_eval: int = 300  # handwritten reviews that val + test must get
    corpus_lines: int = 24000

    def __post_init__(self) -> None:
        """Validate shares and sizes."""
        for name in ("lexicon_held_out", "handwritten_held_out", "val_held_out", "val_unseen_share",
                     "test_seen_dish_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"DataGenConfig.{name}={value} must be in [0, 1).")
        if min(self.train_rows, self.val_rows, self.test_rows, self.corpus_lines) < 1:
            raise ValueError("DataGenConfig row counts must be positive.")


PRESETS = {
    "toy": DataGenConfig(),
    # a quick build for tests of other stages: same shapes, a tenth of the rows
    "tiny": DataGenConfig(train_rows=300, val_rows=60, test_rows=60, min_templated_rows=40, corpus_lines=1000,
                          min_handwritten_eval=0),
}


@dataclass(frozen=True)
class SplitStats:
    """Counts for one labelled split."""

    name: str
    rows: int
    by_dish_count: tuple[int, int, int, int]  # rows with 0, 1, 2, 3+ dishes
    mentions: int  # listed dishes summed over rows
    distinct_dishes: int
    unseen_mentions: int  # mentions of dishes that no train row lists
    multi_word: int  # rows with a multi-word dish, and so on
    accented: int
    hyphenated: int
    lowercase: int
    repeated: int
    joined_by_and: int

    @property
    def unseen_share(self) -> float:
        """Share of the split's dish mentions whose dish no train row lists (0 when it has none)."""
        return self.unseen_mentions / self.mentions if self.mentions else 0.0


@dataclass(frozen=True)
class CorpusStats:
    """Counts for the pretraining corpus."""

    lines: int
    distinct_dishes: int
    cuisines: int
    mean_words: float
    short_lines: int  # 6 words or fewer
    long_lines: int  # 60 words or more
    lowercase_lines: int  # no capital letter at all


@dataclass(frozen=True)
class Bar:
    """One acceptance bar: the measured value against its target."""

    name: str
    value: float
    target: float
    at_most: bool = False  # the target is a ceiling, not a floor

    @property
    def ok(self) -> bool:
        """Whether the value reaches the target."""
        return self.value <= self.target if self.at_most else self.value >= self.target

    def format(self) -> str:
        """One line: status, name, value and target."""
        return (f"[{'ok' if self.ok else 'FAIL'}] {self.name}: {self.value:g} "
                f"(needs {'<=' if self.at_most else '>='} {self.target:g})")


@dataclass
class BuildInfo:
    """What build_dataset did with its sources."""

    seed: int
    handwritten_lines: int
    handwritten_used: int
    handwritten_skipped: list[str]
    handwritten_duplicates: int
    handwritten_to: dict[str, int]
    train_only: tuple[int, int, int]  # handwritten_train/ lines, used, dropped for naming a held-out dish
    held_out_lexicon: tuple[int, int]  # held out, total
    held_out_handwritten: tuple[int, int]
    held_out_groups: dict[str, int]  # "val"/"test" -> held-out names kept for that split
    templated_to: dict[str, int]
    corpus_generated: int
    seconds: float


@dataclass
class DataReport:
    """Result of check_dataset (and of build_dataset, which adds `build`)."""

    data_dir: Path
    splits: list[SplitStats]
    corpus: CorpusStats
    bars: list[Bar]
    build: BuildInfo | None = None

    @property
    def ok(self) -> bool:
        """Whether every acceptance bar is met."""
        return all(bar.ok for bar in self.bars)

    def format(self) -> str:
        """Human-readable summary for logs and the README."""
        lines = [f"Data in {self.data_dir}"]
        header = (f"{'split':6} {'rows':>6} {'0':>5} {'1':>5} {'2':>5} {'3+':>5} {'mentions':>9} {'dishes':>7} "
                  f"{'unseen':>7}")
        lines += ["", header]
        for s in self.splits:
            lines.append(f"{s.name:6} {s.rows:6d} {s.by_dish_count[0]:5d} {s.by_dish_count[1]:5d} "
                         f"{s.by_dish_count[2]:5d} {s.by_dish_count[3]:5d} {s.mentions:9d} {s.distinct_dishes:7d} "
                         f"{s.unseen_share:7.1%}")
        lines += ["", "rows with: multi-word / accented / hyphenated / lowercase-written / named twice / "
                      "'X and Y' dishes"]
        for s in self.splits:
            lines.append(f"  {s.name:6} {s.multi_word} / {s.accented} / {s.hyphenated} / {s.lowercase} / "
                         f"{s.repeated} / {s.joined_by_and}")
        c = self.corpus
        lines += ["", f"corpus: {c.lines} lines, {c.distinct_dishes} distinct dishes from {c.cuisines} cuisines, "
                      f"{c.mean_words:.1f} words a line on average, {c.short_lines} lines of <= 6 words, "
                      f"{c.long_lines} of >= 60, {c.lowercase_lines} all-lowercase"]
        if self.build:
            b = self.build
            lines += ["", f"build: seed {b.seed}, {b.seconds:.1f} s",
                      f"  handwritten: {b.handwritten_lines} lines, {b.handwritten_used} used, "
                      f"{len(b.handwritten_skipped)} skipped, {b.handwritten_duplicates} duplicates dropped; "
                      + ", ".join(f"{k} {v}" for k, v in b.handwritten_to.items()),
                      f"  handwritten for training only: {b.train_only[0]} lines, {b.train_only[1]} used in train, "
                      f"{b.train_only[2]} dropped for naming a held-out dish",
                      f"  held out: {b.held_out_lexicon[0]}/{b.held_out_lexicon[1]} lexicon dishes, "
                      f"{b.held_out_handwritten[0]}/{b.held_out_handwritten[1]} handwritten dish names; "
                      f"{b.held_out_groups['val']} kept for val, {b.held_out_groups['test']} for test",
                      "  templated rows: " + ", ".join(f"{k} {v}" for k, v in b.templated_to.items())
                      + f"; generated corpus reviews: {b.corpus_generated}"]
        lines += ["", "acceptance bars:"]
        for bar in self.bars:
            lines.append(f"  {bar.format()}")
        return "\n".join(lines)


# ---------------------------------------------------------------- dish names in text


def fold_case(text: str) -> str:
    """Lowercase `text` one character for one, as re.IGNORECASE compares letters: 'İ' becomes 'i', where
    str.lower() would give 'i' plus a combining dot and shift every offset after it."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else "".join(c.lower()[:1] for c in text)


def normalize_name(name: str) -> str:
    """Case-insensitive key of a dish name (or a review): case-folded (fold_case), single spaces."""
    return " ".join(fold_case(name).split())


@functools.lru_cache(maxsize=None)
def name_tokens(text: str) -> tuple[str, ...]:
    """Case-folded word tokens of `text` (the unit of whole-word matching)."""
    return tuple(m.group() for m in WORD.finditer(fold_case(text)))


def find_dish(review: str, dish: str) -> list[tuple[int, int]]:
    """Character spans of every case-insensitive whole-word occurrence of `dish` in `review` (the reader's rule)."""
    return [m.span() for m in dish_pattern(dish).finditer(review)]


def has_line_break(text: str) -> bool:
    """Whether `text` holds any character that str.splitlines() breaks at (a corpus line must stay one line)."""
    return len(text.splitlines()) > 1 or any(c in text for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def contains_name(big: str, small: str) -> bool:
    """Whether dish name `small` occurs as whole words inside dish name `big`."""
    b, s = name_tokens(big), name_tokens(small)
    return any(b[i:i + len(s)] == s for i in range(len(b) - len(s) + 1))


class NameIndex:
    """Finds many known names in a text at once, by whole-word token sequence."""

    def __init__(self, names: Iterable[str]) -> None:
        """Index `names` by their first token."""
        self._by_first: dict[str, list[tuple[list[str], str]]] = {}
        for key in sorted({normalize_name(n) for n in names}):
            tokens = list(name_tokens(key))
            if tokens:
                self._by_first.setdefault(tokens[0], []).append((tokens, key))

    def _hits(self, words: list[str]) -> list[tuple[int, int, str]]:
        """(first word, word count, key) of every known name in a list of lowercased words."""
        return [(i, len(tokens), key) for i, word in enumerate(words) for tokens, key in self._by_first.get(word, ())
                if words[i:i + len(tokens)] == tokens]

    def keys(self, text: str) -> set[str]:
        """Known names that occur in `text`."""
        return {key for _, _, key in self._hits(WORD.findall(fold_case(text)))}

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, key) of every known name in `text`, nested ones included."""
        if not self.keys(text):
            return []
        matches = list(WORD.finditer(fold_case(text)))  # fold_case keeps offsets, so they index `text`
        return [(matches[i].start(), matches[i + n - 1].end(), key)
                for i, n, key in self._hits([m.group() for m in matches])]


# ---------------------------------------------------------------- sources


@dataclass(frozen=True)
class Lexicon:
    """Dish names by cuisine and the pools of non-dish words (data_toy/sources/lexicon.json)."""

    dishes: dict[str, str]  # name as written -> cuisine
    pools: dict[str, list[str]]  # filler slot name -> values

    def non_dish_keys(self) -> set[str]:
        """Normalized words that the guideline says are not dishes."""
        keys = set()
        for pool in ("drink", "ingredient", "generic", "cuisine", "restaurant"):
            for value in self.pools[pool]:
                keys.add(normalize_name(value))
                keys.add(normalize_name(re.sub(r"^the ", "", value, flags=re.IGNORECASE)))
        keys |= {normalize_name(f"{c} food") for c in self.pools["cuisine"]}
        return keys

    def opinion_words(self) -> set[str]:
        """Opinion adjectives, which never start a dish name."""
        return {w.lower() for pool in ("adj_pos", "adj_neg") for w in self.pools[pool]}


def load_lexicon(path: Path) -> Lexicon:
    """Read and validate lexicon.json."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    dishes: dict[str, str] = {}
    seen: dict[str, str] = {}
    for cuisine, names in data["dishes"].items():
        for name in names:
            key = normalize_name(name)
            if key in seen or SEPARATOR in name or name != name.strip():
                raise ValueError(f"{path}: dish {name!r} ({cuisine}) is a duplicate of {seen.get(key)!r} or has "
                                 f"stray spaces/'{SEPARATOR}'. Fix the entry in lexicon.json.")
            seen[key] = name
            dishes[name] = cuisine
    adjectives = data["opinion_adjectives"]
    lexicon = Lexicon(dishes=dishes, pools={
        "drink": data["drinks"], "ingredient": data["ingredients"], "generic": data["generic_food_words"],
        "cuisine": data["cuisine_names"], "restaurant": data["restaurant_names"],
        "adj_pos": adjectives["positive"], "adj_neg": adjectives["negative"], "adj_neu": adjectives["neutral"],
        "staff": data["service_phrases"], "decor": data["decor_phrases"], "price": data["price_phrases"],
        "wait": data["wait_phrases"]})
    non_dish, opinions = lexicon.non_dish_keys(), lexicon.opinion_words() | set(ARTICLES)
    for name in dishes:
        key = normalize_name(name)
        if key in non_dish or key.split()[0] in opinions:
            raise ValueError(f"{path}: dish {name!r} is also a non-dish word or starts with an opinion adjective/"
                             "article. Remove it from one of the lists in lexicon.json.")
    return lexicon


@dataclass(frozen=True)
class Frame:
    """A hand-written sentence frame with {slots}."""

    text: str
    category: str
    tone: str
    dish_slots: int  # distinct dish slots {A1}/{D1} .. {A3}/{D3}


@dataclass(frozen=True)
class Frames:
    """All sentence frames (data_toy/sources/frames.json) plus the small filler pools."""

    frames: list[Frame]
    fillers: dict[str, list[str]]

    def pick(self, category: str, tone: str, dish_slots: int) -> list[Frame]:
        """Frames of a category and tone with exactly `dish_slots` dish slots."""
        return [f for f in self.frames if f.category == category and f.tone == tone and f.dish_slots == dish_slots]


def load_frames(path: Path) -> Frames:
    """Read and validate frames.json."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    frames = []
    for category, by_tone in data.items():
        if category in ("about", "fillers"):
            continue
        for tone, texts in by_tone.items():
            if tone not in TONES:
                raise ValueError(f"{path}: tone {tone!r} in {category!r} is not one of {TONES}. Rename it.")
            for text in texts:
                slots = SLOT.findall(text)
                dish_numbers = sorted({int(m.group(1)) for s in slots if (m := DISH_SLOT.fullmatch(s))})
                unknown = [s for s in slots if not DISH_SLOT.fullmatch(s) and s not in FILLER_SLOTS]
                if unknown or dish_numbers != list(range(1, len(dish_numbers) + 1)):
                    raise ValueError(f"{path}: frame {text!r} has unknown slots {unknown} or dish slots that do not "
                                     "count 1, 2, 3. Fix the frame.")
                frames.append(Frame(text, category, tone, len(dish_numbers)))
    return Frames(frames=frames, fillers=data["fillers"])


@dataclass(frozen=True)
class HandReview:
    """One valid hand-written labelled review."""

    review: str
    dishes: tuple[str, ...]  # as written, in order of first appearance
    cuisine: str
    origin: str  # file:line


@dataclass
class HandwrittenLoad:
    """Valid hand-written reviews plus what was wrong with the rest."""

    reviews: list[HandReview] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    duplicates: int = 0
    lines: int = 0


@dataclass(frozen=True)
class HandRules:
    """What a handwritten label is checked against."""

    non_dish: frozenset[str]  # normalized non-dish words
    restaurants: NameIndex
    known: NameIndex  # lexicon dishes

    @classmethod
    def from_lexicon(cls, lexicon: Lexicon) -> HandRules:
        """Rules from the lexicon's non-dish pools, restaurant names and dishes."""
        return cls(frozenset(lexicon.non_dish_keys()), NameIndex(lexicon.pools["restaurant"]),
                   NameIndex(lexicon.dishes))


def check_hand_record(record: object, rules: HandRules) -> tuple[str, list[str], str]:
    """Validate one parsed handwritten line; returns (review, dishes in order, cuisine) or raises ValueError."""
    if not isinstance(record, dict) or not isinstance(record.get("review"), str) \
            or not isinstance(record.get("dishes"), list) or not all(isinstance(d, str) for d in record["dishes"]):
        raise ValueError('expected {"review": str, "dishes": [str, ...], "cuisine": str}')
    review = record["review"].strip()
    if not review or has_line_break(review):
        raise ValueError("review is empty or holds a line break")
    dishes: dict[str, str] = {}
    for dish in record["dishes"]:
        key = normalize_name(dish)
        if not dish or dish != dish.strip() or SEPARATOR in dish:
            raise ValueError(f"dish {dish!r} is empty, has stray spaces or contains '{SEPARATOR}'")
        if dish not in review:
            raise ValueError(f"dish {dish!r} is not an exact substring of the review")
        if not find_dish(review, dish):
            raise ValueError(f"dish {dish!r} does not occur as a whole word")
        if key in rules.non_dish:
            raise ValueError(f"{dish!r} is not a dish by the guideline (drink, ingredient, generic word, cuisine "
                             "or restaurant name)")
        if key.split()[0] in ARTICLES:
            raise ValueError(f"dish {dish!r} starts with an article")
        dishes.setdefault(key, dish)
    spans = {key: find_dish(review, dish) for key, dish in dishes.items()}
    restaurants, known = rules.restaurants.find(review), rules.known.find(review)
    for key, key_spans in spans.items():
        for other, other_spans in spans.items():
            if other != key and any(s[0] <= o[0] and o[1] <= s[1] for s in key_spans for o in other_spans):
                raise ValueError(f"dish {dishes[other]!r} occurs inside dish {dishes[key]!r}")
        for start, end in key_spans:
            for s, e, _ in restaurants:
                if s <= start and end <= e:
                    raise ValueError(f"dish {dishes[key]!r} also occurs in the restaurant name {review[s:e]!r}")
            for s, e, name in known:
                if s <= start and end <= e and (s, e) != (start, end) and name not in dishes:
                    raise ValueError(f"dish {dishes[key]!r} occurs inside the unlisted dish {review[s:e]!r}")
    ordered = sorted(dishes, key=lambda k: spans[k][0][0])
    return review, [dishes[k] for k in ordered], str(record.get("cuisine", "")).strip().lower()


def read_handwritten(folder: Path, lexicon: Lexicon) -> HandwrittenLoad:
    """Read every handwritten/*.jsonl; malformed lines and duplicate reviews are reported and skipped."""
    load = HandwrittenLoad()
    rules = HandRules.from_lexicon(lexicon)
    seen: set[str] = set()
    for path in sorted(Path(folder).glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            load.lines += 1
            origin = f"{path.name}:{number}"
            try:
                review, dishes, cuisine = check_hand_record(json.loads(line), rules)
            except (json.JSONDecodeError, ValueError) as error:
                load.problems.append(f"{origin}: {error}")
                continue
            if fold_case(review) in seen:
                load.duplicates += 1
                continue
            seen.add(fold_case(review))
            load.reviews.append(HandReview(review, tuple(dishes), cuisine, origin))
    for problem in load.problems:
        logger.warning("skipped handwritten %s", problem)
    return load


# ---------------------------------------------------------------- held-out dishes


def partition_held_out(lexicon_names: Sequence[str], hand_names: Sequence[str], seed: int,
                       lexicon_share: float, hand_share: float) -> frozenset[str]:
    """Normalized dish names never shown in train: ~hand_share of handwritten names, then lexicon names up to
    ~lexicon_share; a name that contains a held-out name is held out too."""
    lexicon_keys = sorted({normalize_name(n) for n in lexicon_names})
    hand_keys = sorted({normalize_name(n) for n in hand_names})
    all_keys = sorted(set(lexicon_keys) | set(hand_keys))
    by_tokens: dict[tuple[str, ...], list[str]] = {}
    for key in all_keys:
        by_tokens.setdefault(name_tokens(key), []).append(key)
    containers: dict[str, set[str]] = {k: {k} for k in all_keys}  # name -> names that contain it
    for big in all_keys:
        tokens = name_tokens(big)
        for i in range(len(tokens)):
            for j in range(i + 1, len(tokens) + 1):
                for small in by_tokens.get(tokens[i:j], ()):
                    containers[small].add(big)
    rng = random.Random(f"held-out:{seed}")
    held: set[str] = set()
    hand_set = set(hand_keys)
    rounds = ((hand_keys, hand_set, hand_share),
              ([k for k in lexicon_keys if k not in hand_set], set(lexicon_keys), lexicon_share))
    for candidates, pool, share in rounds:
        order = list(candidates)
        rng.shuffle(order)
        for key in order:
            if len(held & pool) >= round(share * len(pool)):
                break
            held |= containers[key]
    return frozenset(held)


def split_held_out(held: Iterable[str], seed: int, val_share: float,
                   together: Iterable[Iterable[str]] = ()) -> tuple[frozenset[str], frozenset[str]]:
    """Split held-out names into disjoint (val group, test group), ~val_share of the names in val's. Names that
    contain one another (`naan`, `garlic naan`) stay in one group, and so do the held-out names of each set in
    `together` (one handwritten review's dishes), so neither split needs to show the other's names."""
    keys = sorted(set(held))
    parent = {k: k for k in keys}

    def root(key: str) -> str:
        """Union-find root of `key`."""
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    by_tokens = {name_tokens(k): k for k in keys}
    for big in keys:
        tokens = name_tokens(big)
        for i in range(len(tokens)):
            for j in range(i + 1, len(tokens) + 1):
                small = by_tokens.get(tokens[i:j])
                if small is not None:
                    parent[root(small)] = root(big)
    for names in together:
        names = sorted(k for k in set(names) if k in parent)
        for key in names[1:]:
            parent[root(key)] = root(names[0])
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(root(key), []).append(key)
    order = [groups[r] for r in sorted(groups)]
    random.Random(f"held-out-groups:{seed}").shuffle(order)
    val: set[str] = set()
    for group in order:
        if len(val) + len(group) / 2 <= val_share * len(keys):
            val.update(group)
    return frozenset(val), frozenset(keys) - val


def split_handwritten(reviews: Sequence[HandReview], val_held: NameIndex, test_held: NameIndex, seed: int,
                      min_eval: int) -> dict[str, list[HandReview]]:
    """Reviews naming a test-group held-out dish go to test, then those naming a val-group one to val; the rest
    split about half/half between train and val."""
    test = [r for r in reviews if test_held.keys(r.review)]
    val = [r for r in reviews if not test_held.keys(r.review) and val_held.keys(r.review)]
    rest = [r for r in reviews if not test_held.keys(r.review) and not val_held.keys(r.review)]
    random.Random(f"handwritten-split:{seed}").shuffle(rest)
    n_val = min(len(rest), max(len(rest) // 2, min_eval - len(test) - len(val)))
    return {"train": rest[n_val:], "val": val + rest[:n_val], "test": test}


# ---------------------------------------------------------------- composing reviews


@dataclass
class Piece:
    """A run of review text; `dish` is the normalized dish name when the run is a dish mention."""

    text: str
    dish: str | None = None


@dataclass(frozen=True)
class LabelledRow:
    """One row of a dish_name_*.csv."""

    review: str
    dishes: tuple[str, ...]  # as written, in order of first appearance


def title_words(name: str) -> str:
    """'general tso's chicken' -> "General Tso's Chicken" (str.title would give Tso'S)."""
    return " ".join(w[:1].upper() + w[1:] for w in name.split(" "))


def capitalize_first(pieces: list[Piece]) -> None:
    """Upper-case the first letter of the first non-empty piece, in place."""
    for piece in pieces:
        if piece.text:
            piece.text = piece.text[:1].upper() + piece.text[1:]
            return


def merge_pieces(pieces: list[Piece]) -> list[Piece]:
    """Join neighbouring text pieces and squeeze double spaces."""
    merged: list[Piece] = []
    for piece in pieces:
        if merged and piece.dish is None and merged[-1].dish is None:
            merged[-1].text += piece.text
        elif piece.text:
            merged.append(Piece(piece.text, piece.dish))
    for piece in merged:
        if piece.dish is None:
            piece.text = SPACES.sub(" ", piece.text)
    return merged


def is_plural(name: str) -> bool:
    """Rough guess whether a dish name is plural (no 'a' before it)."""
    last = name.split()[-1].lower()
    return last.endswith("s") and not last.endswith(("ss", "us"))


class ReviewComposer:
    """Composes reviews from sentence frames, dish names and filler pools, with random noise."""

    def __init__(self, lexicon: Lexicon, frames: Frames, forms: dict[str, str], rng: random.Random) -> None:
        """`forms` maps a normalized dish name to how it is usually written."""
        self.rng = rng
        self.forms = forms
        self.fillers = {**lexicon.pools, **frames.fillers}
        self.dish_frames = {(tone, n): frames.pick("dish", tone, n) + frames.pick("recommend", tone, n)
                            for tone in TONES for n in (1, 2, 3)}
        self.other_frames = {(cat, tone): frames.pick(cat, tone, 0) for cat in
                             ("service", "ambiance", "price", "drinks", "visit", "recommend", "food_general")
                             for tone in TONES}

    # --- one sentence

    def _article(self, form: str, start: bool) -> str:
        """A random article (with trailing space) or nothing."""
        choices = [("the", 34), ("", 22), ("their", 14), ("my", 9), ("a", 0 if is_plural(form) else 8),
                   ("our", 5), ("this", 5), ("that", 3)]
        article = self.rng.choices([a for a, _ in choices], [w for _, w in choices])[0]
        if article == "a" and form[:1].lower() in "aeiou":
            article = "an"
        if article and start:
            article = article.capitalize()
        return f"{article} " if article else ""

    def render(self, frame: Frame, dishes: Sequence[str], written: dict[str, str]) -> list[Piece]:
        """Fill a frame's slots; dish slot k takes dishes[k-1], written as in `written`."""
        pieces: list[Piece] = []
        position = 0
        for match in SLOT.finditer(frame.text):
            pieces.append(Piece(frame.text[position:match.start()]))
            position = match.end()
            slot = match.group(1)
            start = match.start() == 0
            if DISH_SLOT.fullmatch(slot):
                key = dishes[int(slot[1]) - 1]
                form = written[key]
                if slot[0] == "A":
                    pieces.append(Piece(self._article(form, start)))
                pieces.append(Piece(form, key))
            else:
                value = self.rng.choice(self.fillers[slot])
                # "a {drink}" before a vowel reads "an IPA"
                if A_BEFORE.search(pieces[-1].text) and value[:1].lower() in "aeiou":
                    pieces[-1].text = pieces[-1].text[:-1] + "n "
                pieces.append(Piece(value))
        pieces.append(Piece(frame.text[position:]))
        pieces = [p for p in pieces if p.text]
        if pieces and pieces[0].dish is not None:
            pieces[0] = Piece(pieces[0].text[:1].upper() + pieces[0].text[1:], pieces[0].dish)
        else:
            capitalize_first(pieces)
        return pieces

    # --- one review

    def _frame(self, options: Sequence[Frame], used: set[str]) -> Frame:
        """A random frame, avoiding ones this review already used."""
        fresh = [f for f in options if f.text not in used]
        frame = self.rng.choice(fresh or options)
        used.add(frame.text)
        return frame

    def _tone(self) -> str:
        """Review tone: mostly praise, then complaints, neutral notes and sarcasm."""
        return self.rng.choices(TONES, (40, 25, 20, 15))[0]

    def _written_form(self, key: str) -> str:
        """How this review writes a dish: usual form, all lowercase or Title Case."""
        form = self.forms[key]
        return self.rng.choices([form, fold_case(form), title_words(form)], (70, 15, 15))[0]

    def compose(self, dishes: Sequence[str], noise: bool = True) -> list[Piece]:
        """A review of 1-6 sentences naming each of `dishes` (normalized names) at least once."""
        rng = self.rng
        tone = self._tone()
        written = {key: self._written_form(key) for key in dishes}
        sentences: list[tuple[str, list[Piece]]] = []
        used: set[str] = set()
        remaining = list(dishes)
        while remaining:
            size = rng.choices((1, 2, 3), (5, 3, 2))[0] if len(remaining) >= 3 else \
                rng.choices((1, 2), (1, 1))[0] if len(remaining) == 2 else 1
            part, remaining = remaining[:size], remaining[size:]
            sentence_tone = tone if rng.random() < 0.75 else self._tone()
            frame = self._frame(self.dish_frames[(sentence_tone, size)] or self.dish_frames[("positive", size)], used)
            sentences.append(("dish", self.render(frame, part, written)))
        if dishes and rng.random() < 0.1:  # the same dish named again later
            frame = self._frame(self.dish_frames[(tone, 1)], used)
            sentences.append(("dish", self.render(frame, [rng.choice(list(dishes))], written)))
        total = rng.choices((1, 2, 3, 4, 5, 6), (14, 24, 24, 18, 12, 8))[0]
        if total == 1 and len(sentences) == 1 and rng.random() < 0.4:  # now and then a very short review
            short = [f for f in self.dish_frames[(tone, len(dishes))] if len(f.text.split()) <= 5]
            if short:
                sentences = [("dish", self.render(rng.choice(short), list(dishes), written))]
        extra = max(total - len(sentences), 0 if sentences else 1)
        categories = ("service", "ambiance", "price", "drinks", "visit", "recommend", "food_general")
        for _ in range(extra):
            category = rng.choices(categories, (20, 14, 14, 12, 16, 10, 14))[0]
            options = self.other_frames[(category, tone)] or self.other_frames[(category, "neutral")] \
                or self.other_frames[(category, "positive")]
            sentences.append((category, self.render(self._frame(options, used), [], {})))
        first = [s for c, s in sentences if c == "visit"]
        last = [s for c, s in sentences if c == "recommend"]
        middle = [s for c, s in sentences if c not in ("visit", "recommend")]
        rng.shuffle(middle)
        pieces: list[Piece] = []
        for sentence in first + middle + last:
            if pieces:
                pieces.append(Piece(" "))
            pieces.extend(sentence)
        pieces = merge_pieces(pieces)
        return self.add_noise(pieces) if noise else pieces

    # --- noise

    def add_noise(self, pieces: list[Piece]) -> list[Piece]:
        """Texting style, interjections, typos and shouting, never inside dish names (except lowercasing)."""
        rng = self.rng
        if rng.random() < 0.15:
            pieces = self._texting(pieces)
        elif rng.random() < 0.12:
            interjection = rng.choice(INTERJECTIONS)
            first = pieces[0]
            if first.dish is None:
                first.text = interjection + fold_case(first.text[:1]) + first.text[1:]
            else:
                pieces.insert(0, Piece(interjection))
        if rng.random() < 0.12:
            self._typos(pieces, rng.choice((1, 1, 2)))
        if rng.random() < 0.07:
            self._shout(pieces)
        if rng.random() < 0.06 and pieces[-1].dish is None and pieces[-1].text.endswith("."):
            pieces[-1].text = pieces[-1].text[:-1] + rng.choice(("!", "!!", "!!!"))
        elif rng.random() < 0.08 and pieces[-1].dish is None and pieces[-1].text.endswith("."):
            pieces[-1].text = pieces[-1].text[:-1]
        return merge_pieces(pieces)

    def _texting(self, pieces: list[Piece]) -> list[Piece]:
        """Lowercase everything, drop most punctuation, use texting abbreviations."""
        rng = self.rng
        drop_punctuation = rng.random() < 0.6
        swaps = [(pattern, short) for pattern, short in TEXTING if rng.random() < 0.6]
        out = []
        for piece in pieces:
            text = fold_case(piece.text)
            if piece.dish is None:
                for pattern, short in swaps:
                    text = pattern.sub(short, text)
                text = text.replace("'", "")
                if drop_punctuation:
                    text = re.sub(r"[.,;:!](?=\s|$)", "", text)
            out.append(Piece(text, piece.dish))
        if rng.random() < 0.3:
            out.append(Piece(rng.choice((" lol", " tbh", " ngl", " fr", " smh", " 10/10", " lmao"))))
        return out

    def _words(self, pieces: list[Piece], pattern: str) -> list[tuple[Piece, re.Match[str]]]:
        """Matches of `pattern` in the non-dish pieces."""
        return [(p, m) for p in pieces if p.dish is None for m in re.finditer(pattern, p.text)]

    def _typos(self, pieces: list[Piece], count: int) -> None:
        """Swap, drop or double a letter in `count` ordinary words."""
        for _ in range(count):
            words = self._words(pieces, r"(?<![\w$'])[A-Za-z]{4,}(?![\w'])")
            if not words:
                return
            piece, match = self.rng.choice(words)
            word, i = match.group(), self.rng.randrange(1, len(match.group()) - 1)
            op = self.rng.choice(("swap", "drop", "double"))
            typo = (word[:i] + word[i + 1] + word[i] + word[i + 2:] if op == "swap" else
                    word[:i] + word[i + 1:] if op == "drop" else word[:i] + word[i] + word[i:])
            piece.text = piece.text[:match.start()] + typo + piece.text[match.end():]

    def _shout(self, pieces: list[Piece]) -> None:
        """Write one emphatic word in capitals."""
        words = [(p, m) for p, m in self._words(pieces, r"\b[A-Za-z]{2,}\b") if m.group().lower() in EMPHASIS]
        if words:
            piece, match = self.rng.choice(words)
            piece.text = piece.text[:match.start()] + match.group().upper() + piece.text[match.end():]


def label_pieces(pieces: Sequence[Piece], known: NameIndex, banned: NameIndex | None = None) -> LabelledRow | None:
    """The labelled row for a composed review, or None when the reader would label it differently: a known dish
    outside the dish mentions, a listed dish also occurring elsewhere, or (train) a banned dish anywhere."""
    text, spans, position = "", [], 0
    for piece in pieces:
        if piece.dish is not None:
            spans.append((position, position + len(piece.text), piece.dish))
        text += piece.text
        position += len(piece.text)
    if text != text.strip() or not text:
        return None
    for start, end, _ in known.find(text):
        if not any(s <= start and end <= e for s, e, _ in spans):
            return None
    if banned is not None and banned.keys(text):
        return None
    listed: dict[str, str] = {}
    for start, end, key in spans:
        listed.setdefault(key, text[start:end])
    for key in listed:
        own = {(s, e) for s, e, k in spans if k == key}
        if set(find_dish(text, key)) != own:
            return None
    return LabelledRow(text, tuple(listed.values()))


class UnseenMix:
    """Draws val dishes so that about `target` of the split's mentions are unseen: it steers towards the target
    from the mentions of the rows accepted so far (record) and fills each slot from the unseen or the seen cycle."""

    def __init__(self, seen: DishCycle, unseen: DishCycle, target: float, rng: random.Random,
                 start: Iterable[LabelledRow] = ()) -> None:
        """`start`: rows already in the split (the handwritten ones)."""
        self.seen, self.unseen, self.target, self.rng = seen, unseen, target, rng
        self.seen_keys = set(seen.keys)  # any other dish counts as unseen: a val-group one, or one no train row names
        self.mentions = self.unseen_mentions = 0
        for row in start:
            self.record(row)

    def record(self, row: LabelledRow) -> None:
        """Count an accepted row's mentions."""
        keys = [normalize_name(d) for d in row.dishes]
        self.mentions += len(keys)
        self.unseen_mentions += sum(k not in self.seen_keys for k in keys)

    def draw(self) -> str:
        """An unseen dish with a probability that rises while the share is below the target."""
        share = self.unseen_mentions / self.mentions if self.mentions else self.target
        p = min(max(self.target + 2 * (self.target - share), 0.0), 1.0)
        return self.unseen.draw() if self.rng.random() < p else self.seen.draw()


class DishCycle:
    """Draws dish names in shuffled rounds so that every name comes up about equally often."""

    def __init__(self, keys: Iterable[str], rng: random.Random) -> None:
        """Cycle over `keys` (sorted first, so the order depends only on the seed)."""
        self.keys, self.rng, self.queue = sorted(set(keys)), rng, []

    def draw(self) -> str:
        """The next dish name."""
        if not self.queue:
            self.queue = list(self.keys)
            self.rng.shuffle(self.queue)
        return self.queue.pop()


def draw_dishes(count: int, draw: Callable[[], str], rng: random.Random) -> list[str]:
    """`count` distinct dish names, none containing another (the reader would label the inner one twice)."""
    chosen: list[str] = []
    for _ in range(count * 10):
        if len(chosen) == count:
            break
        key = draw()
        if all(not contains_name(key, c) and not contains_name(c, key) for c in chosen):
            chosen.append(key)
    return chosen


def generate_rows(composer: ReviewComposer, count: int, draw: Callable[[], str], known: NameIndex, seen: set[str],
                  banned: NameIndex | None = None,
                  on_row: Callable[[LabelledRow], None] | None = None) -> list[LabelledRow]:
    """`count` new labelled rows with 0, 1, 2, 3 or 4 dishes, none naming a `banned` dish; `seen` (case-folded
    reviews) is updated, and `on_row` is called with each accepted row."""
    rng = composer.rng
    rows: list[LabelledRow] = []
    attempts = 0
    while len(rows) < count:
        attempts += 1
        if attempts > count * 50:
            raise RuntimeError(f"only {len(rows)} of {count} rows after {attempts} attempts; the frames or the "
                               "dish pool cannot make valid reviews. Check lexicon.json and frames.json.")
        n_dishes = rng.choices((0, 1, 2, 3, 4), (14, 34, 28, 17, 7))[0]
        row = label_pieces(composer.compose(draw_dishes(n_dishes, draw, rng)), known, banned)
        if row is None or fold_case(row.review) in seen:
            continue
        seen.add(fold_case(row.review))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


# ---------------------------------------------------------------- build


def format_csv(rows: Sequence[LabelledRow]) -> str:
    """CSV text with the header review,dish_name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.review, SEPARATOR.join(row.dishes)])
    return buffer.getvalue()


def count_hand_forms(reviews: Sequence[HandReview]) -> dict[str, Counter[str]]:
    """Normalized dish name -> how often each spelling occurs mid-sentence (a capital at a sentence start says
    nothing about the usual spelling, so those count only for names never seen mid-sentence)."""
    mid: dict[str, Counter[str]] = {}
    start: dict[str, Counter[str]] = {}
    for review in reviews:
        for dish in review.dishes:
            at = review.review.index(dish)
            initial = at == 0 or review.review[:at].rstrip().endswith((".", "!", "?", ":"))
            (start if initial else mid).setdefault(normalize_name(dish), Counter())[dish] += 1
    return {key: mid.get(key) or start[key] for key in sorted(set(mid) | set(start))}


def add_hand_forms(forms: dict[str, str], counts: dict[str, Counter[str]]) -> None:
    """Give each name not yet in `forms` its most common handwritten spelling (ties: the first in sort order)."""
    for key, spellings in sorted(counts.items()):
        forms.setdefault(key, min(spellings, key=lambda form: (-spellings[form], form)))


def build_dataset(out_dir: Path, seed: int = 0, *, config: DataGenConfig = PRESETS["toy"],
                  sources: Path | None = None) -> DataReport:
    """Generate the corpus and the three labelled splits into `out_dir` (same seed and sources = same bytes)."""
    started = time.perf_counter()
    out_dir, sources = Path(out_dir), Path(sources or DEFAULT_SOURCES)
    lexicon = load_lexicon(sources / "lexicon.json")
    frames = load_frames(sources / "frames.json")
    hand = read_handwritten(sources / "handwritten", lexicon)
    train_only = read_handwritten(sources / "handwritten_train", lexicon)
    logger.info("Building toy data: seed %d, %d lexicon dishes, %d sentence frames, %d/%d handwritten reviews usable",
                seed, len(lexicon.dishes), len(frames.frames), len(hand.reviews), hand.lines)

    forms = {normalize_name(name): name for name in lexicon.dishes}
    hand_forms = count_hand_forms(hand.reviews)
    add_hand_forms(forms, hand_forms)
    held = partition_held_out(list(lexicon.dishes), list(hand_forms), seed, config.lexicon_held_out,
                              config.handwritten_held_out)
    # val and test get disjoint held-out groups, so val too can measure dishes never seen in training
    held_index = NameIndex(held)
    # training-only handwritten reviews: never evaluated on, so they must not name a held-out dish
    hand_seen = {fold_case(r.review) for r in hand.reviews}
    extra = [r for r in train_only.reviews if fold_case(r.review) not in hand_seen]
    usable = [r for r in extra if not held_index.keys(r.review)]
    add_hand_forms(forms, count_hand_forms(usable))
    known = NameIndex(forms)
    val_held, test_held = split_held_out(held, seed, config.val_held_out,
                                         together=[held_index.keys(r.review) for r in hand.reviews])
    val_index, test_index = NameIndex(val_held), NameIndex(test_held)
    train_keys = sorted(k for k in forms if k not in held)
    hand_split = split_handwritten(hand.reviews, val_index, test_index, seed, config.min_handwritten_eval)
    hand_split["train"] = hand_split["train"] + usable
    hand_rows = {s: [LabelledRow(r.review, r.dishes) for r in hand_split[s]] for s in SPLITS}

    rng = random.Random(f"datagen:{seed}")
    composer = ReviewComposer(lexicon, frames, forms, rng)
    seen = hand_seen | {fold_case(r.review) for r in usable}
    train_cycle = DishCycle(train_keys, rng)
    test_cycle = DishCycle(test_held, rng)
    targets = {"train": config.train_rows, "val": config.val_rows, "test": config.test_rows}
    n_templated = {s: max(targets[s] - len(hand_split[s]), config.min_templated_rows) for s in SPLITS}
    # train never names a held-out dish, val never one of test's group, and test none of val's
    banned = {"train": held_index, "val": test_index, "test": val_index}
    splits: dict[str, list[LabelledRow]] = {}

    def add_split(split: str, draw: Callable[[], str], on_row: Callable[[LabelledRow], None] | None = None) -> None:
        """Generate the split's templated rows, join its handwritten ones and shuffle."""
        templated = generate_rows(composer, n_templated[split], draw, known, seen, banned=banned[split],
                                  on_row=on_row)
        rows = hand_rows[split] + templated
        rng.shuffle(rows)
        splits[split] = rows

    add_split("train", train_cycle.draw)
    # "seen" dishes of val and test are drawn from those the train rows really name
    trained = DishCycle(sorted({normalize_name(d) for r in splits["train"] for d in r.dishes} & set(train_keys)), rng)
    val_mix = UnseenMix(trained, DishCycle(val_held, rng), config.val_unseen_share, rng, start=hand_rows["val"])
    add_split("val", val_mix.draw, val_mix.record)
    add_split("test", lambda: trained.draw() if rng.random() < config.test_seen_dish_rate else test_cycle.draw())

    # corpus: train reviews plus generated reviews naming every known dish, held-out ones included
    evaluation = {fold_case(r.review) for s in ("val", "test") for r in splits[s]}
    corpus = [r.review for r in splits["train"]]
    corpus_seen = {fold_case(line) for line in corpus}
    all_cycle = DishCycle(forms, rng)
    while len(corpus) < config.corpus_lines:
        n_dishes = rng.choices((0, 1, 2, 3, 4), (25, 33, 24, 12, 6))[0]
        text = "".join(p.text for p in composer.compose(draw_dishes(n_dishes, all_cycle.draw, rng)))
        if fold_case(text) not in evaluation and fold_case(text) not in corpus_seen:
            corpus_seen.add(fold_case(text))
            corpus.append(text)
    rng.shuffle(corpus)

    for split in SPLITS:
        write_text_atomic(out_dir / f"dish_name_{split}.csv", format_csv(splits[split]))
    write_text_atomic(out_dir / CORPUS_FILE, "\n".join(corpus) + "\n")

    report = check_dataset(out_dir, sources=sources)
    report.bars.append(Bar("handwritten reviews in val + test", len(hand_split["val"]) + len(hand_split["test"]),
                           min(config.min_handwritten_eval, len(hand.reviews))))
    report.bars.append(Bar("train rows naming a held-out dish", sum(bool(held_index.keys(r.review))
                                                                    for r in splits["train"]), 0, at_most=True))
    report.bars.append(Bar("val rows naming a test-group held-out dish",
                           sum(bool(test_index.keys(r.review)) for r in splits["val"]), 0, at_most=True))
    report.bars.append(Bar("test rows naming a val-group held-out dish",
                           sum(bool(val_index.keys(r.review)) for r in splits["test"]), 0, at_most=True))
    lexicon_keys = {normalize_name(n) for n in lexicon.dishes}
    report.build = BuildInfo(
        seed=seed, handwritten_lines=hand.lines, handwritten_used=len(hand.reviews),
        handwritten_skipped=hand.problems, handwritten_duplicates=hand.duplicates,
        handwritten_to={s: len(hand_split[s]) for s in SPLITS},
        train_only=(train_only.lines, len(usable), len(extra) - len(usable)),
        held_out_lexicon=(len(held & lexicon_keys), len(lexicon_keys)),
        held_out_handwritten=(len(held & set(hand_forms)), len(hand_forms)),
        held_out_groups={"val": len(val_held), "test": len(test_held)},
        templated_to=n_templated, corpus_generated=len(corpus) - len(splits["train"]),
        seconds=time.perf_counter() - started)
    logger.info("Wrote %s in %.1f s", out_dir, report.build.seconds)
    return report


# ---------------------------------------------------------------- check


def _fail(path: Path, line: int, problem: str, fix: str) -> ValueError:
    """A ValueError naming the file, line, problem and fix."""
    return ValueError(f"{path}:{line}: {problem}. {fix}")


def read_split(path: Path) -> list[tuple[int, LabelledRow]]:
    """(line number, row) for every row of a dish_name_*.csv; raises ValueError on format errors."""
    rebuild = "Fix the row, or rebuild with `python -m albert_dish make-data`."
    if not path.exists():
        raise ValueError(f"{path}: file is missing. Build it with `python -m albert_dish make-data --out "
                         f"{path.parent}`.")
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != COLUMNS:
            raise _fail(path, 1, f"header is {header!r}, expected {','.join(COLUMNS)}", rebuild)
        for record in reader:
            line = reader.line_num
            if len(record) != 2:
                raise _fail(path, line, f"{len(record)} fields, expected 2 (review,dish_name)", rebuild)
            review, cell = record
            if not review.strip() or review != review.strip() or has_line_break(review):
                raise _fail(path, line, f"review {review[:60]!r} is empty, holds a line break or has stray spaces",
                            rebuild)
            dishes = cell.split(SEPARATOR) if cell else []
            spans: dict[str, list[tuple[int, int]]] = {}
            for dish in dishes:
                if not dish or dish != dish.strip():
                    raise _fail(path, line, f"dish_name {cell!r} has an empty name or stray spaces around "
                                            f"'{SEPARATOR}'", rebuild)
                if normalize_name(dish) in spans:
                    raise _fail(path, line, f"dish_name {cell!r} lists {dish!r} twice", "List each dish once.")
                spans[normalize_name(dish)] = find_dish(review, dish)
                if not spans[normalize_name(dish)]:
                    raise _fail(path, line, f"dish {dish!r} does not occur as a case-insensitive whole word in "
                                            f"the review {review[:80]!r}", "Fix the dish name or the review.")
            firsts = [found[0][0] for found in spans.values()]
            if firsts != sorted(firsts):
                raise _fail(path, line, f"dish_name {cell!r} is not in order of appearance",
                            "Reorder the dishes as they first appear in the review.")
            for key, key_spans in spans.items():
                for other, other_spans in spans.items():
                    if other != key and any(a <= s and e <= b for a, b in key_spans for s, e in other_spans):
                        raise _fail(path, line, f"dish {other!r} occurs inside dish {key!r}",
                                    "List only the longer name (the reader would tag both).")
            rows.append((line, LabelledRow(review, tuple(dishes))))
    return rows


def load_dish_cuisines(sources: Path) -> dict[str, str]:
    """Normalized dish name -> cuisine, from lexicon.json and the handwritten files' cuisine tags."""
    cuisines: dict[str, str] = {}
    lexicon_path = sources / "lexicon.json"
    if lexicon_path.exists():
        for cuisine, names in json.loads(lexicon_path.read_text(encoding="utf-8"))["dishes"].items():
            cuisines.update({normalize_name(n): cuisine for n in names})
    for path in sorted((sources / "handwritten").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                for dish in record["dishes"]:
                    cuisines.setdefault(normalize_name(dish), str(record["cuisine"]).lower())
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                continue
    return cuisines


def split_stats(name: str, rows: Sequence[LabelledRow], train_keys: set[str]) -> SplitStats:
    """Counts for one split; `train_keys` are the dishes that train rows list."""
    counts = Counter(min(len(r.dishes), 3) for r in rows)
    mentions = [normalize_name(d) for r in rows for d in r.dishes]

    def rows_with(test) -> int:
        """Rows with at least one dish passing `test(dish, review)`."""
        return sum(any(test(d, r.review) for d in r.dishes) for r in rows)

    joined = sum(any(AND_GAP.fullmatch(r.review[end:start])
                     for a in r.dishes for b in r.dishes if a != b
                     for _, end in find_dish(r.review, a) for start, _ in find_dish(r.review, b) if start > end)
                 for r in rows if len(r.dishes) > 1)
    return SplitStats(
        name=name, rows=len(rows), by_dish_count=tuple(counts[i] for i in range(4)), mentions=len(mentions),
        distinct_dishes=len(set(mentions)), unseen_mentions=sum(k not in train_keys for k in mentions),
        multi_word=rows_with(lambda d, _: " " in d), accented=rows_with(lambda d, _: not d.isascii()),
        hyphenated=rows_with(lambda d, _: "-" in d), lowercase=rows_with(lambda d, _: d == d.lower()),
        repeated=rows_with(lambda d, review: len(find_dish(review, d)) > 1), joined_by_and=joined)


def check_dataset(data_dir: Path, *, sources: Path | None = None, enforce_bars: bool = False) -> DataReport:
    """Verify the files in `data_dir` and count them; raises ValueError (file:line, problem, fix) on bad data,
    and on unmet acceptance bars when `enforce_bars`."""
    data_dir = Path(data_dir)
    sources = Path(sources) if sources else (data_dir / "sources" if (data_dir / "sources").exists()
                                             else DEFAULT_SOURCES)
    splits = {s: read_split(data_dir / f"dish_name_{s}.csv") for s in SPLITS}
    where: dict[str, str] = {}
    for split, rows in splits.items():
        for line, row in rows:
            key = fold_case(row.review)
            if key in where:
                raise ValueError(f"{data_dir / f'dish_name_{split}.csv'}:{line}: review {row.review[:60]!r} "
                                 f"already appears at {where[key]} (case-insensitive). A review must appear once "
                                 "in one split: remove one copy.")
            where[key] = f"dish_name_{split}.csv:{line}"
    corpus_path = data_dir / CORPUS_FILE
    if not corpus_path.exists():
        raise ValueError(f"{corpus_path}: file is missing. Build it with `python -m albert_dish make-data`.")
    corpus = corpus_path.read_text(encoding="utf-8").split("\n")
    if corpus and corpus[-1] == "":
        corpus.pop()
    for number, line in enumerate(corpus, start=1):
        if not line.strip() or line != line.strip() or has_line_break(line):
            raise ValueError(f"{corpus_path}:{number}: empty line, stray spaces or a line-break character such as "
                             "U+2028. Fix the line (one review a line), or rebuild with make-data.")
        origin = where.get(fold_case(line))
        if origin and not origin.startswith("dish_name_train"):
            raise ValueError(f"{corpus_path}:{number}: this line is the evaluation review {origin}; the corpus "
                             "must not contain val/test reviews. Remove it or rebuild with make-data.")

    labelled = {s: [row for _, row in rows] for s, rows in splits.items()}
    train_keys = {normalize_name(d) for r in labelled["train"] for d in r.dishes}
    stats = [split_stats(s, labelled[s], train_keys) for s in SPLITS]
    cuisines = load_dish_cuisines(sources)
    known = NameIndex(set(cuisines) | {normalize_name(d) for rows in labelled.values() for r in rows for d in r.dishes})
    found = {key for line in corpus for key in known.keys(line)}
    words = [len(line.split()) for line in corpus]
    corpus_stats = CorpusStats(
        lines=len(corpus), distinct_dishes=len(found), cuisines=len({cuisines[k] for k in found if k in cuisines}),
        mean_words=sum(words) / max(len(words), 1), short_lines=sum(w <= 6 for w in words),
        long_lines=sum(w >= 60 for w in words), lowercase_lines=sum(line == line.lower() for line in corpus))

    by_name = {s.name: s for s in stats}
    val, test = by_name["val"], by_name["test"]
    # val needs unseen dishes too, or a gazetteer of train names would win model selection; but not mostly
    # unseen, so that it still tracks the seen dishes as test does
    bars = [Bar("train rows", by_name["train"].rows, 3000), Bar("val rows", val.rows, 500),
            Bar("test rows", test.rows, 500),
            Bar("val mentions of dishes unseen in train (share, floor)", round(val.unseen_share, 3), 0.30),
            Bar("val mentions of dishes unseen in train (share, ceiling)", round(val.unseen_share, 3), 0.50,
                at_most=True),
            Bar("test mentions of dishes unseen in train (share)", round(test.unseen_share, 3), 0.5)]
    for s in stats:
        bars.append(Bar(f"{s.name}: fewest rows in a 0/1/2/3+ dish bucket", min(s.by_dish_count), 1))
        bars.append(Bar(f"{s.name}: fewest rows with a multi-word/accented/hyphenated/lowercase/twice/'and' dish",
                        min(s.multi_word, s.accented, s.hyphenated, s.lowercase, s.repeated, s.joined_by_and), 1))
    bars += [Bar("corpus lines", corpus_stats.lines, 20000),
             Bar("corpus distinct dishes", corpus_stats.distinct_dishes, 400),
             Bar("corpus cuisines", corpus_stats.cuisines, 15)]
    report = DataReport(data_dir=data_dir, splits=stats, corpus=corpus_stats, bars=bars)
    if enforce_bars and not report.ok:
        failed = "; ".join(b.format() for b in bars if not b.ok)
        raise ValueError(f"{data_dir}: acceptance bars not met: {failed}. Rebuild with the toy preset "
                         "(`python -m albert_dish make-data`).")
    return report


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """Command line: build (or only check) the toy data; exit code 1 when checks or bars fail."""
    parser = argparse.ArgumentParser(prog="python -m albert_dish make-data", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data_toy"), help="output folder (default: data_toy)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--check-only", action="store_true", help="only check the files already in --out")
    parser.add_argument("--sources", type=Path, default=None,
                        help="folder with lexicon.json, frames.json, handwritten/ (default: data_toy/sources)")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.check_only:
            report = check_dataset(args.out, sources=args.sources)
        else:
            report = build_dataset(args.out, args.seed, sources=args.sources)
    except ValueError as error:
        logger.error("%s", error)
        return 1
    logger.info("%s", report.format())
    if not report.ok:
        logger.error("Some acceptance bars are not met (marked FAIL above).")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
