"""Tests for albert_dish.datagen: the default build, determinism, the checker's errors and the shipped data."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from albert_dish.datagen import (
    DEFAULT_SOURCES,
    PRESETS,
    DataReport,
    HandReview,
    HandRules,
    NameIndex,
    Piece,
    ReviewComposer,
    build_dataset,
    check_dataset,
    check_hand_record,
    find_dish,
    fold_case,
    label_pieces,
    load_frames,
    load_lexicon,
    main,
    normalize_name,
    partition_held_out,
    read_handwritten,
    split_handwritten,
    split_held_out,
)

SHIPPED = Path(__file__).resolve().parent.parent / "data_toy"
FILES = ["dish_name_test.csv", "dish_name_train.csv", "dish_name_val.csv", "restaurant_review.txt"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataReport]:
    """The toy data built with the default seed into a temp folder."""
    out = tmp_path_factory.mktemp("data")
    return out, build_dataset(out)


def write_data(folder: Path, splits: dict[str, list[tuple[str, str]]], corpus: list[str]) -> None:
    """Write a small hand-made data set (rows as (review, dish_name))."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        pd.DataFrame(splits.get(split, []), columns=["review", "dish_name"]).to_csv(
            folder / f"dish_name_{split}.csv", index=False)
    (folder / "restaurant_review.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")


SMALL = {
    "train": [("The pad thai was great.", "pad thai"), ("Service was slow.", ""),
              ("Pad Thai and green curry, both good. More pad thai please.", "Pad Thai;green curry")],
    "val": [("Crème Brûlée was perfect.", "Crème Brûlée")],
    "test": [("My pan-fried dumplings were soggy.", "pan-fried dumplings")],
}
SMALL_CORPUS = ["The pad thai was great.", "Loved the bánh xèo at Pho Real."]


def test_default_build_meets_every_bar(built: tuple[Path, DataReport]) -> None:
    out, report = built
    assert report.ok, report.format()
    assert sorted(p.name for p in out.iterdir()) == FILES  # no temp files left behind
    assert main(["--out", str(out), "--check-only"]) == 0  # checks the files again, bars included
    train = pd.read_csv(out / "dish_name_train.csv", keep_default_na=False, dtype=str)
    assert list(train.columns) == ["review", "dish_name"]
    assert report.build is not None and report.build.handwritten_to["val"] + report.build.handwritten_to["test"] >= 300
    assert report.build.handwritten_skipped == []  # İskender included
    lines, used, dropped = report.build.train_only
    assert used >= 1000 and used + dropped <= lines  # handwritten_train/ reviews reach train (and only train)
    assert report.build.handwritten_to["train"] >= used
    assert "acceptance bars" in report.format()
    val, test = report.splits[1], report.splits[2]
    assert 0.35 <= val.unseen_share <= 0.45 and test.unseen_share >= 0.5
    groups = report.build.held_out_groups
    assert 0.30 <= groups["val"] / (groups["val"] + groups["test"]) <= 0.40


def test_build_is_deterministic(tmp_path: Path) -> None:
    tiny = PRESETS["tiny"]
    for name in ("a", "b"):
        build_dataset(tmp_path / name, seed=3, config=tiny)
    build_dataset(tmp_path / "c", seed=4, config=tiny)
    for file in FILES:
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert any((tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes() for f in FILES)


def test_shipped_data_passes_check() -> None:
    report = check_dataset(SHIPPED, enforce_bars=True)
    assert report.ok, report.format()


def test_shipped_data_is_what_the_generator_makes(built: tuple[Path, DataReport]) -> None:
    out, _ = built
    for file in FILES:
        assert (SHIPPED / file).read_bytes() == (out / file).read_bytes(), (
            f"data_toy/{file} is stale: run `python -m albert_dish make-data` and commit the result")


def test_check_accepts_a_small_valid_set(tmp_path: Path) -> None:
    write_data(tmp_path, SMALL, SMALL_CORPUS)
    report = check_dataset(tmp_path)
    train = report.splits[0]
    assert (train.rows, train.by_dish_count, train.mentions) == (3, (1, 1, 1, 0), 3)
    assert train.repeated == 1 and train.joined_by_and == 1
    assert report.splits[2].unseen_mentions == 1 and report.splits[1].unseen_share == 1.0
    failed = {bar.name for bar in report.bars if not bar.ok}
    assert "val mentions of dishes unseen in train (share, ceiling)" in failed  # all of val is unseen
    assert not report.ok  # tiny, so the size bars fail ...
    with pytest.raises(ValueError, match="acceptance bars not met"):
        check_dataset(tmp_path, enforce_bars=True)  # ... and enforcing them raises


@pytest.mark.parametrize(("split", "row", "message"), [
    ("train", ("The pad thai was great.", "green curry"),
     r"dish_name_train\.csv:3: dish 'green curry' does not occur"),
    ("train", ("I had the pad thaii.", "pad thai"), r"dish_name_train\.csv:3: dish 'pad thai' does not occur"),
    ("val", ("Curry and naan.", "naan;Curry"), r"dish_name_val\.csv:3: .*not in order of appearance"),
    ("val", ("Garlic naan is great.", "Garlic naan;naan"), r"dish_name_val\.csv:3: dish 'naan' occurs inside"),
    ("test", ("Pad thai.", "pad thai;;"), r"dish_name_test\.csv:3: .*empty name"),
    ("test", ("Pad thai, pad thai.", "Pad thai;pad thai"), r"dish_name_test\.csv:3: .*twice"),
    ("test", ("Service was slow.", ""), r"dish_name_test\.csv:3: .*already appears at dish_name_train\.csv:3"),
])
def test_check_rejects_bad_rows_with_file_and_line(tmp_path: Path, split: str, row: tuple[str, str],
                                                   message: str) -> None:
    splits = {name: list(rows) for name, rows in SMALL.items()}
    splits[split] = splits[split][:1] + [row]
    write_data(tmp_path, splits, SMALL_CORPUS)
    with pytest.raises(ValueError, match=message):
        check_dataset(tmp_path)


def test_check_rejects_bad_header_and_leaked_corpus(tmp_path: Path) -> None:
    write_data(tmp_path, SMALL, SMALL_CORPUS + ["My pan-fried dumplings were soggy."])
    with pytest.raises(ValueError, match=r"restaurant_review\.txt:3: .*evaluation review dish_name_test\.csv:2"):
        check_dataset(tmp_path)
    (tmp_path / "dish_name_val.csv").write_text("text,label\nPad thai.,pad thai\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"dish_name_val\.csv:1: header is \['text', 'label'\]"):
        check_dataset(tmp_path)
    assert main(["--out", str(tmp_path), "--check-only"]) == 1


def test_find_dish_is_whole_word_and_case_insensitive() -> None:
    review = "Pad Thai, then more pad thai; no padthai or pad thais. Crème Brûlée and crème brûlée!"
    assert len(find_dish(review, "pad thai")) == 2
    assert len(find_dish(review, "crème brûlée")) == 2
    assert find_dish("Twice-cooked pork", "twice-cooked pork") == [(0, 17)]


def test_partition_holds_out_the_shares_and_containing_names() -> None:
    lexicon = [f"dish{i} special" for i in range(100)] + ["naan", "garlic naan", "ramen", "tonkotsu ramen"]
    hand = [f"hand{i}" for i in range(50)] + ["naan", "keema naan"]
    for seed in range(5):
        held = partition_held_out(lexicon, hand, seed, lexicon_share=0.3, hand_share=0.4)
        assert abs(len(held & {normalize_name(n) for n in hand}) - 0.4 * len(hand)) <= 2
        assert abs(len(held & {normalize_name(n) for n in lexicon}) - 0.3 * len(lexicon)) <= 2
        if "naan" in held:
            assert {"garlic naan", "keema naan"} <= held
        if "ramen" in held:
            assert "tonkotsu ramen" in held
    assert partition_held_out(lexicon, hand, 1, 0.3, 0.4) == partition_held_out(lexicon, hand, 1, 0.3, 0.4)


def test_held_out_groups_are_disjoint_and_keep_related_names_together() -> None:
    held = [f"dish{i}" for i in range(60)] + ["naan", "garlic naan", "keema naan", "pho", "bun cha"]
    for seed in range(5):
        val, test = split_held_out(held, seed, 0.35, together=[["pho", "bun cha"]])
        assert not val & test and val | test == set(held)
        assert abs(len(val) - 0.35 * len(held)) <= 3
        assert {"naan", "garlic naan", "keema naan"} <= val or {"naan", "garlic naan", "keema naan"} <= test
        assert {"pho", "bun cha"} <= val or {"pho", "bun cha"} <= test
    assert split_held_out(held, 1, 0.35) == split_held_out(held, 1, 0.35)


def test_handwritten_reviews_follow_their_held_out_group() -> None:
    reviews = [HandReview(text, (), "x", f"w:{i}") for i, text in enumerate(
        ["Pho here.", "Naan here.", "Pho and naan.", "Pad thai.", "Green curry.", "Fried rice.", "Satay."])]
    split = split_handwritten(reviews, NameIndex(["naan"]), NameIndex(["pho"]), seed=0, min_eval=0)
    texts = {name: {r.review for r in rows} for name, rows in split.items()}
    assert texts["test"] == {"Pho here.", "Pho and naan."}  # a test-group name wins over a val-group one
    assert "Naan here." in texts["val"] and not texts["train"] & {"Naan here.", "Pho here."}
    assert len(texts["train"]) == 2 and len(texts["val"]) == 3  # the other 4 split half and half


def test_dotted_capital_i_keeps_offsets() -> None:
    review = "İskender kebab at Anatolia House, then more iskender kebab."
    assert fold_case(review)[:14] == "iskender kebab" and len(fold_case(review)) == len(review)
    assert normalize_name("İskender Kebab") == "iskender kebab"
    assert [(s, e) for s, e, _ in NameIndex(["iskender kebab"]).find(review)] == find_dish(review, "iskender kebab")
    lexicon = load_lexicon(DEFAULT_SOURCES / "lexicon.json")
    assert check_hand_record({"review": review, "dishes": ["İskender kebab"], "cuisine": "turkish"},
                             HandRules.from_lexicon(lexicon))[1] == ["İskender kebab"]


def test_label_pieces_refuses_reviews_the_reader_would_mislabel() -> None:
    known = NameIndex(["pad thai", "green curry", "tuna roll", "spicy tuna roll"])
    good = [Piece("I had "), Piece("Pad Thai", "pad thai"), Piece(" and "), Piece("green curry", "green curry"),
            Piece(". More "), Piece("pad thai", "pad thai"), Piece("!")]
    row = label_pieces(good, known)
    assert row is not None and row.dishes == ("Pad Thai", "green curry")
    assert label_pieces(good, known, banned=NameIndex(["green curry"])) is None  # held-out dish in a train row
    unlisted = [Piece("The "), Piece("pad thai", "pad thai"), Piece(" beat the green curry.")]
    assert label_pieces(unlisted, known) is None
    outside = [Piece("The "), Piece("pad thai", "pad thai"), Piece(" at Pad Thai Palace.")]
    assert label_pieces(outside, known) is None
    split_name = [Piece("The spicy "), Piece("tuna roll", "tuna roll"), Piece(".")]
    assert label_pieces(split_name, known) is None


def test_composed_reviews_keep_dish_names_intact() -> None:
    lexicon = load_lexicon(DEFAULT_SOURCES / "lexicon.json")
    frames = load_frames(DEFAULT_SOURCES / "frames.json")
    forms = {normalize_name(n): n for n in lexicon.dishes}
    composer = ReviewComposer(lexicon, frames, forms, random.Random(0))
    keys, rng = sorted(forms), random.Random(1)
    for _ in range(300):
        dishes = rng.sample(keys, rng.randrange(4))
        pieces = composer.compose(dishes)
        assert {p.dish for p in pieces if p.dish} == set(dishes)
        for piece in pieces:
            if piece.dish:
                assert piece.text.lower() == forms[piece.dish].lower()
        assert "  " not in "".join(p.text for p in pieces)


def test_frames_and_lexicon_are_large_enough() -> None:
    lexicon = load_lexicon(DEFAULT_SOURCES / "lexicon.json")
    frames = load_frames(DEFAULT_SOURCES / "frames.json")
    assert len(set(lexicon.dishes.values())) >= 16 and len(lexicon.dishes) >= 450
    names = list(lexicon.dishes)
    assert any(not n.isascii() for n in names) and any("-" in n for n in names)
    for tone in ("positive", "negative", "neutral", "sarcastic"):
        assert len([f for f in frames.frames if f.category == "dish" and f.tone == tone]) >= 40
    for category in ("service", "ambiance", "price", "drinks", "visit", "recommend"):
        assert len([f for f in frames.frames if f.category == category]) >= 40


def test_handwritten_lines_are_checked(tmp_path: Path) -> None:
    lexicon = load_lexicon(DEFAULT_SOURCES / "lexicon.json")
    good = {"review": "Green curry first, then pad thai.", "dishes": ["pad thai", "Green curry"], "cuisine": "thai"}
    lines = [json.dumps(good), "{not json", json.dumps(good),
             json.dumps({"review": "I loved the pad thai.", "dishes": ["the pad thai"], "cuisine": "thai"}),
             json.dumps({"review": "Fried rice.", "dishes": ["rice"], "cuisine": "thai"}),
             json.dumps({"review": "Pad thai.", "dishes": ["green curry"], "cuisine": "thai"}),
             '{"review": "torn']
    (tmp_path / "w.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    load = read_handwritten(tmp_path, lexicon)
    assert [r.dishes for r in load.reviews] == [("Green curry", "pad thai")]  # reordered by appearance
    assert load.duplicates == 1 and load.lines == 7
    assert [p.split(":")[1] for p in load.problems] == ["2", "4", "5", "6", "7"]
    with pytest.raises(ValueError, match="not an exact substring"):
        check_hand_record({"review": "Pad thai.", "dishes": ["green curry"]}, HandRules.from_lexicon(lexicon))
