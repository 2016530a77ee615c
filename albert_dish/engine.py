"""The one training engine both stages share: transformers' Trainer with LAMB, metrics.jsonl, clean stop and resume.

Input: a model, datasets, a collator and a stage config. Output: a run folder with `metrics.jsonl`, `status.json`,
`run_config.json` and `checkpoints/checkpoint-N/` (model, optimizer, scheduler, RNG state, trainer state).
"""
from __future__ import annotations

import functools
import json
import logging
import shutil
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from albert_dish.files import append_jsonl, read_jsonl, write_json_atomic, write_text_atomic
from albert_dish.model import describe_device, use_bf16

log = logging.getLogger(__name__)
OnStep = Callable[[int, int], None]
STOP_FILE = "STOP"


def find_checkpoint(run_dir: Path) -> Path | None:
    """Newest complete checkpoint in `run_dir/checkpoints` (complete = its trainer_state.json, written last, exists)."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    complete = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    for partial in set(folder.glob("checkpoint-*")) - set(complete):
        log.warning("Removing incomplete checkpoint %s (the run stopped while writing it)", partial)
        shutil.rmtree(partial, ignore_errors=True)
    return max(complete, key=lambda p: int(p.name.split("-")[-1]), default=None)


def write_status(run_dir: Path, stage: str, state: str, step: int, total: int, elapsed_s: float,
                 eta_s: float | None, epoch: float | None = None, unit: str = "step") -> None:
    """Write `run_dir/status.json` atomically (what the app shows): stage, state, step of total (counted in `unit`s),
    elapsed and ETA."""
    write_json_atomic(Path(run_dir) / "status.json", dict(
        stage=stage, state=state, step=step, max_steps=total, unit=unit, epoch=epoch, elapsed_s=round(elapsed_s, 1),
        eta_s=None if eta_s is None else round(eta_s, 1), device=describe_device()))


class ProgressStatus:
    """An `on_progress(done, total)` callback for a stage without a Trainer loop (the corpus lexicon): keeps the
    stage's status.json current, at most every `every_s` seconds, and `finish()` marks it finished."""

    def __init__(self, run_dir: Path, stage: str, unit: str, every_s: float = 2.0):
        self.run_dir, self.stage, self.unit, self.every_s = Path(run_dir), stage, unit, every_s
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.started = self.written = time.monotonic()
        self.done, self.total = 0, 0
        write_status(self.run_dir, stage, "running", 0, 0, 0.0, None, unit=unit)

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if now - self.written >= self.every_s:
            elapsed = now - self.started
            write_status(self.run_dir, self.stage, "running", done, total, elapsed,
                         elapsed / done * (total - done) if done else None, unit=self.unit)
            self.written = now

    def finish(self) -> None:
        write_status(self.run_dir, self.stage, "finished", self.done, self.total, time.monotonic() - self.started, 0.0,
                     unit=self.unit)


class StageTrainer(Trainer):
    """Trainer that adds running stage metrics (e.g. MLM accuracy), tokens/s and elapsed time to each log."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sums: dict[str, float] = defaultdict(float)
        self._tokens = 0
        self._last_log = time.monotonic()

    def _get_eval_sampler(self, eval_dataset):
        """Evaluate in dataset order: the Trainer would group evaluation by length too, and the validation scorer
        matches each prediction to its window by position."""
        return torch.utils.data.SequentialSampler(eval_dataset)

    def record(self, tokens: int = 0, **sums: float) -> None:
        """Add to the running sums; `name_n`/`name` pairs become averages at the next log."""
        if self.model.training:
            self._tokens += tokens
            for key, value in sums.items():
                self._sums[key] += float(value)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Default loss; also counts the real (unpadded) tokens for tokens/s."""
        self.record(tokens=int(inputs["attention_mask"].sum()))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Attach averages of the running sums and throughput to training logs."""
        if "loss" in logs:
            now = time.monotonic()
            logs["tokens_per_s"] = round(self._tokens / max(now - self._last_log, 1e-9), 1)
            for key in [k for k in self._sums if not k.endswith("_n")]:
                count = self._sums.get(f"{key}_n", 0)
                if count:
                    logs[key] = round(self._sums[key] / count, 4)
            self._sums.clear()
            self._tokens, self._last_log = 0, now
        super().log(logs, start_time)


class RunLogger(TrainerCallback):
    """Writes metrics.jsonl (one object per log), status.json (for the app), and stops on SIGTERM or a STOP file."""

    def __init__(self, run_dir: Path, stage: str, on_step: OnStep | None = None):
        self.run_dir, self.stage, self.on_step = Path(run_dir), stage, on_step
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.stop_requested = False
        self.elapsed_before = 0.0
        self.started = time.monotonic()

    def request_stop(self, *_: Any) -> None:
        """Ask training to stop at the end of the current step, with a checkpoint."""
        self.stop_requested = True

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def write_status(self, state, status: str) -> None:
        """Write status.json for this stage (see `write_status`)."""
        step, total = state.global_step, state.max_steps
        done_now = step - self.resumed_at
        eta = (self.elapsed() - self.elapsed_before) / done_now * (total - step) if done_now > 0 else None
        write_status(self.run_dir, self.stage, status, step, total, self.elapsed(), eta, epoch=state.epoch)

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run keeps the history up to its checkpoint and drops what was logged after it.
        history = read_jsonl(self.metrics_path, keep=lambda r: r.get("step", 0) <= state.global_step)
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in history))
        self.elapsed_before = max((r.get("elapsed_s", 0.0) for r in history), default=0.0)
        self.started, self.resumed_at = time.monotonic(), state.global_step
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)
        self.previous_handler = signal.signal(signal.SIGTERM, self.request_stop)
        self.write_status(state, "running")

    def on_log(self, args, state, control, logs=None, **kwargs):
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **(logs or {}),
                  "elapsed_s": round(self.elapsed(), 2)}
        append_jsonl(self.metrics_path, record)

    def on_step_end(self, args, state, control, **kwargs):
        if self.on_step is not None:
            self.on_step(state.global_step, state.max_steps)
        if (self.run_dir / STOP_FILE).exists():
            self.stop_requested = True
        if self.stop_requested:
            control.should_save = True
            control.should_training_stop = True
        if state.global_step % 5 == 0 or self.stop_requested:
            self.write_status(state, "stopping" if self.stop_requested else "running")

    def on_train_end(self, args, state, control, **kwargs):
        signal.signal(signal.SIGTERM, self.previous_handler)
        self.write_status(state, "stopped" if self.stop_requested else "finished")


class EpochCallback(TrainerCallback):
    """Tells an object with an `epoch` attribute (e.g. a collator that re-draws masks) which epoch begins."""

    def __init__(self, target: Any):
        self.target = target

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.target.epoch = int(state.epoch or 0)


def build_training_args(run_dir: Path, cfg: Any, **overrides: Any) -> TrainingArguments:
    """TrainingArguments shared by both stages: LAMB-ready, linear warm-up/decay, clipping, bf16 where the device has it."""
    bf16 = use_bf16()
    defaults = dict(
        output_dir=str(Path(run_dir) / "checkpoints"),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_steps,
        max_grad_norm=1.0,
        logging_steps=cfg.logging_steps,
        save_total_limit=2,
        seed=cfg.seed,
        bf16=bf16,
        use_cpu=bf16 and not torch.cuda.is_available(),  # the Trainer wants it said for bf16 on a CPU
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=False,
        train_sampling_strategy="group_by_length",  # batches of similar length: far less padding on CPU
    )
    return TrainingArguments(**{**defaults, **overrides})


def lamb_optimizer(cfg: Any, lr_scales: dict[torch.nn.Parameter, float] | None = None) -> tuple[type, dict[str, Any]]:
    """LAMB for the Trainer (which puts LayerNorm weights and biases in a group without weight decay); a parameter in
    `lr_scales` gets that share of the learning rate."""
    return layerwise_lamb(), dict(lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-6, weight_decay=cfg.weight_decay,
                                  lr_scales=dict(lr_scales or {}))


@functools.cache
def layerwise_lamb() -> type:
    """The LAMB class below (built on first use: pytorch-optimizer is imported only when training)."""
    from pytorch_optimizer import Lamb

    class LayerwiseLamb(Lamb):
        """pytorch-optimizer's LAMB with the layer-wise trust ratio only on matrices, as in BERT's and ALBERT's LAMB
        (`exclude_from_layer_adaptation`: LayerNorm and bias). 1-D tensors get plain Adam steps: a bias starts at
        zero, and a trust ratio of |w| / |step| would let it grow only ~lr per step in relative terms, which kept
        the MLM output bias (the unigram distribution) from being learned for hundreds of steps.

        A parameter in `lr_scales` gets that share of the learning rate (the schedule keeps the ratio)."""

        def __init__(self, params, lr_scales: dict[torch.nn.Parameter, float] | None = None, **kwargs):
            scale_of = {id(p): scale for p, scale in (lr_scales or {}).items()}
            params = list(params)
            groups = params if params and isinstance(params[0], dict) else [{"params": params}]
            split = []
            for group in groups:
                tensors = list(group["params"])
                for scale in sorted({scale_of.get(id(p), 1.0) for p in tensors}):
                    scaled = [p for p in tensors if scale_of.get(id(p), 1.0) == scale]
                    lr = {"lr": group.get("lr", kwargs["lr"]) * scale} if scale != 1.0 else {}
                    split.append({**group, **lr, "params": [p for p in scaled if p.ndim > 1]})
                    split.append({**group, **lr, "params": [p for p in scaled if p.ndim <= 1], "adam": True})
            super().__init__([g for g in split if g["params"]], **kwargs)

    return LayerwiseLamb


def run_stage(trainer: StageTrainer, logger: RunLogger, cfg: Any, resume: bool) -> None:
    """Save the config, then train (from the newest complete checkpoint when `resume`)."""
    run_dir = logger.run_dir
    checkpoint = find_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("No checkpoint in %s; starting from scratch.", run_dir)
    if not resume:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    write_json_atomic(run_dir / "run_config.json", {"stage": logger.stage, **asdict(cfg)})
    trainer.add_callback(logger)
    args = trainer.args
    log.info("***** Running %s ***** examples %d, steps %s, batch %d, device %s%s", logger.stage,
             len(trainer.train_dataset), args.max_steps if args.max_steps > 0 else f"{args.num_train_epochs} epochs",
             args.per_device_train_batch_size, describe_device(), f", resuming from {checkpoint}" if checkpoint else "")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


def export_model(model, tokenizer, out_dir: Path, files: dict[str, str] | None = None) -> Path:
    """Save model + tokenizer (+ extra text files) as a standard transformers folder, atomically."""
    from albert_dish.files import atomic_dir

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return Path(out_dir)
