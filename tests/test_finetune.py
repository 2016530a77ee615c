"""Window encoding and seqeval metrics of the fine-tuning stage."""
import random
from dataclasses import replace

import numpy as np

from albert_dish.augment import GLUE, NameMaker, match_case, misspell_words, swap_dishes
from albert_dish.data import LabelledReview, find_spans
from albert_dish.finetune import ValidationScorer, compute_tagging_metrics, encode_reviews

O, B, I, X = 0, 1, 2, -100


def onehot(labels):
    return np.eye(3)[np.array(labels).clip(0)]


def test_metrics_exact_spans_and_token_accuracy():
    gold = np.array([[X, B, I, O, B, X], [X, O, O, B, X, X]])
    guess = np.array([[O, B, I, O, O, O], [O, O, B, B, O, O]])  # 2 of 3 gold found, 1 false alarm
    metrics = compute_tagging_metrics(onehot(guess), gold)
    assert metrics["token_precision"] == metrics["token_recall"] == metrics["token_f1"] == round(2 / 3, 4)
    assert metrics["token_accuracy"] == round(5 / 7, 4)


def test_validation_scorer_decodes_windows_like_the_tagger(tokenizer):
    """The epoch-picking F1 is the decoded, word-level span F1 of `evaluate`: gold logits score 1.0, and a tagger
    that finds one of two dishes and one false alarm scores P = R = 1/2."""
    from types import SimpleNamespace

    reviews = [labelled("The khao soi was great and so was the larb gai.", ["khao soi", "larb gai"]),
               labelled("Service was slow tonight.", [])]
    scorer = ValidationScorer(tokenizer, reviews, max_length=64, stride=16)
    windows = encode_reviews(tokenizer, reviews, max_length=64, stride=16)
    width = max(len(w["labels"]) for w in windows)
    gold = np.array([w["labels"] + [X] * (width - len(w["labels"])) for w in windows])
    perfect = scorer(SimpleNamespace(predictions=onehot(gold) * 10, label_ids=gold))
    assert perfect["f1"] == perfect["token_f1"] == 1.0
    guess = gold.copy()

    def tokens_of(review, word):
        start = reviews[review].review.index(word)
        return [i for i, (s, e) in enumerate(scorer.offsets[review]) if s < start + len(word) and e > start]

    guess[0][tokens_of(0, "larb gai")] = O  # missed
    slow = tokens_of(1, "slow")
    guess[1][slow] = [B] + [I] * (len(slow) - 1)  # a false alarm
    half = scorer(SimpleNamespace(predictions=onehot(guess) * 10, label_ids=gold))
    assert half["precision"] == half["recall"] == 0.5


def test_long_review_is_windowed_not_truncated(tokenizer):
    review = " ".join(["the service was slow and the room was loud"] * 40) + " but the khao soi was perfect"
    spans, _ = find_spans(review, ["khao soi"])
    windows = encode_reviews(tokenizer, [LabelledReview(review, ["khao soi"], spans, 2)], max_length=64, stride=16)
    assert len(windows) > 3
    assert all(len(w["input_ids"]) <= 64 for w in windows)
    assert B in windows[-1]["labels"], "the dish at the very end is labelled in the last window"
    with_dish = [i for i, w in enumerate(windows) if B in w["labels"]]
    assert all(windows[i]["labels"].count(B) == 1 for i in with_dish)
    assert with_dish == list(range(len(windows) - len(with_dish), len(windows))) and len(with_dish) <= 2, \
        "only the last window(s), which overlap by the stride, hold the dish"


def labelled(review, dishes):
    spans, missing = find_spans(review, dishes)
    assert not missing
    return LabelledReview(review, dishes, spans, 2)


def test_swapped_dishes_are_renamed_everywhere_and_stay_exact():
    review = labelled("The Pad Thai was great, the green curry too. More pad thai next time!", ["Pad Thai", "green curry"])
    maker = NameMaker(["khao soi", "massaman curry", "larb gai"], avoid={"the", "was", "great"})
    for seed in range(30):
        swapped = swap_dishes(review, random.Random(seed), ["khao soi", "larb gai"], maker, rate=1.0)
        assert len(swapped.spans) == 3
        assert all(swapped.review[s.start:s.end] == s.text for s in swapped.spans)
        first, _, again = swapped.spans
        assert first.text.lower() == again.text.lower() != "pad thai", "one dish gets one new name"
        assert first.text.istitle() and again.text.islower(), "each mention keeps its case style"
        assert swapped.review.endswith(" next time!") and ", the " in swapped.review
    assert swap_dishes(review, random.Random(0), ["khao soi"], maker, rate=0.0) is review


def test_invented_names_keep_the_shape_and_avoid_known_words():
    real = ["tarta de santiago", "pan con tomate", "tortilla", "patatas bravas", "gazpacho", "croquetas de jamón",
            "pulpo a la gallega", "crema catalana", "fabada asturiana", "churros con chocolate"]
    known_words = {w for name in real for w in name.split()}
    maker = NameMaker(real, avoid=known_words)
    rng = random.Random(0)
    names = [maker.name(rng) for _ in range(200)]
    assert len(set(names)) > 100
    for name in names:
        assert set(name.split()) - known_words, f"{name!r} has no invented word"
    assert any(" de " in n for n in names) and any(" con " in n for n in names), "glue words are kept"


def test_invented_names_do_not_depend_on_the_process_hash_seed():
    import os
    import subprocess
    import sys

    from conftest import ROOT

    code = ("import random; from albert_dish.augment import NameMaker; "
            "m = NameMaker(['tarta de santiago', 'pan con tomate', 'gazpacho', 'pulpo a la gallega']); "
            "r = random.Random(0); print([m.name(r) for _ in range(20)])")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2", "3")}
    assert len(outputs) == 1, outputs


def test_typos_leave_dishes_whole_and_spans_exact():
    review = labelled("Honestly the Pad Thai was wonderful, the green curry absolutely superb; pad thai again soon.",
                      ["Pad Thai", "green curry"])
    changed = 0
    for seed in range(30):
        typed = misspell_words(review, random.Random(seed), rate=0.5)
        assert [s.text for s in typed.spans] == [s.text for s in review.spans]
        assert all(typed.review[s.start:s.end] == s.text for s in typed.spans)
        assert typed.review.count(" the ") == 2 and typed.review.endswith("."), "short words and punctuation stay"
        changed += typed.review != review.review
        assert abs(len(typed.review) - len(review.review)) <= 6
    assert changed >= 25
    assert misspell_words(review, random.Random(0), rate=0.0) is review


def test_match_case():
    assert match_case("khao soi", "PAD THAI") == "KHAO SOI"
    assert match_case("khao soi", "Pad Thai") == "Khao Soi"
    assert match_case("Khao Soi", "pad thai") == "khao soi"
    assert match_case("khao soi", "Pad thai") == "Khao soi"


class ListTagger:
    """Stands in for DishTagger in the selection test: fixed spans per text."""

    def __init__(self, spans: dict[str, list]):
        self.spans = spans

    def tag_batch(self, texts):
        return [self.spans.get(text, []) for text in texts]


def test_pseudo_labels_keep_only_reviews_whose_every_dish_is_sure():
    from albert_dish.data import Span
    from albert_dish.finetune import PRESETS, select_pseudo_labels

    tagger = ListTagger({
        "the pho was great": [Span("pho", 4, 7, 0.95)],
        "pho and banh mi": [Span("pho", 0, 3, 0.99), Span("banh mi", 8, 15, 0.6)],  # one unsure dish: dropped
        "slow service": [],  # no dish: dropped
        "loved the po-boy": [Span("po-", 10, 13, 0.9)],  # not a whole word of the review: dropped
        "pho, pho, pho": [Span("pho", 0, 3, 0.9), Span("pho", 5, 8, 0.9), Span("pho", 10, 13, 0.9)],
    })
    cfg = replace(PRESETS["tiny"], self_training_rows=10, self_training_min_score=0.85)
    chosen = select_pseudo_labels(tagger, list(tagger.spans), cfg, chunk=2)
    assert sorted((row.review, row.dishes) for row in chosen) == [("pho, pho, pho", ("pho",)),
                                                                  ("the pho was great", ("pho",))]
    assert len(select_pseudo_labels(tagger, list(tagger.spans), replace(cfg, self_training_rows=1))) == 1
