"""Dish-name swapping for fine-tuning: the tagger must learn where dishes sit in a review, not the names themselves.

Input: labelled training reviews. Output: the same reviews with some dish mentions replaced, either by another
training dish or by a made-up name built from a real one (one or more of its words replaced by a word from a
character model of the training dish words). Nothing here sees validation or test data.
"""
from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from itertools import accumulate

from albert_dish.data import LabelledReview, Span

WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
# Words that keep a name's shape ("X with Y", "X de Y"); a made-up name keeps them.
GLUE = frozenset("a al alla and au aux con da de del della des di du e en el in la le of on with y".split())


class NameMaker:
    """Made-up dish names: a real training name with some of its words swapped for invented ones.

    The invented words come from an order-`order` character model of the words in the training dish names, so they
    look like dish words ("kalbisotto", "panchero") without being any name the tagger will be scored on. Words in
    `avoid` (say, every word of the training reviews) are never invented, so "lemon" or "service" never become dishes.
    """

    def __init__(self, names: list[str], avoid: set[str] = frozenset(), order: int = 3):
        self.names = sorted({n for n in names if WORD.search(n)})
        self.avoid = {w.lower() for w in avoid}
        if not self.names:
            raise ValueError("NameMaker needs at least one dish name with letters.")
        self.order = order
        next_chars: dict[str, Counter[str]] = defaultdict(Counter)
        # sorted: the order of a set of strings changes with each process's hash seed, and with it the invented words
        for word in sorted({w.lower() for name in self.names for w in WORD.findall(name) if w.lower() not in GLUE}):
            padded = "^" * order + word + "$"
            for i in range(order, len(padded)):
                next_chars[padded[i - order:i]][padded[i]] += 1
        # per state: the next characters and their cumulative counts, so each draw skips rebuilding them
        self.next_chars = {state: (list(counts), list(accumulate(counts.values())))
                           for state, counts in next_chars.items()}

    def word(self, rng: random.Random, max_len: int = 14) -> str:
        """One invented word of 3 to `max_len` letters, never one of `avoid`."""
        for _ in range(50):
            state, out = "^" * self.order, []
            while len(out) < max_len:
                chars, cumulative = self.next_chars[state]
                char = rng.choices(chars, cum_weights=cumulative)[0]
                if char == "$":
                    break
                out.append(char)
                state = state[1:] + char
            if len(out) >= 3 and "".join(out) not in self.avoid:
                return "".join(out)
        word = "".join(out).ljust(3, "a")
        while word in self.avoid:  # a tiny name list can keep regenerating known words
            word += rng.choice("aeiou")
        return word

    def name(self, rng: random.Random) -> str:
        """A made-up name: a real training name's shape, at least one content word invented."""
        base = rng.choice(self.names)
        words = list(WORD.finditer(base))
        content = [m for m in words if m.group().lower() not in GLUE] or words
        chosen = set(rng.sample(range(len(content)), k=rng.randint(1, len(content))))
        out, last = [], 0
        for i, match in enumerate(content):
            if i in chosen:
                out += [base[last:match.start()], self.word(rng)]
                last = match.end()
        return "".join(out) + base[last:]


def match_case(name: str, like: str) -> str:
    """`name` written in the case style of `like` (all lower, ALL CAPS, Title Case or as is)."""
    if like.islower():
        return name.lower()
    if like.isupper() and len(like) > 1:
        return name.upper()
    if like.istitle():
        return " ".join(w[:1].upper() + w[1:] for w in name.split(" "))
    return name[:1].upper() + name[1:] if like[:1].isupper() else name


def swap_dishes(review: LabelledReview, rng: random.Random, names: list[str], maker: NameMaker | None,
                rate: float, invented_share: float = 0.5) -> LabelledReview:
    """A copy of `review` in which each dish, with probability `rate`, is renamed everywhere it occurs.

    A renamed dish takes another training name, or (share `invented_share`, when `maker` is given) a made-up one,
    written in the case of the mention it replaces. Spans are rebuilt so labels stay exact.
    """
    if not review.spans or rate <= 0:
        return review
    renames: dict[str, str] = {}
    for key in dict.fromkeys(s.text.lower() for s in review.spans):
        if rng.random() < rate:
            invent = maker is not None and rng.random() < invented_share
            renames[key] = maker.name(rng) if invent else rng.choice(names)
    if not renames:
        return review
    return replace_ranges(review, [(s.start, s.end, match_case(renames[s.text.lower()], s.text))
                                   for s in review.spans if s.text.lower() in renames])


def misspell(word: str, rng: random.Random) -> str:
    """`word` with one typo: two neighbouring letters swapped, a letter doubled or a letter dropped (never the first)."""
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1:]


def misspell_words(review: LabelledReview, rng: random.Random, rate: float) -> LabelledReview:
    """A copy of `review` in which each word of 4+ letters outside the dishes is misspelled with probability `rate`.

    Real reviews have typos ("Absoolutely", "etxra"), and a word the tagger has never seen looks like a made-up dish
    name; this teaches it that an odd spelling alone makes no dish. Spans are shifted so labels stay exact.
    """
    if rate <= 0:
        return review
    edits = [(m.start(), m.end(), misspell(m.group(), rng)) for m in WORD.finditer(review.review)
             if len(m.group()) >= 4 and not any(s.start < m.end() and m.start() < s.end for s in review.spans)
             and rng.random() < rate]
    return replace_ranges(review, edits) if edits else review


def replace_ranges(review: LabelledReview, edits: list[tuple[int, int, str]]) -> LabelledReview:
    """A copy of `review` with text ranges replaced (sorted, non-overlapping `(start, end, new text)`).

    A dish span that is itself an edited range takes the new text; every other span must lie outside the edits and is
    shifted, so labels stay exact.
    """
    pieces, last = [], 0
    for start, end, new in edits:
        pieces += [review.review[last:start], new]
        last = end
    pieces.append(review.review[last:])
    renamed = {(start, end): new for start, end, new in edits}
    spans = []
    for span in review.spans:
        shift = sum(len(new) - (end - start) for start, end, new in edits if end <= span.start)
        text = renamed.get((span.start, span.end), span.text)
        spans.append(Span(text, span.start + shift, span.start + shift + len(text)))
    return LabelledReview("".join(pieces), list(dict.fromkeys(s.text for s in spans)), spans, review.line)
