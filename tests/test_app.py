"""The real app, served by `python app.py`, driven in Debian's Chromium by Playwright and called by gradio_client."""
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REVIEW = "The khao soi was great but the spring rolls were soggy."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_status(page, text: str, timeout: int) -> None:
    """Wait until #train-status shows `text`; the element may be absent for a moment while the page (re)renders."""
    page.wait_for_function("t => document.querySelector('#train-status')?.innerText.includes(t)", arg=text,
                           timeout=timeout)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """Start `python app.py` on a free port with its runs in a temp folder; yield its URL."""
    runs = tmp_path_factory.mktemp("runs")
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "ALBERT_DISH_RUNS": str(runs),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log = open(runs / "app.log", "w")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=runs, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            assert process.poll() is None, (runs / "app.log").read_text()[-3000:]
            time.sleep(0.25)
    else:
        pytest.fail("the app did not start within 60 s:\n" + (runs / "app.log").read_text()[-3000:])
    print(f"\napp ready in {time.monotonic() - started:.1f} s")
    yield url, runs
    process.terminate()
    process.wait(timeout=20)
    from albert_dish import jobs  # a failed test can leave its training job running: end it with the app

    job = jobs.active_job(runs)
    if job:
        os.killpg(job["pid"], signal.SIGTERM)


@pytest.fixture(scope="module")
def page(app_url):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        page.goto(app_url[0])
        page.get_by_role("tab", name="Train").wait_for()
        yield page
        assert not errors, errors
        browser.close()


def test_page_has_three_tabs_and_no_error(page):
    tabs = [page.get_by_role("tab", name=n) for n in ("Train", "Find dishes", "BERT vs ALBERT")]
    assert all(t.is_visible() for t in tabs)
    page.get_by_text("Training device:").wait_for()
    assert page.locator(".toast-body.error").count() == 0
    page.screenshot(path=ARTIFACTS / "tab-train.png", full_page=True)


def test_find_dishes_highlights_the_dish(page):
    page.get_by_role("tab", name="Find dishes").click()
    page.locator("#review-input textarea").fill(REVIEW)
    page.locator("#find-button").click()
    marked = page.locator("#highlighted mark, #highlighted .textspan.hl, #highlighted [class*='hl']")
    page.get_by_text("dish mention(s)").wait_for(timeout=30_000)
    text = page.locator("#highlighted").inner_text()
    assert "khao soi" in text
    assert marked.count() >= 1
    page.screenshot(path=ARTIFACTS / "tab-find-dishes.png", full_page=True)


def test_batch_csv_upload_gives_tagged_csv(page, tmp_path):
    source = tmp_path / "reviews.csv"
    with open(source, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "review"])
        writer.writerows([[1, REVIEW], [2, "Friendly staff and cheap beer."], [3, "The pad thai was too sweet."]])
    page.get_by_role("tab", name="Find dishes").click()
    page.locator("#batch-upload input[type=file]").set_input_files(str(source))
    page.locator("#batch-button").click()
    link = page.locator("#batch-download a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    target = tmp_path / "tagged.csv"
    download.value.save_as(target)
    with open(target, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert "khao soi" in rows[0]["predicted_dish_name"].lower()
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(p => p.data && p.data.length)",
                           timeout=30_000)
    page.screenshot(path=ARTIFACTS / "tab-find-dishes-batch.png", full_page=True)


def test_compare_tab_shows_parameter_counts(page):
    page.get_by_role("tab", name="BERT vs ALBERT").click()
    page.get_by_text("ALBERT-base").first.wait_for(timeout=30_000)
    page.screenshot(path=ARTIFACTS / "tab-bert-vs-albert.png", full_page=True)


def test_training_curve_grows_and_stop_stops_it(page, app_url):
    runs = Path(app_url[1])
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("Preset").click()
    page.get_by_role("option", name="test").click()
    page.get_by_label("Pretraining steps").wait_for()
    page.wait_for_timeout(500)  # the preset fills the fields; then override the steps
    page.get_by_label("Pretraining steps").fill("3000")
    page.get_by_role("button", name="Train both").click()
    status = page.locator("#train-status")
    wait_for_status(page, "Pretraining: running", timeout=90_000)
    first = page.locator(".js-plotly-plot").first
    page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot');"
                           " return p && p.data && p.data.length && p.data[0].x.length >= 2 }", timeout=90_000)
    n1 = first.evaluate("p => p.data[0].x.length")
    page.wait_for_function(f"() => document.querySelector('.js-plotly-plot')?.data?.[0]?.x.length > {n1}", timeout=60_000)
    page.screenshot(path=ARTIFACTS / "tab-train-running.png", full_page=True)
    page.reload()  # the job belongs to the app, not the page: a reloaded page re-attaches to it
    page.get_by_role("tab", name="Train").wait_for()
    wait_for_status(page, "Pretraining: running", timeout=30_000)
    page.get_by_role("tab", name="Train").click()
    # the form shows the running job's settings again, not the preset defaults
    page.wait_for_function("() => document.querySelector('input[aria-label=\"Pretraining steps\"]')?.value === '3000'",
                           timeout=30_000)
    page.get_by_role("button", name="Train both").wait_for()
    page.get_by_role("button", name="Stop").click()
    wait_for_status(page, "stopped", timeout=60_000)
    assert "stopped" in status.inner_text()
    run = next(runs.glob("run-*"))
    assert list((run / "pretrain" / "checkpoints").glob("checkpoint-*/trainer_state.json"))
    page.screenshot(path=ARTIFACTS / "tab-train-stopped.png", full_page=True)


def test_gradio_client_calls_the_prediction_api(app_url):
    from gradio_client import Client

    client = Client(app_url[0], verbose=False)
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/find_dishes", "/tag_file"} <= set(endpoints)
    highlighted, table, summary = client.predict(REVIEW, str(ROOT / "checkpoints" / "dish-tagger"), 0.5,
                                                 api_name="/find_dishes")
    dishes = [row[1].lower() for row in table["data"]]
    assert "khao soi" in dishes
    assert "dish mention" in summary
