"""Shared fixtures: offline mode, a small slice of data_toy, and a tokenizer trained on it."""
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_toy"


def slice_lines(path: Path, n: int, seed: int = 0) -> list[str]:
    """A fixed random sample of `n` data lines of a file (header kept for CSVs)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header, body = (lines[:1], lines[1:]) if path.suffix == ".csv" else ([], lines)
    return header + random.Random(seed).sample(body, min(n, len(body)))


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """200 corpus lines, 60 train rows and 20 validation rows of data_toy, in a temp folder."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("data")
    (folder / "restaurant_review.txt").write_text("\n".join(slice_lines(DATA / "restaurant_review.txt", 200)) + "\n")
    for name, n in (("dish_name_train.csv", 60), ("dish_name_val.csv", 20)):
        frame = pd.read_csv(DATA / name, keep_default_na=False).sample(n=n, random_state=0)
        frame.to_csv(folder / name, index=False)
    return folder


@pytest.fixture(scope="session")
def tokenizer(small_data):
    """A SentencePiece ALBERT tokenizer trained on the small corpus."""
    from albert_dish.data import read_corpus
    from albert_dish.tokenizer import train_tokenizer

    return train_tokenizer(read_corpus(small_data / "restaurant_review.txt"), 400)
