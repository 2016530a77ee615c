"""Model shapes and the BERT/ALBERT registry: one `build_model(kind, shape, head)` serves every stage."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["bert", "albert"]
Head = Literal["base", "pretraining", "token-classification"]
LABELS = ("O", "B-DISH", "I-DISH")


@dataclass(frozen=True)
class ModelShape:
    """Transformer shape; ALBERT factorizes the embedding (`embedding_size`) and shares its layers, BERT does neither."""

    vocab_size: int = 30000
    embedding_size: int = 128
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads}); pick e.g. {self.num_attention_heads * max(1, self.hidden_size // self.num_attention_heads)}."
            )
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}.")


def build_config(kind: Kind, shape: ModelShape, **extra):
    """Return the transformers config for `kind` with `shape` (ALBERT: no dropout as in v2; tanh GELU, fused)."""
    from transformers import AlbertConfig, BertConfig

    common = dict(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=0,
        **extra,
    )
    if kind == "albert":
        return AlbertConfig(embedding_size=shape.embedding_size, hidden_act="gelu_pytorch_tanh",
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **common)
    if kind == "bert":
        return BertConfig(**common)
    raise ValueError(f"Unknown model kind {kind!r}; use 'bert' or 'albert'.")


def build_model(kind: Kind, shape: ModelShape, head: Head = "base", **extra):
    """Build a randomly initialised BERT or ALBERT with the given head (use `torch.device('meta')` to only count)."""
    from transformers import (AlbertForPreTraining, AlbertForTokenClassification, AlbertModel, BertForPreTraining,
                              BertForTokenClassification, BertModel)

    registry = {
        ("albert", "base"): AlbertModel,
        ("albert", "pretraining"): AlbertForPreTraining,
        ("albert", "token-classification"): AlbertForTokenClassification,
        ("bert", "base"): BertModel,
        ("bert", "pretraining"): BertForPreTraining,
        ("bert", "token-classification"): BertForTokenClassification,
    }
    if head == "token-classification":
        extra = {**label_kwargs(), **extra}
    config = build_config(kind, shape, **extra)
    return registry[(kind, head)](config)


def label_kwargs() -> dict:
    """`num_labels`, `id2label` and `label2id` for the dish tagger (transformers wants all three together)."""
    return dict(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)})


def pretraining_heads(model):
    """Return `(encoder, mlm_head, order_head)` of a *ForPreTraining model, so losses can skip unmasked positions."""
    if hasattr(model, "albert"):
        return model.albert, model.predictions, model.sop_classifier
    return model.bert, model.cls.predictions, model.cls.seq_relationship


def count_parameters(model) -> int:
    """Number of parameters, counting tied weights once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def use_bf16() -> bool:
    """Whether training runs under bf16 autocast: on CUDA, and on CPUs with native bf16 (AMX or AVX512-BF16).

    On such a CPU the tiny preset's fine-tuning step took 0.076 s instead of 0.101 s (batch 32 x 64 tokens, 2 threads);
    a CPU without them would emulate bf16 and run slower, so it keeps fp32.
    """
    import torch

    if torch.cuda.is_available():
        return True
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def training_attention() -> dict:
    """`attn_implementation` for training: plain matmul-softmax attention under bf16 on a CPU, PyTorch's fused SDPA
    elsewhere.

    On this project's CPU (AVX512-BF16, 2 threads) the bf16 flash-attention kernel took 47% of a tiny fine-tuning step
    (mostly its backward); the eager path cut a step from 54 to 35 ms (batch 32 x 70 tokens) and a pretraining-sized
    step from 184 to 118 ms (64 x 128). In fp32 the two were level (70 vs 72 ms), so only bf16 CPU training switches.
    """
    import torch

    eager = use_bf16() and not torch.cuda.is_available()
    return dict(attn_implementation="eager" if eager else "sdpa")


def describe_device() -> str:
    """The device training will use, in words ("NVIDIA H100 80GB HBM3 (CUDA, bf16)" or "CPU (2 threads, bf16)")."""
    import torch

    precision = ", bf16" if use_bf16() else ""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA{precision})"
    return f"CPU ({torch.get_num_threads()} threads{precision})"
