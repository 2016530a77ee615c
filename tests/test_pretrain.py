"""Masking statistics, SOP pairs, and a pretraining run that stops and resumes where it would have ended."""
import json

import torch

from albert_dish.engine import STOP_FILE
from albert_dish.pretrain import PRESETS, build_sop_example, cooccurrence_embeddings, mask_tokens, run_pretrain


def test_mask_tokens_rate_specials_and_replacement_mix():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 100), generator=generator)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    special[:, 90:] = True  # padding
    masked, labels = mask_tokens(ids, special, mask_id=4, vocab_size=1000, probability=0.15, max_ngram=3,
                                 generator=generator)
    chosen = labels != -100
    assert not chosen[special].any(), "special tokens and padding are never masked"
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum().item() / (~special).sum().item()
    assert 0.14 <= rate <= 0.16
    became_mask = (masked[chosen] == 4).float().mean().item()
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert 0.77 <= became_mask <= 0.83 and 0.07 <= kept <= 0.13
    # n-gram masking: runs of 2 and 3 consecutive masked tokens occur, longer runs are rarer.
    runs = [len(r) for row in chosen.tolist() for r in "".join("x" if c else " " for c in row).split()]
    assert max(runs) >= 3 and sum(r >= 2 for r in runs) > 0.3 * len(runs)


def test_mask_tokens_redrawn_each_call():
    ids = torch.randint(5, 100, (4, 50))
    special = torch.zeros_like(ids, dtype=torch.bool)
    first = mask_tokens(ids, special, 4, 100)[1]
    second = mask_tokens(ids, special, 4, 100)[1]
    assert not torch.equal(first, second)


def test_cooccurrence_embeddings_put_words_used_alike_together():
    """Tokens 5 and 6 ("ramen", "pho") fill the same slot between the same neighbours; 7 ("waiter") another."""
    generator = torch.Generator().manual_seed(0)
    sentences = []
    for _ in range(300):
        filler = torch.randint(20, 40, (4,), generator=generator).tolist()
        dish = [5, 6][len(sentences) % 4 // 2]
        sentences += [[10, 11, dish, 12, *filler], [13, 7, 14, 15, *filler[::-1]]]
    torch.manual_seed(0)
    vectors = cooccurrence_embeddings(sentences, vocab_size=64, dim=8, window=2)
    assert vectors.shape == (64, 8) and abs(vectors.std().item() - 1) < 1e-4
    unit = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-9)
    assert unit[5] @ unit[6] > 0.9 > unit[5] @ unit[7] + 0.5
    assert (unit @ unit[5]).topk(2).indices.tolist() == [5, 6]
    assert vectors[40:].abs().sum() == 0, "tokens that never occur get no vector"


def test_build_sop_example_order_types_and_truncation():
    a, b = [10, 11, 12], [20, 21]
    kept = build_sop_example(a, b, swap=False, max_length=16, cls_id=2, sep_id=3)
    assert kept == dict(input_ids=[2, 10, 11, 12, 3, 20, 21, 3], token_type_ids=[0, 0, 0, 0, 0, 1, 1, 1],
                        sentence_order_label=0)
    swapped = build_sop_example(a, b, swap=True, max_length=16, cls_id=2, sep_id=3)
    assert swapped["input_ids"] == [2, 20, 21, 3, 10, 11, 12, 3] and swapped["sentence_order_label"] == 1
    long = build_sop_example(list(range(100, 130)), [7, 8], swap=False, max_length=16, cls_id=2, sep_id=3)
    assert len(long["input_ids"]) == 16 and long["input_ids"][-3:] == [7, 8, 3]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "pretrain" / "metrics.jsonl").read_text().splitlines()]


def test_stop_then_resume_ends_where_an_uninterrupted_run_would(small_data, tmp_path):
    cfg = PRESETS["test"]
    corpus = small_data / "restaurant_review.txt"
    full = run_pretrain(corpus, tmp_path / "full", cfg)
    assert full is not None and (full / "model.safetensors").exists()

    run = tmp_path / "interrupted"

    def stop_at_ten(step, total):
        if step == 10:
            (run / "pretrain" / STOP_FILE).touch()

    assert run_pretrain(corpus, run, cfg, on_step=stop_at_ten) is None, "a stopped run exports nothing"
    status = json.loads((run / "pretrain" / "status.json").read_text())
    assert status["state"] == "stopped" and status["step"] == 10
    assert (run / "pretrain" / "checkpoints" / "checkpoint-10" / "trainer_state.json").exists()
    resumed = run_pretrain(corpus, run, cfg, resume=True)
    assert resumed is not None

    a = [m for m in read_metrics(tmp_path / "full") if "loss" in m]
    b = [m for m in read_metrics(run) if "loss" in m]
    assert [m["step"] for m in a] == [m["step"] for m in b] == list(range(2, 21, 2))
    for x, y in zip(a, b):  # same data order, masks and optimizer state after the resume
        assert abs(x["loss"] - y["loss"]) < 1e-3, (x, y)


def test_lamb_adapts_matrices_layerwise_and_steps_biases_like_adam():
    from albert_dish.engine import lamb_optimizer

    layer = torch.nn.Linear(8, 4)
    torch.nn.init.zeros_(layer.bias)
    cls, kwargs = lamb_optimizer(PRESETS["test"])
    optimizer = cls([{"params": [layer.weight], "weight_decay": 0.01}, {"params": [layer.bias], "weight_decay": 0.0}],
                    **kwargs)
    assert [(g["params"][0].ndim, g["adam"]) for g in optimizer.param_groups] == [(2, False), (1, True)]
    moved = []
    for _ in range(5):
        optimizer.zero_grad()
        layer(torch.ones(2, 8)).sum().backward()
        optimizer.step()
        moved.append(layer.bias.abs().mean().item())
    # a zero-initialised bias keeps moving a full step each time (Adam); with LAMB's trust ratio |w|/|step| every
    # step after the first would be ~lr times smaller, so five steps would move it barely more than one
    assert moved[-1] > 3 * moved[0] > 0


def test_lamb_gives_the_scaled_learning_rate_to_the_parameters_named_in_lr_scales():
    from albert_dish.engine import lamb_optimizer

    embedding, layer = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4)
    cls, kwargs = lamb_optimizer(PRESETS["test"], lr_scales={embedding.weight: 0.1})
    optimizer = cls([{"params": [embedding.weight, layer.weight, layer.bias], "weight_decay": 0.01}], **kwargs)
    rates = {tuple(p.shape): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rates == {(10, 4): 0.1 * kwargs["lr"], (4, 4): kwargs["lr"], (4,): kwargs["lr"]}
