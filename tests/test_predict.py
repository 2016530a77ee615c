"""Decoding word probabilities into dishes: the BIO-constrained best path and the joining of split names."""
import torch

from albert_dish.data import LABEL2ID
from albert_dish.predict import best_bio_path, join_adjacent

B, I, O = LABEL2ID["B-DISH"], LABEL2ID["I-DISH"], LABEL2ID["O"]


def probs(*rows: tuple[float, float, float]) -> torch.Tensor:
    """[words, 3] probabilities given as (O, B, I) rows, reordered to the label ids."""
    table = torch.zeros(len(rows), 3)
    for word, (p_o, p_b, p_i) in enumerate(rows):
        table[word, O], table[word, B], table[word, I] = p_o, p_b, p_i
    return table


def test_best_path_never_puts_i_after_o_and_keeps_a_name_whole():
    # "Gaeng hung lay": each word's own best label would be B, O, I (two fragments)
    table = probs((0.1, 0.8, 0.1), (0.5, 0.1, 0.4), (0.2, 0.1, 0.7))
    assert [int(x) for x in table.argmax(-1)] == [B, O, I]
    assert best_bio_path(table) == [B, I, I]


def test_best_path_drops_a_weak_lone_i_and_keeps_clear_cases():
    # a first word cannot be I; a weak I after a confident O becomes O
    assert best_bio_path(probs((0.25, 0.35, 0.4), (0.9, 0.05, 0.05))) == [B, O]
    assert best_bio_path(probs((0.9, 0.05, 0.05), (0.55, 0.0, 0.45))) == [O, O]
    assert best_bio_path(probs((0.1, 0.8, 0.1), (0.9, 0.05, 0.05), (0.1, 0.8, 0.1))) == [B, O, B]
    assert best_bio_path(torch.zeros(0, 3)) == []


def test_join_adjacent_continues_a_dish_across_a_space_or_a_hyphen():
    text = "the dan dan mian and Sapin-sapin"
    offsets = [(0, 3), (4, 7), (8, 11), (12, 16), (17, 20), (21, 26), (26, 27), (27, 32)]
    words = list(range(len(offsets)))
    labels = join_adjacent(text, offsets, words, [O, B, B, I, O, B, O, B])
    assert labels == [O, B, I, I, O, B, I, I]
    # a comma between two dishes keeps them apart
    text = "pho, banh mi"
    offsets = [(0, 3), (3, 4), (5, 9), (10, 12)]
    assert join_adjacent(text, offsets, [0, 1, 2, 3], [B, O, B, I]) == [B, O, B, I]
