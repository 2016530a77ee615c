"""Background training jobs as the app runs them: flags, one job at a time, stop with a checkpoint, resume."""
import json
import time

import pytest

from albert_dish import jobs


def test_settings_to_flags_keeps_only_the_stage_of_the_command():
    settings = {"preset": "test", "corpus": "c.txt", "pretrain.max_steps": 5, "finetune.epochs": 2}
    assert jobs.settings_to_flags("train", settings) == [
        "--preset", "test", "--corpus", "c.txt", "--pretrain.max-steps", "5", "--finetune.epochs", "2"]
    assert jobs.settings_to_flags("pretrain", settings) == ["--preset", "test", "--corpus", "c.txt", "--max-steps", "5"]


def test_preset_values_follow_the_presets():
    from albert_dish.pretrain import PRESETS

    values = dict(zip(jobs.SETTING_FIELDS, jobs.preset_values("tiny")))
    assert values["pretrain.max_steps"] == PRESETS["tiny"].max_steps


def test_form_values_show_the_jobs_settings_and_fill_gaps_from_its_preset():
    job = {"settings": {"preset": "test", "pretrain.max_steps": 3000, "finetune.learning_rate": 0.02}}
    values = jobs.form_values(job)
    expected = dict(zip(jobs.SETTING_FIELDS, jobs.preset_values("test")), **job["settings"])
    assert values == ["test", *(expected[key] for key in jobs.SETTING_FIELDS)]
    assert values[1] == 3000


def wait_until(condition, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_one_job_at_a_time_stop_then_resume(small_data, tmp_path):
    runs = tmp_path / "runs"
    settings = {"preset": "test", "corpus": str(small_data / "restaurant_review.txt"), "max_steps": 400,
                "save_steps": 1000}
    job = jobs.start_job("pretrain", settings, runs)
    with pytest.raises(jobs.JobError, match="already running"):
        jobs.start_job("pretrain", settings, runs)
    assert wait_until(lambda: jobs.read_run(job["run"], runs).pretrain), jobs.read_run(job["run"], runs).log_tail
    jobs.stop_job(runs)
    assert wait_until(lambda: not jobs.read_run(job["run"], runs).running)
    view = jobs.read_run(job["run"], runs)
    assert view.status["state"] == "stopped", view.log_tail
    stopped_at = view.status["step"]
    assert 0 < stopped_at < 400
    assert (runs / job["run"] / "pretrain" / "checkpoints" / f"checkpoint-{stopped_at}").is_dir()
    assert "stopped" in jobs.describe_status(view)

    jobs.resume_job(job["run"], runs)
    assert wait_until(lambda: not jobs.read_run(job["run"], runs).running, 300)
    view = jobs.read_run(job["run"], runs)
    assert view.status["state"] == "finished" and view.status["step"] == 400, view.log_tail
    steps = [m["step"] for m in view.pretrain if "loss" in m]
    assert steps == sorted(set(steps)), "the resumed curve continues without repeated steps"


def test_self_training_rounds_continue_the_fine_tuning_curve(tmp_path):
    run = tmp_path / "r"
    rows = {"finetune": [1, 2], "selftrain/round-1": [1, 2, 3], "selftrain/round-2": [1]}
    for folder, steps in rows.items():
        (run / folder).mkdir(parents=True)
        (run / folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in steps))
        (run / folder / "status.json").write_text(json.dumps({"stage": folder.split("/")[0], "state": "finished"}))
    view = jobs.read_run("r", tmp_path)
    assert [r["step"] for r in view.finetune] == [1, 2, 3, 4, 5, 6]
    assert [r.get("round") for r in view.finetune][-1] == "self-training 2"
    assert view.status["stage"] == "selftrain" and jobs.describe_status(view).startswith("Self-training: finished")


def test_the_corpus_lexicon_stage_shows_its_own_progress(tmp_path):
    import subprocess

    from albert_dish.engine import ProgressStatus

    run = tmp_path / "r"
    (run / "finetune").mkdir(parents=True)
    (run / "finetune" / "status.json").write_text(json.dumps({"stage": "finetune", "state": "finished"}))
    progress = ProgressStatus(run / "lexicon", "lexicon", unit="line", every_s=0)
    progress(600, 2400)
    view = jobs.read_run("r", tmp_path)
    view.running = True
    line = jobs.describe_status(view)
    assert line.startswith("Corpus lexicon") and "line 600/2400 (25%), about" in line and "left" in line, line

    ended = subprocess.Popen(["true"])
    ended.wait()  # a pid that no longer runs: the job died while building the lexicon
    (run / "job.json").write_text(json.dumps({"run": "r", "command": "train", "pid": ended.pid}))
    assert jobs.read_run("r", tmp_path).status["state"] == "crashed"
    (run / "lexicon" / "STOP").touch()  # what the Stop button leaves
    assert jobs.read_run("r", tmp_path).status["state"] == "stopped"
    progress.finish()
    status = jobs.read_run("r", tmp_path).status
    assert (status["stage"], status["state"], status["step"], status["max_steps"]) == ("lexicon", "finished", 600, 2400)
