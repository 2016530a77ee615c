"""Window encoding and seqeval metrics of the fine-tuning stage."""
import numpy as np

from albert_dish.data import LabelledReview, find_spans
from albert_dish.finetune import compute_tagging_metrics, encode_reviews

O, B, I, X = 0, 1, 2, -100


def onehot(labels):
    return np.eye(3)[np.array(labels).clip(0)]


def test_metrics_exact_spans_and_token_accuracy():
    gold = np.array([[X, B, I, O, B, X], [X, O, O, B, X, X]])
    guess = np.array([[O, B, I, O, O, O], [O, O, B, B, O, O]])  # 2 of 3 gold found, 1 false alarm
    metrics = compute_tagging_metrics(onehot(guess), gold)
    assert metrics["precision"] == metrics["recall"] == metrics["f1"] == round(2 / 3, 4)
    assert metrics["token_accuracy"] == round(5 / 7, 4)


def test_long_review_is_windowed_not_truncated(tokenizer):
    review = " ".join(["the service was slow and the room was loud"] * 40) + " but the khao soi was perfect"
    spans, _ = find_spans(review, ["khao soi"])
    windows = encode_reviews(tokenizer, [LabelledReview(review, ["khao soi"], spans, 2)], max_length=64, stride=16)
    assert len(windows) > 3
    assert all(len(w["input_ids"]) <= 64 for w in windows)
    assert B in windows[-1]["labels"], "the dish at the very end is labelled in the last window"
    assert sum(w["labels"].count(B) for w in windows) == 1
