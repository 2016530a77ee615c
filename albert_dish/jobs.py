"""Training jobs run as background processes owned by the app: one at a time, surviving page reloads.

Input: a stage, data files and settings. Output: `runs/<name>/` (the CLI's run folder) with `job.json` and
`train.log`; `read_run` turns a run folder into what the Train tab shows.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from albert_dish.files import read_jsonl, write_json_atomic

Command = Literal["pretrain", "finetune", "train"]
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_toy"
RUNS = Path(os.environ.get("ALBERT_DISH_RUNS", "runs"))
SHIPPED_TAGGER = ROOT / "checkpoints" / "dish-tagger"
STAGES = {"pretrain": "Pretraining", "finetune": "Fine-tuning", "selftrain": "Self-training",
          "lexicon": "Corpus lexicon (the finished tagger tags the corpus)"}  # in run order
SHIPPED_PRETRAINED = ROOT / "checkpoints" / "albert-pretrained"
_processes: dict[int, subprocess.Popen] = {}


class JobError(RuntimeError):
    """A job could not be started or stopped; the message says why and what to do."""


@dataclass
class RunView:
    """What the Train tab shows for one run: metrics per stage, status, and the end of the log."""

    name: str
    pretrain: list[dict[str, Any]] = field(default_factory=list)
    finetune: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    running: bool = False
    log_tail: str = ""
    job: dict[str, Any] = field(default_factory=dict)


def is_alive(pid: int) -> bool:
    """True while process `pid` runs (a finished child is reaped, so it does not linger as a zombie)."""
    process = _processes.get(pid)
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def list_runs(runs: Path = RUNS) -> list[str]:
    """Run names, newest first."""
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if (p / "job.json").exists() or (p / "pretrain").is_dir() or (p / "finetune").is_dir()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def active_job(runs: Path = RUNS) -> dict[str, Any] | None:
    """The job.json of the run whose process is still alive, if any."""
    for name in list_runs(runs):
        job = json.loads((runs / name / "job.json").read_text()) if (runs / name / "job.json").exists() else {}
        if job.get("pid") and is_alive(job["pid"]):
            return job
    return None


def start_job(command: Command, settings: dict[str, Any], runs: Path = RUNS, run_name: str | None = None,
              resume: bool = False) -> dict[str, Any]:
    """Start `python -m albert_dish COMMAND` in the background; refuses while another job runs."""
    running = active_job(runs)
    if running:
        raise JobError(f"A {running['command']} job is already running in run '{running['run']}'. "
                       "Stop it first, or wait for it to finish.")
    name = run_name or time.strftime("run-%Y%m%d-%H%M%S")
    run_dir = runs / name
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "albert_dish", command, "--out", str(run_dir), *settings_to_flags(command, settings)]
    if resume:
        argv.append("--resume")
    log_file = open(run_dir / "train.log", "a", encoding="utf-8")
    log_file.write(f"\n$ {' '.join(argv[1:])}\n")
    log_file.flush()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5", "PYTHONPATH": path}
    process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env=env)
    log_file.close()
    _processes[process.pid] = process
    job = dict(run=name, command=command, settings=settings, pid=process.pid, started=time.time())
    write_json_atomic(run_dir / "job.json", job)
    return job


SETTING_FIELDS = ("pretrain.max_steps", "finetune.epochs", "pretrain.batch_size", "finetune.batch_size",
                  "pretrain.learning_rate", "finetune.learning_rate", "pretrain.max_length")


def preset_values(preset: str) -> list[Any]:
    """The preset's values of SETTING_FIELDS, in that order (to fill the Train tab's fields)."""
    from albert_dish import finetune, pretrain

    configs = {"pretrain": pretrain.PRESETS[preset], "finetune": finetune.PRESETS[preset]}
    return [getattr(configs[key.split(".")[0]], key.split(".")[1]) for key in SETTING_FIELDS]


def form_values(job: dict[str, Any]) -> list[Any]:
    """The job's preset and SETTING_FIELDS values, to refill the Train tab after a page reload; missing ones come
    from the preset."""
    settings = job.get("settings", {})
    preset = settings.get("preset", "tiny")
    defaults = preset_values(preset)
    return [preset, *(settings.get(key, value) for key, value in zip(SETTING_FIELDS, defaults))]


def settings_to_flags(command: Command, settings: dict[str, Any]) -> list[str]:
    """CLI flags for the settings (keys like `preset`, `corpus`, `pretrain.max_steps`, `finetune.epochs`)."""
    flags = []
    for key, value in settings.items():
        if value is None or value == "":
            continue
        stage, _, name = key.rpartition(".")
        if stage and command != "train":
            if stage != command:
                continue  # e.g. finetune.epochs has no meaning for a pretrain-only job
            key = name
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


def resume_job(run_name: str, runs: Path = RUNS) -> dict[str, Any]:
    """Restart the run's last command with --resume (continues from its newest complete checkpoint)."""
    job_file = runs / run_name / "job.json"
    if not job_file.exists():
        raise JobError(f"Run '{run_name}' was not started from the app, so there is nothing to resume here; "
                       "use `python -m albert_dish train --resume --out runs/NAME`.")
    job = json.loads(job_file.read_text())
    return start_job(job["command"], job["settings"], runs, run_name, resume=True)


def stage_folders(run_dir: Path) -> list[Path]:
    """A run's stage folders in run order: pretrain, finetune, selftrain/round-1, round-2, ..., then lexicon."""
    rounds = sorted((run_dir / "selftrain").glob("round-*"), key=lambda p: int(p.name.rpartition("-")[2]))
    return [run_dir / "pretrain", run_dir / "finetune", *rounds, run_dir / "lexicon"]


def stop_job(runs: Path = RUNS) -> dict[str, Any]:
    """Ask the running job to stop after its current step with a checkpoint (SIGTERM; it exits by itself)."""
    job = active_job(runs)
    if job is None:
        raise JobError("No training job is running.")
    for folder in stage_folders(runs / job["run"]):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "STOP").touch()
    os.kill(job["pid"], signal.SIGTERM)
    return job


def read_run(run_name: str, runs: Path = RUNS, log_lines: int = 15) -> RunView:
    """Metrics, status and log tail of one run folder."""
    run_dir = runs / run_name
    view = RunView(run_name)
    view.pretrain = read_jsonl(run_dir / "pretrain" / "metrics.jsonl")
    view.finetune = read_jsonl(run_dir / "finetune" / "metrics.jsonl")
    # self-training rounds continue the fine-tuning curves, their steps counted on from the round before
    folders = stage_folders(run_dir)
    rounds = [folder for folder in folders if folder.parent.name == "selftrain"]
    for number, round_dir in enumerate(rounds, 1):
        offset = max((r.get("step", 0) for r in view.finetune), default=0)
        view.finetune += [{**r, "step": r.get("step", 0) + offset, "round": f"self-training {number}"}
                          for r in read_jsonl(round_dir / "metrics.jsonl")]
    latest = next((folder for folder in reversed(folders) if (folder / "status.json").exists()), None)
    view.status = json.loads((latest / "status.json").read_text()) if latest else {}
    if (run_dir / "job.json").exists():
        view.job = json.loads((run_dir / "job.json").read_text())
        view.running = is_alive(view.job.get("pid", -1))
        if not view.running and view.status.get("state") in ("running", "stopping"):
            # the lexicon stage has no checkpoints: Stop ends it at once, and a resume builds it again
            view.status["state"] = "stopped" if (latest / "STOP").exists() else "crashed"
    if (run_dir / "train.log").exists():
        with open(run_dir / "train.log", "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 32_768))
            text = handle.read().decode("utf-8", errors="replace")
        lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
        view.log_tail = "\n".join(lines[-log_lines:])
    return view


def list_models(runs: Path = RUNS) -> list[tuple[str, str]]:
    """(label, folder) of dish taggers to pick from: the shipped one first, then finished runs, newest first."""
    models = [("shipped model (checkpoints/dish-tagger)", str(SHIPPED_TAGGER))]
    return models + [(f"run {name}", str((runs / name / "dish-tagger").resolve())) for name in list_runs(runs)
                     if (runs / name / "dish-tagger" / "config.json").exists()]


def describe_status(view: RunView) -> str:
    """One line for people: stage, steps done / total, percent and ETA."""
    s = view.status
    if not s:
        return "Starting…" if view.running else "No training has run here yet."
    done, total = s.get("step", 0), s.get("max_steps") or 0
    percent = f" ({100 * done / total:.0f}%)" if total else ""
    eta = (f", about {format_seconds(s['eta_s'])} left" if view.running and s.get("state") == "running"
           and s.get("eta_s") is not None else "")
    if view.running and s.get("state") == "finished":
        eta = ", starting the next stage"
    stage = STAGES.get(s.get("stage"), s.get("stage", ""))
    return f"{stage}: {s.get('state', '?')} — {s.get('unit', 'step')} {done}/{total}{percent}{eta} · elapsed {format_seconds(s.get('elapsed_s', 0))} on {s.get('device', '?')}"


def format_seconds(seconds: float) -> str:
    """`75` -> `1m 15s`."""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
