"""End to end on a small slice: CLI train (tokenizer, pretraining, fine-tuning), predict, evaluate."""
import csv
import json
import os
import subprocess
import sys

from conftest import ROOT


def run_cli(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "albert_dish", *map(str, args)], cwd=cwd, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_train_predict_evaluate(small_data, tmp_path):
    out = tmp_path / "run"
    summary = json.loads(run_cli("train", "--preset", "test", "--out", out, "--corpus",
                                 small_data / "restaurant_review.txt", "--train", small_data / "dish_name_train.csv",
                                 "--val", small_data / "dish_name_val.csv", "--json", cwd=tmp_path))
    assert summary["state"] == "finished"
    tagger = out / "dish-tagger"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "results.json",
                 "corpus_lexicon.json"):
        assert (tagger / name).exists(), name
    assert 0.0 <= summary["with_lexicon"]["f1"] <= 1.0
    lexicon_status = json.loads((out / "lexicon" / "status.json").read_text())
    assert lexicon_status["state"] == "finished" and lexicon_status["step"] == lexicon_status["max_steps"] > 0
    assert 0.0 <= summary["f1"] <= 1.0 and 0.0 <= summary["token_accuracy"] <= 1.0
    # self-training: the first-round tagger tagged the corpus (the test preset keeps every review it finds a dish in)
    pseudo = out / "selftrain" / "round-1" / "pseudo_labels.csv"
    assert pseudo.read_text(encoding="utf-8").startswith("review,dish_name")
    rounds = [r["round"] for r in summary["rounds"]]
    assert rounds[0] == 0 and summary["round"] in rounds
    metrics = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "mlm_loss", "mlm_accuracy", "sop_accuracy", "learning_rate", "tokens_per_s",
            "elapsed_s"} <= set(metrics[0])
    assert any("eval_mlm_accuracy" in m for m in metrics)

    text = "The khao soi was great but the spring rolls were soggy."
    result = json.loads(run_cli("predict", "--model", tagger, "--json", text, cwd=tmp_path))
    for dish in result["dishes"]:
        assert text[dish["start"]:dish["end"]] == dish["text"] and 0.0 <= dish["score"] <= 1.0

    reviews = tmp_path / "reviews.csv"
    reviews.write_text("id,review\n1,The pad thai was nice\n2,\"Slow service, cold fries\"\n", encoding="utf-8")
    run_cli("predict", "--model", tagger, "--input", reviews, "--output", tmp_path / "tagged.csv", cwd=tmp_path)
    with open(tmp_path / "tagged.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["1", "2"] and all("predicted_dish_name" in r for r in rows)

    unquoted = tmp_path / "unquoted.csv"  # a one-column CSV whose reviews contain bare commas
    unquoted.write_text("review\nThe pad thai was sweet, the curry fine\n", encoding="utf-8")
    run_cli("predict", "--model", tagger, "--input", unquoted, "--output", tmp_path / "u.csv", cwd=tmp_path)
    with open(tmp_path / "u.csv", encoding="utf-8") as handle:
        assert next(csv.DictReader(handle))["review"] == "The pad thai was sweet, the curry fine"
    broken = tmp_path / "broken.csv"
    broken.write_text("id,review\n1,a,b\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "albert_dish", "predict", "--model", str(tagger), "--input",
                             str(broken)], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "broken.csv, line 2: more fields than the header" in result.stderr

    reports = json.loads(run_cli("evaluate", "--model", tagger, "--data", small_data / "dish_name_val.csv",
                                 "--train", small_data / "dish_name_train.csv", "--errors", tmp_path / "errors.csv",
                                 "--json", cwd=tmp_path))
    assert [r["tagger"] for r in reports] == ["model", "no lexicon", "gazetteer"]
    assert (tmp_path / "errors.csv").exists()

    (tagger / "corpus_lexicon.json").unlink()
    out = run_cli("lexicon", "--model", tagger, "--corpus", small_data / "restaurant_review.txt", "--val",
                  small_data / "dish_name_val.csv", cwd=tmp_path)
    assert "validation F1" in out and (tagger / "corpus_lexicon.json").exists()
