"""The corpus lexicon: counting phrases over corpus lines, adding and dropping spans, saving and loading."""
import pytest

from albert_dish.data import Span
from albert_dish.lexicon import FILENAME, CorpusLexicon, build_lexicon, load_lexicon, phrase_of


def spans_of(text, *names):
    return [Span(name, text.index(name), text.index(name) + len(name)) for name in names]


def test_phrases_tagged_in_most_of_their_lines_are_added_and_rarely_tagged_ones_dropped():
    lines = [f"the khao soi was good {i}" for i in range(3)] + ["khao soi again"]
    lines += [f"the house special {i} was fine" for i in range(10)] + ["one samosa"]
    predictions = [spans_of(line, "khao soi") for line in lines[:3]] + [[]]
    predictions += [spans_of(lines[4], "house special")] + [[] for _ in range(9)] + [spans_of(lines[-1], "samosa")]
    lexicon = build_lexicon(lines, predictions, min_tagged=2, min_share=0.5, drop_min_lines=10, drop_max_share=0.2)
    assert lexicon.add == {("khao", "soi"): 0.75}  # "samosa" was tagged in one line only
    assert lexicon.drop == {("house", "special")}


def test_apply_adds_whole_word_matches_replaces_spans_inside_them_and_drops_phrases():
    lexicon = CorpusLexicon(add={("khao", "soi"): 0.9, ("garlic", "naan"): 0.8, ("pho",): 0.7},
                            drop=frozenset({("house", "special")}))
    text = "Khao Soi, garlic naan and the house special; no khao soiy, pho."
    model = spans_of(text, "naan", "house special") + [Span("pho", 59, 62, 0.95)]
    found = lexicon.apply(text, model)
    # "naan" (score 1.0) inside "garlic naan" keeps its score; the model's 0.95 for "pho" beats the share 0.7
    assert [(s.text, s.score) for s in found] == [("Khao Soi", 0.9), ("garlic naan", 1.0), ("pho", 0.95)]
    assert all(text[s.start:s.end] == s.text for s in found)


def test_apply_never_crosses_a_model_span():
    lexicon = CorpusLexicon(add={("naan", "bread"): 0.9})
    text = "garlic naan bread"
    model = spans_of(text, "garlic naan")
    assert lexicon.apply(text, model) == model


def test_lexicon_round_trips_through_its_file_and_a_broken_file_names_the_fix(tmp_path):
    lexicon = CorpusLexicon(add={phrase_of("Sapin-sapin"): 0.6}, drop=frozenset({("dessert",)}), info={"lines": 3})
    (tmp_path / FILENAME).write_text(lexicon.to_json(), encoding="utf-8")
    assert load_lexicon(tmp_path) == lexicon
    assert load_lexicon(tmp_path / "missing") is None
    (tmp_path / FILENAME).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="delete it to predict with the model alone"):
        load_lexicon(tmp_path)
