"""Train a SentencePiece unigram model on the corpus and wrap it as a transformers fast ALBERT tokenizer.

Input: corpus lines. Output: an `AlbertTokenizer` (saved by `save_pretrained` beside the model).
"""
from __future__ import annotations

import io
import logging

log = logging.getLogger(__name__)
SPECIAL_TOKENS = dict(pad_token="<pad>", unk_token="<unk>", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def normalize_for_training(line: str) -> str:
    """Prepare text exactly as the ALBERT tokenizer will see it (NFKD, accents stripped, lowercase)."""
    from tokenizers import normalizers

    global _NORMALIZER
    if _NORMALIZER is None:
        _NORMALIZER = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()])
    return _NORMALIZER.normalize_str(line)


_NORMALIZER = None


def train_tokenizer(lines: list[str], vocab_size: int):
    """Train a unigram SentencePiece model (ALBERT's id layout: pad 0, unk 1, [CLS] 2, [SEP] 3, [MASK] 4)."""
    import sentencepiece as spm
    from transformers import AlbertTokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([normalize_for_training(line) for line in lines]),
        model_writer=model,
        vocab_size=vocab_size,
        hard_vocab_limit=False,  # a small corpus may support fewer pieces; take what it has rather than fail
        model_type="unigram",
        pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        character_coverage=0.9995,
        split_digits=True,
        shuffle_input_sentence=False,  # keep training deterministic
        seed_sentencepiece_size=200_000,
        num_threads=2,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    # AlbertTokenizer(vocab_file=...) silently ignores the file in transformers 5; build from pieces and scores.
    tokenizer = AlbertTokenizer(vocab=vocab, **SPECIAL_TOKENS)
    if len(tokenizer) != processor.get_piece_size():
        raise RuntimeError(f"Tokenizer has {len(tokenizer)} tokens but SentencePiece has {processor.get_piece_size()}.")
    if len(tokenizer) < vocab_size:
        log.warning("The corpus supports only %d pieces (asked for %d); using %d.", len(tokenizer), vocab_size,
                    len(tokenizer))
    log.info("Trained a %d-piece SentencePiece unigram tokenizer on %d lines", len(tokenizer), len(lines))
    return tokenizer
