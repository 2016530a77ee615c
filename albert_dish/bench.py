"""Benchmarks that print numbers: model load time, single-review latency, batch throughput, and app start-up.

`python -m albert_dish bench [--model DIR] [--app]`; targets are read from the output, never asserted in tests.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REVIEWS = [
    "The khao soi was great but the spring rolls were soggy.",
    "We shared the margherita pizza and a tiramisu. Service was slow but friendly.",
    "Lovely terrace, friendly staff, reasonable prices.",
    "ngl the birria tacos slapped, and the horchata was perfect",
]


def measure_tagger(model_dir: Path, repeats: int = 50) -> dict[str, float]:
    """Load time, and p50/p95/min latency of one review (ms), and reviews/s for a batch of 256."""
    started = time.perf_counter()
    from albert_dish.predict import DishTagger

    tagger = DishTagger.load(model_dir)
    load_s = time.perf_counter() - started
    for text in REVIEWS:  # warm-up
        tagger.tag(text)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        tagger.tag(REVIEWS[i % len(REVIEWS)])
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    batch = REVIEWS * 64
    t0 = time.perf_counter()
    tagger.tag_batch(batch)
    throughput = len(batch) / (time.perf_counter() - t0)
    return dict(import_and_load_s=round(load_s, 2), single_review_p50_ms=round(statistics.median(times), 1),
                single_review_p95_ms=round(times[int(0.95 * (len(times) - 1))], 1), single_review_min_ms=round(times[0], 1),
                batch_reviews_per_s=round(throughput, 1))


def measure_app_startup(timeout: float = 120.0) -> float:
    """Seconds from launching `python app.py` until it answers HTTP on its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - started < timeout:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                return round(time.monotonic() - started, 2)
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("app.py exited during start-up; run it by hand to see why.")
                time.sleep(0.1)
        raise RuntimeError(f"app.py did not answer within {timeout:.0f} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m albert_dish bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "checkpoints" / "dish-tagger")
    parser.add_argument("--app", action="store_true", help="also time `python app.py` until it serves (3 runs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = measure_tagger(args.model)
    if args.app:
        runs = [measure_app_startup() for _ in range(3)]
        result.update(app_startup_s=runs, app_startup_median_s=statistics.median(runs))
    result["threads"] = __import__("torch").get_num_threads()
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0
