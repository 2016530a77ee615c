"""albert-dish: pretrain a compact ALBERT on restaurant reviews and tag dish names.

`from albert_dish import DishTagger`; stages: data, tokenizer, pretrain, finetune, predict, evaluate, compare.
"""
from albert_dish.data import Span

__all__ = ["DishTagger", "Span"]


def __getattr__(name: str):
    # Importing torch and transformers costs seconds; do it only when the tagger is used.
    if name == "DishTagger":
        from albert_dish.predict import DishTagger

        return DishTagger
    raise AttributeError(name)
