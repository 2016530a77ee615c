"""Reading the tutorial formats, dish spans, BIO alignment and SOP segments."""
import logging

import pytest

from albert_dish.data import (LABEL2ID, Span, bio_labels, find_spans, read_corpus, read_labelled, spans_from_labels,
                              split_segments)

B, I, O = LABEL2ID["B-DISH"], LABEL2ID["I-DISH"], LABEL2ID["O"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_find_spans_multiword_repeated_case_and_punctuation():
    review = "The Pad Thai was great, the pad thai again!! Green curry (green curry?) too."
    spans, missing = find_spans(review, ["pad thai", "green curry"])
    assert [(s.text, s.start, s.end) for s in spans] == [
        ("Pad Thai", 4, 12), ("pad thai", 28, 36), ("Green curry", 45, 56), ("green curry", 58, 69)]
    assert missing == []


def test_find_spans_prefers_longer_dish_and_whole_words():
    spans, missing = find_spans("chicken tikka masala, no chicken; also phone", ["chicken", "chicken tikka masala", "pho"])
    assert [s.text for s in spans] == ["chicken tikka masala", "chicken"]
    assert missing == ["pho"]  # "phone" is not "pho"


def test_read_labelled_merges_tutorial_rows_keeps_negatives_and_reports_missing(tmp_path, caplog):
    path = write(tmp_path / "d.csv", "review,dish_name\n"
                 '"Pho and banh mi, yum",pho\n'
                 '"Pho and banh mi, yum",banh mi\n'
                 "Nice staff and cheap beer,\n"
                 "Great tacos,burrito\n"
                 '"Two: khao soi; larb",khao soi;larb\n')
    with caplog.at_level(logging.WARNING):
        data = read_labelled(path)
    assert [r.review for r in data.reviews] == ["Pho and banh mi, yum", "Nice staff and cheap beer", "Great tacos",
                                                 "Two: khao soi; larb"]
    assert [[s.text for s in r.spans] for r in data.reviews] == [["Pho", "banh mi"], [], [], ["khao soi", "larb"]]
    assert data.missing == ["d.csv:5: burrito"]
    assert "line 5" in caplog.text and "burrito" in caplog.text


def test_read_labelled_bad_header_names_file_and_fix(tmp_path):
    path = write(tmp_path / "bad.csv", "text,dishes\nhello,world\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 1: expected columns 'review,dish_name'"):
        read_labelled(path)


def test_read_corpus_reports_non_utf8_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"good review\nanother\nbad \xff byte\n")
    with pytest.raises(ValueError, match=r"line 3: not UTF-8"):
        read_corpus(path)
    with pytest.raises(FileNotFoundError, match="one review per line"):
        read_corpus(tmp_path / "missing.txt")


def test_bio_labels_from_offsets_handles_subwords_and_specials():
    # "[CLS] the crè|me bru|lée , ok [SEP]" as offsets; the dish is "crème brûlée" at 4..16
    offsets = [(0, 0), (0, 3), (4, 7), (7, 9), (10, 13), (13, 16), (16, 17), (18, 20), (0, 0)]
    labels = bio_labels(offsets, [Span("crème brûlée", 4, 16)])
    assert labels == [-100, O, B, I, I, I, O, O, -100]


def test_bio_labels_two_adjacent_dishes_each_start_with_b():
    offsets = [(0, 3), (4, 8), (9, 12), (13, 17)]  # "pho, banh mi" style: two spans back to back
    labels = bio_labels(offsets, [Span("x", 0, 8), Span("y", 9, 17)])
    assert labels == [B, I, B, I]


def test_bio_round_trip_with_real_tokenizer(tokenizer):
    text = "Loved the Chicken Tikka Masala and the garlic naan, but the crème brûlée was runny."
    spans, _ = find_spans(text, ["chicken tikka masala", "garlic naan", "crème brûlée"])
    enc = tokenizer(text, return_offsets_mapping=True)
    labels = bio_labels(enc["offset_mapping"], spans)
    decoded = spans_from_labels(text, enc["offset_mapping"], labels)
    assert [(s.text, s.start, s.end) for s in decoded] == [(s.text, s.start, s.end) for s in spans]


def test_split_segments_prefers_sentence_boundary():
    assert split_segments("Great pho. Slow service though. Will return!") == (
        "Great pho. Slow service though.", "Will return!")
    assert split_segments("pho was good") == ("pho was", "good")
    assert split_segments("pho") is None
