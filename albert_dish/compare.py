"""Stage 6: compare BERT and ALBERT: parameters (vs the ALBERT paper), inference latency, memory and training cost.

Input: model shapes (the paper's, and this project's `pretrain.PRESETS`), optionally the cached same-task result
`checkpoints/bert-vs-albert.json`. Output: a `CompareReport` (JSON-able), Plotly figures and a plain-language summary.
Every number is measured or computed here; only the paper's reference figures are typed in, with their source.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from albert_dish.model import Kind, ModelShape, build_model, count_parameters

log = logging.getLogger(__name__)

OnProgress = Callable[[float, str], None]
KINDS: tuple[Kind, Kind] = ("bert", "albert")
PAPER = "ALBERT paper (Lan et al. 2019, arXiv:1909.11942)"
DEFAULT_SAME_TASK_PATH = Path(__file__).resolve().parents[1] / "checkpoints" / "bert-vs-albert.json"
PAPER_TOLERANCE = 0.02  # |ours - paper| / paper allowed before a row needs an explanation
CPU_MAX_GFLOP = 50.0  # skip CPU latency settings above this many GFLOP per forward (base at batch 32 takes seconds)
ALLREDUCE_FORMULA = ("ring all-reduce: each of n workers sends (and receives) 2*(n-1)/n * B bytes per step, "
                     "B = trainable parameters * bytes per gradient; time = that * 8 / (bandwidth in bit/s)")

# Shapes from the paper's Table 1 (L, H, E) and the released configs (heads, FFN); BERT's vocabulary is 30,522
# WordPieces, ALBERT's 30,000 SentencePieces. xlarge: the released config says 16 heads (H/64 would be 32);
# the head count does not change the parameter count.
PAPER_SHAPES: dict[str, tuple[Kind, ModelShape]] = {
    "BERT-base": ("bert", ModelShape(30522, 768, 768, 12, 12, 3072)),
    "BERT-large": ("bert", ModelShape(30522, 1024, 1024, 24, 16, 4096)),
    "ALBERT-base": ("albert", ModelShape(30000, 128, 768, 12, 12, 3072)),
    "ALBERT-large": ("albert", ModelShape(30000, 128, 1024, 24, 16, 4096)),
    "ALBERT-xlarge": ("albert", ModelShape(30000, 128, 2048, 24, 16, 8192)),
    "ALBERT-xxlarge": ("albert", ModelShape(30000, 128, 4096, 12, 64, 16384)),
}
# Parameter counts in millions as the paper prints them (whole millions).
PAPER_MILLIONS: dict[str, tuple[float, str]] = {
    "BERT-base": (108, "Table 1"),
    "BERT-large": (334, "Table 1"),
    "ALBERT-base": (12, "Table 1"),
    "ALBERT-large": (18, "Table 1"),
    "ALBERT-xlarge": (60, "Table 1"),
    "ALBERT-xxlarge": (235, "Table 1"),
    "ALBERT-base without sharing": (89, "Table 4 (E=128, not-shared)"),
    "ALBERT-base without factorization": (31, "Table 3 (E=768, all-shared)"),
}


def _shape_text(row: "ParamRow") -> str:
    s = row.shape
    return (f"H={s['hidden_size']}, L={s['num_hidden_layers']}, E={s['embedding_size']}, "
            f"{s['num_attention_heads']} heads, FFN {s['intermediate_size']}")


# Why a row may differ from the paper by more than PAPER_TOLERANCE; each gets the row and returns a sentence.
PAPER_EXPLANATIONS: dict[str, Callable[["ParamRow"], str]] = {
    "ALBERT-xlarge": lambda row: (
        f"the released xlarge shape ({_shape_text(row)}) gives {row.total / 1e6:.1f}M; the paper gives no "
        "breakdown, so its figure cannot be traced. The head count (16 released, H/64 = 32) does not change it"),
    "ALBERT-xxlarge": lambda row: (
        f"the released xxlarge shape ({_shape_text(row)}) gives {row.total / 1e6:.1f}M, "
        f"{(row.paper_millions * 1e6 - row.total) / 1e6:.1f}M fewer than the paper (promptlayer.com's listing of "
        "albert-xxlarge-v2 also says 223M); the paper gives no breakdown, so the difference cannot be traced"),
    "ALBERT-base without factorization": lambda row: (
        f"transformers keeps the E-to-H projection even when E = H ({row.projection / 1e6:.2f}M); without it the "
        f"count is {(row.total - row.projection) / 1e6:.1f}M "
        f"({(row.total - row.projection) / (row.paper_millions * 1e6) - 1:+.1%} vs the paper)"),
}


@dataclass
class ParamRow:
    """One model's parameter count, split by module (the parts sum to `total`), and how it compares to the paper."""

    name: str
    kind: Kind
    total: int
    embeddings: int  # word + position + token-type embeddings and their LayerNorm (V*E + ...)
    projection: int  # ALBERT's E->H mapping (inside transformers' encoder); 0 for BERT
    encoder: int  # transformer layers (all distinct for BERT, one shared set for ALBERT)
    pooler: int
    other: int
    shape: dict[str, int]
    shared_layers: bool
    paper_millions: float | None = None
    paper_source: str = ""
    rel_diff: float | None = None  # (total - paper) / paper
    agrees: bool | None = None  # within PAPER_TOLERANCE
    note: str = ""


@dataclass
class LatencyRow:
    """Forward-pass latency and memory of one model at one (batch, sequence length) setting."""

    preset: str
    kind: Kind
    device: str
    dtype: str
    batch_size: int
    seq_len: int
    repeats: int
    p50_ms: float
    p95_ms: float
    min_ms: float
    activation: str  # hidden_act of the config (ALBERT's gelu_new is unfused on CPU)
    tokens_per_s: float  # batch_size * seq_len / p50
    est_gflop: float  # estimated forward FLOPs (same formula for both kinds)
    params: int
    weights_mb: float  # parameters * bytes per parameter
    peak_memory_mb: float  # extra memory at the peak of one forward (activations, workspace)
    disk_mb: float  # size of a save_pretrained folder


@dataclass
class TrainingCostRow:
    """One pretraining step (forward + backward + optimizer) and the gradient all-reduce it implies."""

    preset: str
    kind: Kind
    device: str
    batch_size: int
    seq_len: int
    repeats: int
    params: int
    step_p50_ms: float
    step_min_ms: float
    optimizer_p50_ms: float  # the optimizer.step() part of the step (touches every parameter)
    optimizer: str
    loss: str
    grad_bytes_fp32: int
    grad_bytes_bf16: int
    workers: int
    bandwidth_gbps: float
    allreduce_bytes_per_worker_fp32: float
    allreduce_ms_fp32: float
    allreduce_ms_bf16: float


@dataclass
class MachineInfo:
    """Where the numbers were measured."""

    torch_version: str
    transformers_version: str
    python_version: str
    platform: str
    device_name: str
    cuda_available: bool
    threads: int
    memory_method: str


@dataclass
class CompareReport:
    """Everything the compare tab shows."""

    machine: MachineInfo
    param_rows: list[ParamRow]
    preset_rows: list[ParamRow]
    latency_rows: list[LatencyRow] = field(default_factory=list)
    latency_skipped: list[str] = field(default_factory=list)
    training_rows: list[TrainingCostRow] = field(default_factory=list)
    same_task: dict[str, Any] | None = None
    same_task_path: str = str(DEFAULT_SAME_TASK_PATH)
    allreduce_formula: str = ALLREDUCE_FORMULA
    elapsed_s: float = 0.0

    @property
    def params(self) -> list[ParamRow]:
        """The paper's models, then this project's presets."""
        return self.param_rows + self.preset_rows

    @property
    def latency(self) -> list[LatencyRow]:
        """The latency rows (empty unless measured)."""
        return self.latency_rows


# ---------------------------------------------------------------------------------------------------- parameters

def _count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else count_parameters(module)


def _build_on_meta(kind: Kind, shape: ModelShape, **extra) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(kind, shape, "base", **extra)


def build_param_row(name: str, kind: Kind, model: torch.nn.Module, shape: ModelShape, note: str = "") -> ParamRow:
    """Split a BertModel/AlbertModel's parameters into embeddings, projection, encoder layers, pooler and other."""
    total = count_parameters(model)
    projection = _count(getattr(model.encoder, "embedding_hidden_mapping_in", None))
    parts = dict(embeddings=_count(model.embeddings), projection=projection,
                 encoder=_count(model.encoder) - projection, pooler=_count(getattr(model, "pooler", None)))
    groups = getattr(model.config, "num_hidden_groups", shape.num_hidden_layers)
    row = ParamRow(name=name, kind=kind, total=total, other=total - sum(parts.values()), shape=asdict(shape),
                   shared_layers=kind == "albert" and groups < shape.num_hidden_layers, note=note, **parts)
    if name in PAPER_MILLIONS:
        _compare_with_paper(row, *PAPER_MILLIONS[name])
    return row


def _compare_with_paper(row: ParamRow, paper_millions: float, source: str) -> None:
    row.paper_millions, row.paper_source = paper_millions, f"{PAPER}, {source}"
    row.rel_diff = row.total / (paper_millions * 1e6) - 1
    row.agrees = abs(row.rel_diff) <= PAPER_TOLERANCE
    head = f"{row.total / 1e6:.1f}M vs paper {paper_millions:g}M ({row.rel_diff:+.1%})"
    if row.agrees:
        reason = f"within {PAPER_TOLERANCE:.0%}"
    elif round(row.total / 1e6) == paper_millions:
        reason = f"the paper rounds to whole millions and {row.total / 1e6:.2f}M rounds to {paper_millions:g}M"
    elif row.name in PAPER_EXPLANATIONS:
        reason = PAPER_EXPLANATIONS[row.name](row)
    else:
        reason = "UNEXPLAINED difference"
        log.warning("%s differs from the paper by %+.1f%% with no explanation", row.name, 100 * row.rel_diff)
    row.note = f"{head}: {reason}." + (f" {row.note}" if row.note else "")


def count_parameter_table() -> list[ParamRow]:
    """Parameter breakdown of the paper's BERT/ALBERT sizes (built on the meta device), plus ALBERT-base ablations."""
    rows = []
    for name, (kind, shape) in PAPER_SHAPES.items():
        rows.append(build_param_row(name, kind, _build_on_meta(kind, shape), shape))
    kind, shape = PAPER_SHAPES["ALBERT-base"]
    base = next(r for r in rows if r.name == "ALBERT-base")
    unshared = _build_on_meta(kind, shape, num_hidden_groups=shape.num_hidden_layers)
    rows.append(build_param_row(
        "ALBERT-base without sharing", kind, unshared, shape,
        note=f"Same shape with {shape.num_hidden_layers} distinct layers: sharing saves "
             f"{(count_parameters(unshared) - base.total) / 1e6:.1f}M."))
    unfactorized = replace(shape, embedding_size=shape.hidden_size)
    full = build_param_row("ALBERT-base without factorization", kind, _build_on_meta(kind, unfactorized),
                           unfactorized)
    full.note += (f" Embeddings V x H instead of V x E + E x H: factorization saves "
                  f"{(full.total - base.total) / 1e6:.1f}M.")
    rows.append(full)
    return rows


def count_preset_table(shapes: dict[str, ModelShape]) -> list[ParamRow]:
    """For each preset: our ALBERT and a BERT with the same hidden size, depth, FFN and vocabulary."""
    rows = []
    for name, shape in shapes.items():
        for kind in ("albert", "bert"):
            note = (f"E={shape.embedding_size} factorized, one layer shared {shape.num_hidden_layers}x"
                    if kind == "albert" else "E = H, no sharing")
            rows.append(build_param_row(f"{name} ({kind.upper()})", kind, _build_on_meta(kind, shape), shape, note))
    return rows


def without_sharing_by_formula(row: ParamRow) -> int:
    """ALBERT parameters if its L layers were distinct: embeddings + projection + L x one layer + pooler + other."""
    return row.embeddings + row.projection + row.shape["num_hidden_layers"] * row.encoder + row.pooler + row.other


def estimate_forward_gflop(shape: ModelShape, batch_size: int, seq_len: int) -> float:
    """Matmul GFLOPs of one encoder forward: 2 * tokens * (4H^2 + 2HF) per layer + attention 4 * B * T^2 * H."""
    tokens = batch_size * seq_len
    h, f = shape.hidden_size, shape.intermediate_size
    per_layer = 2 * tokens * (4 * h * h + 2 * h * f) + 4 * batch_size * seq_len * seq_len * h
    return shape.num_hidden_layers * per_layer / 1e9


# ------------------------------------------------------------------------------------------------------ latency

def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _random_batch(shape: ModelShape, batch_size: int, seq_len: int, device: str,
                  generator: torch.Generator) -> dict[str, torch.Tensor]:
    if seq_len > shape.max_position_embeddings:
        raise ValueError(f"seq_len {seq_len} exceeds max_position_embeddings {shape.max_position_embeddings}; "
                         "pass shorter seq_lens.")
    ids = torch.randint(1, shape.vocab_size, (batch_size, seq_len), generator=generator)
    return dict(input_ids=ids.to(device), attention_mask=torch.ones_like(ids).to(device),
                token_type_ids=torch.zeros_like(ids).to(device))


def _timed_forward_ms(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad(), _autocast(device):
        model(**batch)
    _sync(device)
    return (time.perf_counter() - start) * 1e3


def _linux_peak_rss_available() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def describe_memory_method(device: str = "cpu") -> str:
    """How `peak_memory_mb` is measured on `device`."""
    if device.startswith("cuda"):
        return "torch.cuda.max_memory_allocated minus memory allocated before the forward"
    if _linux_peak_rss_available():
        return "peak RSS (Linux VmHWM, reset via /proc/self/clear_refs after malloc_trim) minus RSS before the forward"
    return "psutil RSS after minus before the forward (a lower bound: transient peaks are missed)"


def _read_status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _trim_malloc() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure_peak_memory_mb(model: torch.nn.Module, batch: dict[str, torch.Tensor], device: str) -> float:
    """Extra memory (MB) at the peak of one no-grad forward, beyond what was held before it."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with torch.no_grad(), _autocast(device):
            model(**batch)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    _trim_malloc()
    if _linux_peak_rss_available():
        before = _read_status_kb("VmRSS")
        with torch.no_grad():
            model(**batch)
        return max(0, _read_status_kb("VmHWM") - before) / 1024
    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    with torch.no_grad():
        output = model(**batch)
    after = process.memory_info().rss
    del output
    return max(0, after - before) / 2**20


def measure_disk_mb(model: torch.nn.Module) -> float:
    """Size in MB of the model's `save_pretrained` folder (safetensors + config)."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in the CLI output
    try:
        with tempfile.TemporaryDirectory(prefix="albert-dish-size-") as folder:
            model.save_pretrained(folder)
            return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _weights_mb(model: torch.nn.Module) -> float:
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() * p.element_size() for p in unique) / 2**20


def _settings(shapes: dict[str, ModelShape], batch_sizes: Iterable[int], seq_lens: Iterable[int],
              max_gflop: float | None) -> tuple[list[tuple[str, int, int]], list[str]]:
    kept, skipped = [], []
    for name, shape in shapes.items():
        for batch_size in batch_sizes:
            for seq_len in seq_lens:
                gflop = estimate_forward_gflop(shape, batch_size, seq_len)
                if max_gflop is not None and gflop > max_gflop:
                    skipped.append(f"{name} batch {batch_size} x {seq_len}: ~{gflop:.0f} GFLOP per forward "
                                   f"> limit {max_gflop:g} (too slow for the default run on this device)")
                else:
                    kept.append((name, batch_size, seq_len))
    return kept, skipped


def measure_latency(shapes: dict[str, ModelShape], batch_sizes: tuple[int, ...] = (1, 32),
                    seq_lens: tuple[int, ...] = (64, 128), repeats: int = 20, warmup: int = 1,
                    device: str = "cpu", on_progress: OnProgress | None = None,
                    max_gflop: float | Literal["auto"] | None = "auto", budget_s: float | None = 3.0,
                    min_repeats: int = 3, skipped: list[str] | None = None) -> list[LatencyRow]:
    """BERT vs ALBERT of each shape, random weights, eval + no_grad forward, the two interleaved per repeat.

    `max_gflop="auto"` skips CPU settings above CPU_MAX_GFLOP per forward (base at batch 32 takes seconds per
    forward); skipped settings are appended to `skipped`. A setting whose warm-up pair shows it would take more
    than `budget_s` gets fewer repeats (not below `min_repeats`); each row records its count. On CUDA the forward
    runs under bf16 autocast.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    limit = (CPU_MAX_GFLOP if device == "cpu" else None) if max_gflop == "auto" else max_gflop
    settings, skipped_here = _settings(shapes, batch_sizes, seq_lens, limit)
    for message in skipped_here:
        log.info("Latency: skipping %s", message)
    if skipped is not None:
        skipped.extend(skipped_here)
    dtype = "bf16 autocast" if device.startswith("cuda") else "fp32"
    log.info("Latency: %d settings x %s on %s (%s), %d warmup + %d repeats, %d threads", len(settings), KINDS,
             device, dtype, warmup, repeats, torch.get_num_threads())
    rows: list[LatencyRow] = []
    done = 0
    for name in dict.fromkeys(n for n, _, _ in settings):
        shape = shapes[name]
        torch.manual_seed(0)
        built = time.perf_counter()
        models = {kind: build_model(kind, shape, "base").eval() for kind in KINDS}
        info = {kind: (count_parameters(m), _weights_mb(m), measure_disk_mb(m)) for kind, m in models.items()}
        log.info("Latency %s: built and saved both models in %.1f s", name, time.perf_counter() - built)
        models = {kind: m.to(device) for kind, m in models.items()}
        generator = torch.Generator().manual_seed(0)
        for _, batch_size, seq_len in [s for s in settings if s[0] == name]:
            batch = _random_batch(shape, batch_size, seq_len, device, generator)
            pair_ms, warmed, warm_start = 0.0, 0, time.perf_counter()
            # at least `warmup` pairs; cheap settings keep warming for up to 0.5 s (first-call allocator/kernel setup)
            while warmed < warmup or (warmup and warmed < 20 and time.perf_counter() - warm_start < 0.5):
                pair_ms = sum(_timed_forward_ms(model, batch, device) for model in models.values())
                warmed += 1
            count = repeats
            if budget_s is not None and pair_ms > 0:
                count = max(min(min_repeats, repeats), min(repeats, int(budget_s * 1e3 / pair_ms)))
            times: dict[Kind, list[float]] = {kind: [] for kind in KINDS}
            for repeat in range(count):
                order = KINDS if repeat % 2 == 0 else KINDS[::-1]  # alternate who goes first
                for kind in order:
                    times[kind].append(_timed_forward_ms(models[kind], batch, device))
            gflop = estimate_forward_gflop(shape, batch_size, seq_len)
            for kind in KINDS:
                p50 = _percentile(times[kind], 50)
                params, weights_mb, disk_mb = info[kind]
                rows.append(LatencyRow(
                    preset=name, kind=kind, device=device, dtype=dtype, batch_size=batch_size, seq_len=seq_len,
                    repeats=count, p50_ms=p50, p95_ms=_percentile(times[kind], 95), min_ms=min(times[kind]),
                    activation=models[kind].config.hidden_act, tokens_per_s=batch_size * seq_len / (p50 / 1e3),
                    est_gflop=gflop, params=params,
                    weights_mb=weights_mb, peak_memory_mb=measure_peak_memory_mb(models[kind], batch, device),
                    disk_mb=disk_mb))
            done += 1
            message = (f"{name} b{batch_size}x{seq_len}: BERT {rows[-2].p50_ms:.1f} ms, "
                       f"ALBERT {rows[-1].p50_ms:.1f} ms (p50)")
            log.info("Latency %s", message)
            if on_progress:
                on_progress(done / max(1, len(settings)), message)
        del models
        gc.collect()
    return rows


# ------------------------------------------------------------------------------------------------ training cost

def _pretraining_batch(shape: ModelShape, batch_size: int, seq_len: int, device: str,
                       generator: torch.Generator) -> dict[str, torch.Tensor]:
    batch = _random_batch(shape, batch_size, seq_len, device, generator)
    chosen = torch.rand(batch_size, seq_len, generator=generator) < 0.15
    chosen[:, 0] = True  # at least one masked position per row
    labels = torch.where(chosen, batch["input_ids"].cpu(), torch.full_like(chosen, -100, dtype=torch.long))
    batch["labels"] = labels.to(device)
    batch["sentence_order_label"] = torch.randint(0, 2, (batch_size,), generator=generator).to(device)
    return batch


def measure_training_cost(shape: ModelShape, batch_size: int, seq_len: int, bandwidth_gbps: float = 10.0,
                          workers: int = 8, repeats: int = 3, warmup: int = 1, device: str = "cpu",
                          preset: str = "custom") -> list[TrainingCostRow]:
    """Time one pretraining step of BERT and ALBERT (interleaved) and the data-parallel gradient all-reduce.

    Gradient bytes = trainable parameters x 4 (fp32) or x 2 (bf16); ALLREDUCE_FORMULA gives the per-worker traffic.
    """
    if workers < 2 or bandwidth_gbps <= 0:
        raise ValueError(f"need workers >= 2 and bandwidth_gbps > 0, got workers={workers}, "
                         f"bandwidth_gbps={bandwidth_gbps}.")
    from albert_dish.pretrain import compute_pretraining_loss

    loss_fn, loss_name = (lambda model, batch: compute_pretraining_loss(model, batch)[0]), "pretrain.compute_pretraining_loss"
    torch.manual_seed(0)
    models = {kind: build_model(kind, shape, "pretraining").to(device).train() for kind in KINDS}
    optimizers = {kind: torch.optim.AdamW(m.parameters(), lr=1e-4) for kind, m in models.items()}
    batch = _pretraining_batch(shape, batch_size, seq_len, device, torch.Generator().manual_seed(0))

    def step(kind: Kind) -> tuple[float, float]:
        """(whole step ms, optimizer.step ms)."""
        _sync(device)
        start = time.perf_counter()
        optimizers[kind].zero_grad(set_to_none=True)
        with _autocast(device):
            loss = loss_fn(models[kind], batch)
        loss.backward()
        _sync(device)
        update = time.perf_counter()
        optimizers[kind].step()
        _sync(device)
        end = time.perf_counter()
        return (end - start) * 1e3, (end - update) * 1e3

    for _ in range(warmup):
        for kind in KINDS:
            step(kind)
    times: dict[Kind, list[float]] = {kind: [] for kind in KINDS}
    update_times: dict[Kind, list[float]] = {kind: [] for kind in KINDS}
    for repeat in range(repeats):
        for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:
            total_ms, update_ms = step(kind)
            times[kind].append(total_ms)
            update_times[kind].append(update_ms)
    rows = []
    ring_factor = 2 * (workers - 1) / workers
    for kind, model in models.items():
        params = sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
        fp32, bf16 = params * 4, params * 2
        to_ms = lambda n_bytes: ring_factor * n_bytes * 8 / (bandwidth_gbps * 1e9) * 1e3  # noqa: E731
        rows.append(TrainingCostRow(
            preset=preset, kind=kind, device=device, batch_size=batch_size, seq_len=seq_len, repeats=repeats,
            params=params, step_p50_ms=_percentile(times[kind], 50), step_min_ms=min(times[kind]),
            optimizer_p50_ms=_percentile(update_times[kind], 50),
            optimizer="AdamW", loss=loss_name, grad_bytes_fp32=fp32, grad_bytes_bf16=bf16, workers=workers,
            bandwidth_gbps=bandwidth_gbps, allreduce_bytes_per_worker_fp32=ring_factor * fp32,
            allreduce_ms_fp32=to_ms(fp32), allreduce_ms_bf16=to_ms(bf16)))
        log.info("Training step %s %s b%dx%d: %.0f ms; all-reduce %.1f MB fp32 -> %.1f ms at %g Gbit/s, %d workers",
                 preset, kind, batch_size, seq_len, rows[-1].step_p50_ms, fp32 / 2**20, rows[-1].allreduce_ms_fp32,
                 bandwidth_gbps, workers)
    return rows


# ---------------------------------------------------------------------------------------------- same-task result

def load_same_task_result(path: Path = DEFAULT_SAME_TASK_PATH) -> dict[str, Any] | None:
    """The cached BERT-vs-ALBERT same-task result (JSON object), or None if it has not been produced yet."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it and re-run the same-task "
                         "comparison.") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a JSON object; re-run the comparison.")
    return data


# ----------------------------------------------------------------------------------------------------- figures

_COLORS = {"bert": "#4C78A8", "albert": "#F58518"}


def build_param_figure(rows: list[ParamRow]):
    """Log-scale bars of parameter counts (millions) per model, with the paper's figures as markers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind in KINDS:
        kind_rows = [r for r in rows if r.kind == kind]
        fig.add_bar(x=[r.name for r in kind_rows], y=[r.total / 1e6 for r in kind_rows], name=kind.upper(),
                    marker_color=_COLORS[kind], text=[f"{r.total / 1e6:.1f}M" for r in kind_rows],
                    textposition="outside", hovertext=[r.note for r in kind_rows])
    paper = [r for r in rows if r.paper_millions is not None]
    if paper:
        fig.add_scatter(x=[r.name for r in paper], y=[r.paper_millions for r in paper], mode="markers",
                        name="paper", marker=dict(symbol="diamond", size=11, color="black"),
                        hovertext=[r.paper_source for r in paper])
    fig.update_layout(title="Parameters (millions, log scale)", yaxis_type="log", yaxis_title="parameters (M)",
                      barmode="group", legend_title_text="")
    return fig


def _setting_label(row: LatencyRow) -> str:
    device = "" if row.device == "cpu" else f" {row.device}"
    return f"{row.preset} b{row.batch_size}x{row.seq_len}{device}"


def build_latency_figure(rows: list[LatencyRow]):
    """Grouped p50 bars per setting, BERT vs ALBERT; whiskers from the min up to p95."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for kind in KINDS:
        kind_rows = [r for r in rows if r.kind == kind]
        fig.add_bar(x=[_setting_label(r) for r in kind_rows], y=[r.p50_ms for r in kind_rows], name=kind.upper(),
                    marker_color=_COLORS[kind],
                    error_y=dict(type="data", symmetric=False, array=[r.p95_ms - r.p50_ms for r in kind_rows],
                                 arrayminus=[r.p50_ms - r.min_ms for r in kind_rows]),
                    hovertext=[f"p50 {r.p50_ms:.2f} ms, p95 {r.p95_ms:.2f}, min {r.min_ms:.2f}, "
                               f"~{r.est_gflop:.1f} GFLOP" for r in kind_rows])
    fig.update_layout(title="Forward latency (p50; whiskers: min to p95)", yaxis_type="log",
                      yaxis_title="ms (log scale)", barmode="group", legend_title_text="")
    return fig


def build_memory_figure(rows: list[LatencyRow]):
    """Left: weights and on-disk size per model; right: peak extra memory of one forward per setting."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Stored size (MB)", "Peak extra memory in a forward (MB)"))
    per_model = {(r.preset, r.kind, r.device): r for r in rows}
    for kind in KINDS:
        models = [r for key, r in per_model.items() if key[1] == kind]
        names = [f"{r.preset}{'' if r.device == 'cpu' else ' ' + r.device}" for r in models]
        fig.add_bar(x=names, y=[r.disk_mb for r in models], name=f"{kind.upper()} on disk",
                    marker_color=_COLORS[kind], row=1, col=1)
        fig.add_bar(x=names, y=[r.weights_mb for r in models], name=f"{kind.upper()} weights in memory",
                    marker_color=_COLORS[kind], marker_pattern_shape="/", opacity=0.6, row=1, col=1)
        kind_rows = [r for r in rows if r.kind == kind]
        fig.add_bar(x=[_setting_label(r) for r in kind_rows], y=[r.peak_memory_mb for r in kind_rows],
                    name=f"{kind.upper()} forward peak", marker_color=_COLORS[kind], showlegend=True, row=1, col=2)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title="Memory", barmode="group", legend_title_text="")
    return fig


# ------------------------------------------------------------------------------------------------------ tables

def params_frame(report: CompareReport):
    """Parameter table for the app (pandas DataFrame, counts in millions)."""
    import pandas as pd

    return pd.DataFrame([{
        "model": r.name, "kind": r.kind, "total (M)": round(r.total / 1e6, 2),
        "embeddings (M)": round(r.embeddings / 1e6, 2), "E->H projection (M)": round(r.projection / 1e6, 2),
        "layers (M)": round(r.encoder / 1e6, 2), "pooler (M)": round(r.pooler / 1e6, 2),
        "paper (M)": r.paper_millions, "vs paper": "" if r.rel_diff is None else f"{r.rel_diff:+.1%}", "note": r.note,
    } for r in report.params])


def latency_frame(report: CompareReport):
    """Latency and memory table for the app (pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([{
        "preset": r.preset, "model": r.kind.upper(), "device": r.device, "batch": r.batch_size, "tokens": r.seq_len,
        "p50 ms": round(r.p50_ms, 1), "p95 ms": round(r.p95_ms, 1), "min ms": round(r.min_ms, 1),
        "repeats": r.repeats, "GFLOP": round(r.est_gflop, 2), "peak MB": round(r.peak_memory_mb, 1),
        "disk MB": round(r.disk_mb, 1),
    } for r in report.latency])


def same_task_frame(report: CompareReport):
    """The cached same-task result as a table: one row per model if it holds per-model objects, else key/value."""
    import pandas as pd

    data = report.same_task
    if data is None:
        return pd.DataFrame([{"status": f"no result cached yet ({report.same_task_path})"}])
    nested = {k: v for k, v in data.items() if isinstance(v, dict)}
    if nested:
        return pd.DataFrame([{"model": k, **{ik: iv for ik, iv in v.items() if not isinstance(iv, (dict, list))}}
                             for k, v in nested.items()])
    return pd.DataFrame([{"key": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
                         for k, v in data.items()])


# ----------------------------------------------------------------------------------------------------- explain

def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b else "n/a"


def explain(report: CompareReport) -> str:
    """A short plain-language Markdown summary of the measured numbers, for non-technical readers."""
    by_name = {r.name: r for r in report.param_rows}
    lines = ["### BERT vs ALBERT, in plain words", ""]
    bert, albert = by_name.get("BERT-base"), by_name.get("ALBERT-base")
    if bert and albert:
        unshared = by_name.get("ALBERT-base without sharing")
        unfactorized = by_name.get("ALBERT-base without factorization")
        width, depth = albert.shape["hidden_size"], albert.shape["num_hidden_layers"]
        lines.append(f"- **Size.** ALBERT-base has {albert.total / 1e6:.1f}M parameters, "
                     f"{_ratio(bert.total, albert.total)} fewer than BERT-base ({bert.total / 1e6:.1f}M), "
                     f"with the same width ({width}) and depth ({depth} layers).")
        if unshared and unfactorized:
            lines.append(f"  Two ideas do it: a small word table ({albert.shape['embedding_size']} numbers per word) "
                         f"that is then widened (without it: {unfactorized.total / 1e6:.1f}M) and one layer reused "
                         f"{depth} times (without it: {unshared.total / 1e6:.1f}M).")
    differing = [r.name for r in report.param_rows if r.agrees is False]
    compared = [r for r in report.param_rows if r.agrees is not None]
    if compared:
        others = f"; the table notes explain the others ({', '.join(differing)})." if differing else "."
        lines.append(f"- **Paper check.** {len(compared) - len(differing)} of {len(compared)} counts match the paper "
                     f"within {PAPER_TOLERANCE:.0%}{others}")
    lines.append("- **Speed.** ALBERT still runs all its layers, so per word it does the same arithmetic as a "
                 "BERT of the same shape; fewer parameters do not make it faster at inference.")
    for (preset, batch_size, seq_len, device), pair in _latency_pairs(report.latency_rows).items():
        b, a = pair["bert"], pair["albert"]
        lines.append(f"  Measured ({preset}, {batch_size} review(s) × {seq_len} tokens, {device}): "
                     f"ALBERT {a.p50_ms:.1f} ms vs BERT {b.p50_ms:.1f} ms (median of {a.repeats}).")
    slower = [(a, b) for a, b in _all_latency_pairs(report.latency_rows) if a.p50_ms > 1.15 * b.p50_ms]
    if slower and any(a.activation != b.activation for a, b in slower):
        a, b = max(slower, key=lambda pair: pair[0].p50_ms / pair[1].p50_ms)
        lines.append(f"  ALBERT is slower in {len(slower)} setting(s), up to {_ratio(a.p50_ms, b.p50_ms)} "
                     f"({a.preset}, {a.batch_size} × {a.seq_len}): its activation ({a.activation}) runs as several "
                     f"separate steps, while BERT's ({b.activation}) is one fused step.")
    if report.latency_skipped:
        lines.append(f"  ({len(report.latency_skipped)} larger settings were skipped to keep the run short.)")
    for (preset, batch_size, seq_len, device), pair in _latency_pairs(report.latency_rows).items():
        a, b = pair["albert"], pair["bert"]
        lines.append(f"- **Storage ({preset}).** ALBERT's saved model is {a.disk_mb:.1f} MB vs {b.disk_mb:.1f} MB for "
                     f"BERT. The extra working memory of a forward pass comes from activations, not weights: "
                     f"{a.peak_memory_mb:.0f} vs {b.peak_memory_mb:.0f} MB ({batch_size} × {seq_len}, {device}).")
    training = {}
    for row in report.training_rows:
        training.setdefault(row.preset, {})[row.kind] = row
    for preset, pair in training.items():
        if len(pair) == 2:
            b, a = pair["bert"], pair["albert"]
            lines.append(
                f"- **Training ({preset}).** One training step here ({a.batch_size} × {a.seq_len} tokens): ALBERT "
                f"{a.step_p50_ms:.0f} ms vs BERT {b.step_p50_ms:.0f} ms, of which updating every parameter takes "
                f"{a.optimizer_p50_ms:.0f} vs {b.optimizer_p50_ms:.0f} ms. With {a.workers} machines sharing the "
                f"work, each step must also exchange the gradients: {a.grad_bytes_fp32 / 2**20:.0f} MB for ALBERT "
                f"vs {b.grad_bytes_fp32 / 2**20:.0f} MB for BERT, {a.allreduce_ms_fp32:.0f} vs "
                f"{b.allreduce_ms_fp32:.0f} ms at {a.bandwidth_gbps:g} Gbit/s. These per-parameter costs shrink with "
                "ALBERT's size while the layers' arithmetic does not: that is where ALBERT's training speed-up in the "
                "paper comes from.")
    if report.same_task is not None:
        lines.append(f"- **Same task, both models** ({Path(report.same_task_path).name}): "
                     f"{describe_same_task(report.same_task)}")
    else:
        lines.append(f"- **Same task, both models:** no result cached yet ({report.same_task_path}).")
    lines.append(f"\n_Measured with torch {report.machine.torch_version} on {report.machine.device_name}, "
                 f"{report.machine.threads} threads._")
    return "\n".join(lines)


def describe_same_task(result: dict) -> str:
    """One plain sentence on the dish task trained with both models (`reproduce`'s bert-vs-albert.json)."""
    entries = {kind: result.get(kind) for kind in ("albert", "bert")}
    if all(isinstance(e, dict) and {"parameters", "val_f1"} <= set(e) for e in entries.values()):
        a, b = entries["albert"], entries["bert"]

        def unseen(e: dict) -> str:
            return f" ({e['val_unseen_f1']:.3f} on dishes it was never shown)" if "val_unseen_f1" in e else ""

        text = (f"trained the same way on the same reviews, ALBERT ({a['parameters'] / 1e6:.2f}M parameters) "
                f"scores validation F1 {a['val_f1']:.3f}{unseen(a)} and BERT ({b['parameters'] / 1e6:.2f}M, "
                f"{b['parameters'] / a['parameters']:.1f}x as many) {b['val_f1']:.3f}{unseen(b)}.")
        if "test_f1" in a and "test_f1" in b:
            text += f" On the test reviews: {a['test_f1']:.3f} vs {b['test_f1']:.3f}."
        return text + (f" Note: {result['note']}." if result.get("note") else "")
    scalars = {k: v for k, v in result.items() if isinstance(v, (int, float, str))}
    shown = ", ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in list(scalars.items())[:8])
    return f"{shown or 'see the JSON file'}."


def _all_latency_pairs(rows: list[LatencyRow]) -> list[tuple[LatencyRow, LatencyRow]]:
    """(ALBERT row, BERT row) for every setting measured for both."""
    pairs: dict[tuple[str, int, int, str], dict[str, LatencyRow]] = {}
    for row in rows:
        pairs.setdefault((row.preset, row.batch_size, row.seq_len, row.device), {})[row.kind] = row
    return [(p["albert"], p["bert"]) for p in pairs.values() if len(p) == 2]


def _latency_pairs(rows: list[LatencyRow]) -> dict[tuple[str, int, int, str], dict[str, LatencyRow]]:
    """The largest measured setting per (preset, device), as {kind: row}."""
    pairs: dict[tuple[str, int, int, str], dict[str, LatencyRow]] = {}
    for row in rows:
        pairs.setdefault((row.preset, row.batch_size, row.seq_len, row.device), {})[row.kind] = row
    best: dict[tuple[str, str], tuple[str, int, int, str]] = {}
    for key in pairs:
        preset, batch_size, seq_len, device = key
        current = best.get((preset, device))
        if current is None or batch_size * seq_len > current[1] * current[2]:
            best[(preset, device)] = key
    return {key: pairs[key] for key in best.values() if len(pairs[key]) == 2}


# ------------------------------------------------------------------------------------------------------ report

def describe_machine(device: str = "cpu") -> MachineInfo:
    """Versions, device name and thread count."""
    import transformers

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
    else:
        name = platform.processor() or platform.machine()
        try:
            match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
            name = match.group(1).strip() if match else name
        except OSError:
            pass
        name = f"{name} (CPU, {os.cpu_count()} cores)"
    return MachineInfo(torch_version=torch.__version__, transformers_version=transformers.__version__,
                       python_version=platform.python_version(), platform=platform.platform(), device_name=name,
                       cuda_available=torch.cuda.is_available(), threads=torch.get_num_threads(),
                       memory_method=describe_memory_method(device))


def load_preset_shapes() -> dict[str, ModelShape]:
    """This project's preset shapes (`albert_dish.pretrain.PRESETS`)."""
    from albert_dish.pretrain import PRESETS

    return {name: cfg.shape for name, cfg in PRESETS.items()}


@contextmanager
def _stage(on_progress: OnProgress | None, start: float, end: float) -> Iterator[OnProgress | None]:
    """Map a stage's 0..1 progress onto [start, end] of the whole report."""
    if on_progress is None:
        yield None
        return
    yield lambda fraction, message: on_progress(start + (end - start) * fraction, message)
    on_progress(end, "")


def build_report(run_latency: bool = True, shapes: dict[str, ModelShape] | None = None,
                 latency_presets: tuple[str, ...] = ("tiny", "base"), batch_sizes: tuple[int, ...] = (1, 32),
                 seq_lens: tuple[int, ...] = (64, 128), repeats: int = 20, warmup: int = 1,
                 train_batch_size: int = 1, train_seq_len: int = 64, train_repeats: int = 5,
                 bandwidth_gbps: float = 10.0, workers: int = 8, same_task_path: Path = DEFAULT_SAME_TASK_PATH,
                 on_progress: OnProgress | None = None) -> CompareReport:
    """Parameter tables, then (if `run_latency`) latency and training cost for `latency_presets`, on CPU and CUDA."""
    started = time.perf_counter()
    shapes = load_preset_shapes() if shapes is None else shapes
    timed = {name: shapes[name] for name in latency_presets if name in shapes} or shapes
    if run_latency and set(latency_presets) - set(timed):
        log.info("Presets %s not found; timing %s", sorted(set(latency_presets) - set(shapes)), sorted(timed))
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    report = CompareReport(machine=describe_machine(devices[-1]), param_rows=count_parameter_table(),
                           preset_rows=count_preset_table(shapes), same_task_path=str(same_task_path))
    if on_progress:
        on_progress(0.05, "parameter tables done")
    if run_latency:
        for index, device in enumerate(devices):
            span = 0.7 / len(devices)
            with _stage(on_progress, 0.05 + index * span, 0.05 + (index + 1) * span) as progress:
                report.latency_rows += measure_latency(timed, batch_sizes, seq_lens, repeats, warmup, device,
                                                       progress, skipped=report.latency_skipped)
        for index, (name, shape) in enumerate(timed.items()):
            report.training_rows += measure_training_cost(
                shape, train_batch_size, min(train_seq_len, shape.max_position_embeddings), bandwidth_gbps,
                workers, train_repeats, device=devices[-1], preset=name)
            if on_progress:
                on_progress(0.75 + 0.25 * (index + 1) / len(timed), f"training step {name} done")
    try:
        report.same_task = load_same_task_result(same_task_path)
    except ValueError as error:
        log.warning("Ignoring the same-task result: %s", error)
    report.elapsed_s = time.perf_counter() - started
    if on_progress:
        on_progress(1.0, f"done in {report.elapsed_s:.0f} s")
    return report


def _format_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[f"{c:,.2f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) and not
                          isinstance(c, bool) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_report(report: CompareReport) -> str:
    """Readable plain-text tables of the report."""
    def m(n: int) -> str:
        return f"{n / 1e6:.2f}M"

    param_headers = ["model", "total", "embeddings", "projection", "encoder", "pooler", "paper", "diff"]
    param_table = lambda rows: _format_table(param_headers, [  # noqa: E731
        [r.name, m(r.total), m(r.embeddings), m(r.projection), m(r.encoder), m(r.pooler),
         f"{r.paper_millions:g}M" if r.paper_millions else "", f"{r.rel_diff:+.1%}" if r.rel_diff is not None else ""]
        for r in rows])
    parts = [f"Machine: {report.machine.device_name}, torch {report.machine.torch_version}, "
             f"transformers {report.machine.transformers_version}, {report.machine.threads} threads",
             "", f"Parameters vs the {PAPER}", param_table(report.param_rows), "",
             "Notes:", *[f"  {r.name}: {r.note}" for r in report.param_rows], "",
             "This project's presets", param_table(report.preset_rows)]
    if report.latency_rows:
        parts += ["", f"Forward latency (interleaved, ms); peak memory: {report.machine.memory_method}", _format_table(
            ["preset", "kind", "device", "batch", "seq", "p50", "p95", "min", "GFLOP", "peak MB", "disk MB"],
            [[r.preset, r.kind, r.device, r.batch_size, r.seq_len, r.p50_ms, r.p95_ms, r.min_ms, r.est_gflop,
              r.peak_memory_mb, r.disk_mb] for r in report.latency_rows])]
        parts += [f"  skipped: {s}" for s in report.latency_skipped]
    if report.training_rows:
        parts += ["", f"Training step and gradient all-reduce ({ALLREDUCE_FORMULA})", _format_table(
            ["preset", "kind", "batch", "seq", "params", "step p50 ms", "optimizer ms", "grad MB fp32",
             "all-reduce ms fp32", "all-reduce ms bf16"],
            [[r.preset, r.kind, r.batch_size, r.seq_len, m(r.params), r.step_p50_ms, r.optimizer_p50_ms,
              r.grad_bytes_fp32 / 2**20,
              r.allreduce_ms_fp32, r.allreduce_ms_bf16] for r in report.training_rows])]
    parts += ["", f"Same-task result ({report.same_task_path}): "
              + ("not produced yet" if report.same_task is None else json.dumps(report.same_task)[:500]),
              f"Elapsed: {report.elapsed_s:.1f} s"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m albert_dish.compare [--json] [--no-latency] [--quick]`."""
    parser = argparse.ArgumentParser(prog="albert_dish compare", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-latency", action="store_true", help="only the parameter tables (seconds)")
    parser.add_argument("--quick", action="store_true", help="batch 1 x 64 tokens, 5 repeats, small training step")
    parser.add_argument("--same-task", type=Path, default=DEFAULT_SAME_TASK_PATH, help="cached same-task JSON")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                            stream=sys.stderr)
    options: dict[str, Any] = dict(run_latency=not args.no_latency, same_task_path=args.same_task)
    if args.quick:
        options.update(batch_sizes=(1,), seq_lens=(64,), repeats=5, warmup=1, train_seq_len=32, train_repeats=3)
    report = build_report(**options)
    print(json.dumps(asdict(report), indent=2) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
