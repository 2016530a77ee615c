"""Tests for the BERT-vs-ALBERT comparison: paper parameter counts, breakdowns, latency rows, training cost, CLI."""
from __future__ import annotations

import json
import math

import pytest

from albert_dish.compare import (ALLREDUCE_FORMULA, KINDS, PAPER_TOLERANCE, CompareReport, build_latency_figure,
                                 build_memory_figure, build_param_figure, count_parameter_table, count_preset_table,
                                 describe_machine, estimate_forward_gflop, explain, load_same_task_result, main,
                                 latency_frame, measure_latency, measure_training_cost, params_frame, same_task_frame,
                                 without_sharing_by_formula, _percentile)
from albert_dish.model import ModelShape, build_model, count_parameters

TINY = ModelShape(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64)
# Rows whose difference from the paper exceeds the tolerance; each must carry its explanation in the note.
EXPECTED_EXCEPTIONS = {"ALBERT-base", "ALBERT-xlarge", "ALBERT-xxlarge", "ALBERT-base without factorization"}


@pytest.fixture(scope="module")
def param_rows():
    return count_parameter_table()


@pytest.fixture(scope="module")
def latency_rows():
    progress = []
    rows = measure_latency({"tiny": TINY}, batch_sizes=(1, 2), seq_lens=(8, 16), repeats=2, warmup=1,
                           on_progress=lambda fraction, message: progress.append((fraction, message)))
    return rows, progress


def by_name(rows):
    return {r.name: r for r in rows}


def test_parameter_counts_match_paper_or_explain_why(param_rows):
    rows = by_name(param_rows)
    assert {"BERT-base", "BERT-large", "ALBERT-base", "ALBERT-large", "ALBERT-xlarge", "ALBERT-xxlarge"} <= set(rows)
    exceptions = set()
    for row in param_rows:
        assert row.paper_millions is not None and "1909.11942" in row.paper_source
        assert row.rel_diff == pytest.approx(row.total / (row.paper_millions * 1e6) - 1)
        assert f"({row.rel_diff:+.1%})" in row.note  # the note states the measured difference
        if abs(row.rel_diff) <= PAPER_TOLERANCE:
            assert row.agrees
        else:
            exceptions.add(row.name)
            assert row.agrees is False
            assert "UNEXPLAINED" not in row.note
            assert len(row.note.split(": ", 1)[1]) > 40  # a real explanation after the numbers
    assert exceptions == EXPECTED_EXCEPTIONS
    # ALBERT-base's explanation is rounding: 11.7M prints as 12M.
    assert round(rows["ALBERT-base"].total / 1e6) == rows["ALBERT-base"].paper_millions
    assert "rounds" in rows["ALBERT-base"].note
    # Without the projection transformers keeps at E = H, the unfactorized row is within tolerance.
    unfactorized = rows["ALBERT-base without factorization"]
    assert abs((unfactorized.total - unfactorized.projection) / 31e6 - 1) <= PAPER_TOLERANCE


def test_parts_sum_to_total(param_rows):
    for row in param_rows + count_preset_table({"tiny": TINY}):
        assert row.embeddings + row.projection + row.encoder + row.pooler + row.other == row.total, row.name
        assert min(row.embeddings, row.encoder, row.pooler) > 0 and row.projection >= 0


def test_sharing_and_factorization_save_parameters(param_rows):
    rows = by_name(param_rows)
    base, unshared, unfactorized = (rows["ALBERT-base"], rows["ALBERT-base without sharing"],
                                    rows["ALBERT-base without factorization"])
    assert unshared.total > base.total and unfactorized.total > base.total
    assert base.shared_layers and not unshared.shared_layers
    assert without_sharing_by_formula(base) == unshared.total  # embeddings + L x one layer + pooler
    assert unshared.encoder == base.encoder * base.shape["num_hidden_layers"]
    # Factorization: V x E + E x H instead of V x H.
    v, e, h = base.shape["vocab_size"], base.shape["embedding_size"], base.shape["hidden_size"]
    assert unfactorized.embeddings - base.embeddings > v * (h - e)
    assert rows["BERT-base"].projection == 0 and base.projection == e * h + h


def test_preset_table_pairs_albert_with_same_shape_bert():
    rows = count_preset_table({"tiny": TINY, "other": ModelShape(200, 16, 64, 3, 4, 128, 64)})
    assert [r.kind for r in rows] == ["albert", "bert", "albert", "bert"]
    for albert, bert in zip(rows[::2], rows[1::2]):
        assert albert.shape == bert.shape and albert.total < bert.total and albert.paper_millions is None
        assert count_parameters(build_model("bert", TINY)) == rows[1].total


def test_latency_rows_are_well_formed(latency_rows):
    rows, progress = latency_rows
    assert len(rows) == 2 * 2 * 2
    settings = {(r.batch_size, r.seq_len) for r in rows}
    assert settings == {(1, 8), (1, 16), (2, 8), (2, 16)}
    for setting in settings:
        assert sorted(r.kind for r in rows if (r.batch_size, r.seq_len) == setting) == sorted(KINDS)
    for r in rows:
        for value in (r.p50_ms, r.p95_ms, r.min_ms, r.tokens_per_s, r.weights_mb, r.disk_mb, r.est_gflop):
            assert math.isfinite(value) and value > 0, r
        assert math.isfinite(r.peak_memory_mb) and r.peak_memory_mb >= 0
        assert r.min_ms <= r.p50_ms <= r.p95_ms
        assert r.repeats == 2 and r.device == "cpu" and r.dtype == "fp32"
        assert r.est_gflop == estimate_forward_gflop(TINY, r.batch_size, r.seq_len)
    fractions = [f for f, _ in progress]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_latency_skips_settings_over_the_flop_limit():
    skipped = []
    rows = measure_latency({"tiny": TINY}, batch_sizes=(1,), seq_lens=(8,), repeats=1, max_gflop=1e-9,
                           skipped=skipped)
    assert rows == [] and len(skipped) == 1 and "GFLOP" in skipped[0]


def test_training_cost_bytes_follow_parameters():
    rows = measure_training_cost(TINY, batch_size=2, seq_len=8, bandwidth_gbps=10.0, workers=4, repeats=1,
                                 warmup=0, preset="tiny")
    assert [r.kind for r in rows] == list(KINDS)
    for r in rows:
        assert r.params == count_parameters(build_model(r.kind, TINY, "pretraining"))
        assert r.grad_bytes_fp32 == r.params * 4 and r.grad_bytes_bf16 == r.params * 2
        assert r.allreduce_bytes_per_worker_fp32 == pytest.approx(2 * 3 / 4 * r.params * 4)
        assert r.allreduce_ms_fp32 == pytest.approx(r.allreduce_bytes_per_worker_fp32 * 8 / 10e9 * 1e3)
        assert r.allreduce_ms_bf16 == pytest.approx(r.allreduce_ms_fp32 / 2)
        assert r.step_p50_ms > 0 and r.step_min_ms <= r.step_p50_ms and 0 < r.optimizer_p50_ms < r.step_p50_ms
    assert rows[1].params < rows[0].params
    assert "2*(n-1)/n" in ALLREDUCE_FORMULA
    with pytest.raises(ValueError, match="workers"):
        measure_training_cost(TINY, 2, 8, workers=1)


def test_percentile_interpolates():
    assert _percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert _percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert _percentile([5.0], 95) == 5.0


def test_load_same_task_result(tmp_path):
    assert load_same_task_result(tmp_path / "missing.json") is None
    (tmp_path / "ok.json").write_text(json.dumps({"bert_f1": 0.8, "albert_f1": 0.78}))
    assert load_same_task_result(tmp_path / "ok.json") == {"bert_f1": 0.8, "albert_f1": 0.78}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_same_task_result(tmp_path / "bad.json")


def test_figures_and_explanation_build(param_rows, latency_rows):
    rows, _ = latency_rows
    training = measure_training_cost(TINY, 1, 8, repeats=1, warmup=0, preset="tiny")
    report = CompareReport(machine=describe_machine(), param_rows=param_rows,
                           preset_rows=count_preset_table({"tiny": TINY}), latency_rows=rows, training_rows=training,
                           same_task={"bert_f1": 0.81, "albert_f1": 0.79})
    param_fig = build_param_figure(param_rows + report.preset_rows)
    assert param_fig.layout.yaxis.type == "log"
    assert any(trace.name == "paper" for trace in param_fig.data)
    latency_fig = build_latency_figure(rows)
    assert {trace.name for trace in latency_fig.data} == {"BERT", "ALBERT"}
    assert all(trace.error_y.array is not None for trace in latency_fig.data)
    build_memory_figure(rows)
    text = explain(report)
    albert_base = by_name(param_rows)["ALBERT-base"]
    assert f"{albert_base.total / 1e6:.1f}M" in text and "ms" in text and "albert_f1" in text


def test_main_prints_json(capsys, tmp_path):
    assert main(["--json", "--no-latency", "--same-task", str(tmp_path / "none.json")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in data["param_rows"]} >= {"BERT-base", "ALBERT-xxlarge"}
    assert data["preset_rows"] and data["latency_rows"] == [] and data["same_task"] is None
    assert data["machine"]["threads"] >= 1


def test_app_tables_build(param_rows, latency_rows):
    rows, _ = latency_rows
    report = CompareReport(machine=describe_machine(), param_rows=param_rows,
                           preset_rows=count_preset_table({"tiny": TINY}), latency_rows=rows)
    assert report.params == param_rows + report.preset_rows and report.latency == rows
    assert len(params_frame(report)) == len(report.params) and len(latency_frame(report)) == len(rows)
    assert "no result" in same_task_frame(report).iloc[0, 0]
    report.same_task = {"bert": {"f1": 0.8, "params": 5}, "albert": {"f1": 0.78, "params": 2}}
    assert list(same_task_frame(report)["model"]) == ["bert", "albert"]
    report.same_task = {"winner": "bert"}
    assert same_task_frame(report).to_dict("records") == [{"key": "winner", "value": "bert"}]


def test_the_same_task_result_reads_as_a_sentence():
    from albert_dish.compare import describe_same_task

    result = {"command": "x", "note": "one run each",
              "albert": {"parameters": 727_427, "val_f1": 0.9297, "val_unseen_f1": 0.8695, "test_f1": 0.9229},
              "bert": {"parameters": 1_636_099, "val_f1": 0.9264, "val_unseen_f1": 0.8666, "test_f1": 0.9179}}
    text = describe_same_task(result)
    assert "ALBERT (0.73M parameters) scores validation F1 0.930 (0.870 on dishes" in text, text
    assert "BERT (1.64M, 2.2x as many) 0.926" in text and "0.923 vs 0.918" in text and "Note: one run each." in text
    assert describe_same_task({"winner": "bert"}) == "winner: bert."
