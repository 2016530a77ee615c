"""albert-dish web app: train ALBERT on your reviews, find dishes in text, and compare BERT with ALBERT.

Run `python app.py` and open http://127.0.0.1:7860. This file only wires the UI; the work is in `albert_dish`.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path

import gradio as gr

from albert_dish import jobs, plots

log = logging.getLogger("albert_dish.app")
EXAMPLES = [
    "The khao soi was great but the spring rolls were soggy.",
    "ngl the birria tacos slapped, and the horchata was perfect",
    "We shared the margherita pizza and a tiramisu. Service was slow but friendly.",
    "Ordered chicken tikka masala, garlic naan and a mango lassi — the naan was burnt.",
    "Honestly the best tonkotsu ramen in town. Get the gyoza too!",
    "Oh great, another 40 minute wait for lukewarm pho.",
    "Lovely terrace, friendly staff, reasonable prices. Nothing more to say.",
    "The crème brûlée was divine; the coq au vin less so.",
    "Their pan-fried dumplings and dan dan noodles are worth the trip to Noodle Palace.",
    "Brunch: eggs benedict was cold, shakshuka was amazing, coffee mediocre.",
]
THEME = gr.themes.Soft(primary_hue="amber", secondary_hue="orange")
_taggers: dict[str, object] = {}
_tagger_lock = threading.Lock()


def get_tagger(model_dir: str):
    """Load a tagger once per folder (the shipped one loads in the background while the server starts)."""
    from albert_dish.predict import DishTagger

    with _tagger_lock:
        if model_dir not in _taggers:
            try:
                _taggers[model_dir] = DishTagger.load(model_dir)
            except (FileNotFoundError, ValueError, OSError) as err:
                raise gr.Error(f"Could not load the model {model_dir}: {err}") from None
        return _taggers[model_dir]


# ---------- Find dishes ----------
def find_dishes(text: str, model_dir: str, threshold: float):
    """Highlight dishes in each non-empty line of `text`; also a table of dish, confidence and position."""
    reviews = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not reviews:
        raise gr.Error("Paste at least one review (one per line), or click an example below.")
    tagger = get_tagger(model_dir or str(jobs.SHIPPED_TAGGER))
    joined, entities, rows = "", [], []
    for number, (review, spans) in enumerate(zip(reviews, tagger.tag_batch(reviews)), start=1):
        offset = len(joined)
        for span in spans:
            if span.score >= threshold:
                entities.append({"entity": "DISH", "start": offset + span.start, "end": offset + span.end})
                rows.append([number, span.text, round(span.score, 3), span.start, span.end])
        joined += review + ("\n\n" if number < len(reviews) else "")
    found = f"Found {len(rows)} dish mention(s) in {len(reviews)} review(s)." if rows else \
        "No dishes found above the confidence threshold. Try lowering it."
    return {"text": joined, "entities": entities}, rows, found


def tag_uploaded_file(file: str | None, model_dir: str, threshold: float, progress=gr.Progress()):
    """Tag an uploaded CSV (with a `review` column) or TXT (one review per line); return the CSV and a chart."""
    from albert_dish.data import split_dishes
    from albert_dish.predict import tag_file

    if not file:
        raise gr.Error("Upload a CSV with a 'review' column, or a .txt file with one review per line.")
    tagger = get_tagger(model_dir or str(jobs.SHIPPED_TAGGER))
    output = Path(tempfile.mkdtemp(prefix="albert-dish-")) / f"{Path(file).stem}_tagged.csv"
    progress(0, desc="Tagging reviews")
    try:
        rows = tag_file(tagger, Path(file), output, min_score=threshold,
                        on_progress=lambda done, total: progress(done / total, desc=f"Tagged {done}/{total} reviews"))
    except (ValueError, FileNotFoundError, UnicodeDecodeError) as err:
        raise gr.Error(f"Could not read {Path(file).name}: {err}") from None
    mentions = [split_dishes(r["predicted_dish_name"]) for r in rows]
    summary = f"Tagged {len(rows)} reviews; {sum(bool(m) for m in mentions)} mention at least one dish."
    return str(output), plots.build_top_dishes_figure(mentions), summary


# ---------- Train ----------
def _settings(corpus, train, val, preset, *values) -> dict:
    from albert_dish.data import read_corpus, read_labelled

    files = {"corpus": corpus or jobs.DATA / "restaurant_review.txt", "train": train or jobs.DATA / "dish_name_train.csv",
             "val": val or jobs.DATA / "dish_name_val.csv"}
    try:  # check uploads now, so a bad file is reported here rather than in the log
        read_corpus(Path(files["corpus"]))
        for key in ("train", "val"):
            data = read_labelled(Path(files[key]))
            if data.missing:
                gr.Warning(f"{len(data.missing)} listed dish(es) do not occur in their review, e.g. {data.missing[0]}; "
                           "they are not labelled.")
    except (ValueError, FileNotFoundError) as err:
        raise gr.Error(str(err)) from None
    settings = {key: str(Path(value).resolve()) for key, value in files.items()}
    settings["preset"] = preset
    for key, value in zip(jobs.SETTING_FIELDS, values):
        if value is None or value <= 0:
            raise gr.Error(f"'{key}' must be a positive number; leave the preset's value if unsure.")
        settings[key] = value if "learning_rate" in key else int(value)
    settings["finetune.max_length"] = settings["pretrain.max_length"]
    return settings


def start(command: str, run_name: str | None, *inputs):
    """Start a job and select its run."""
    settings = _settings(*inputs)
    if command == "finetune":
        chosen = Path(jobs.RUNS) / run_name / "albert-pretrained" if run_name else None
        settings["pretrained"] = str((chosen if chosen and chosen.exists() else jobs.SHIPPED_PRETRAINED).resolve())
    try:
        job = jobs.start_job(command, settings)
    except jobs.JobError as err:
        raise gr.Error(str(err)) from None
    gr.Info(f"Started {command} in run '{job['run']}'.")
    return gr.update(choices=jobs.list_runs(), value=job["run"])


def resume(run_name: str | None):
    if not run_name:
        raise gr.Error("Pick the run to resume in 'Runs'.")
    try:
        job = jobs.resume_job(run_name)
    except jobs.JobError as err:
        raise gr.Error(str(err)) from None
    gr.Info(f"Resuming {job['command']} in run '{run_name}'.")
    return gr.update(choices=jobs.list_runs(), value=run_name)


def stop():
    try:
        job = jobs.stop_job()
    except jobs.JobError as err:
        raise gr.Error(str(err)) from None
    gr.Info(f"Stopping run '{job['run']}' after the current step; a checkpoint is saved so it can be resumed.")


def show_run(run_name: str | None, last_seen: str | None):
    """Refresh curves, status, log and the model list of the selected (or running) run, when anything changed."""
    active = jobs.active_job()
    run_name = run_name or (active["run"] if active else None)
    view = jobs.read_run(run_name) if run_name else None
    models = jobs.list_models()
    key = (f"{run_name}:{len(view.pretrain)}:{len(view.finetune)}:{view.status}:{view.running}:{view.log_tail}"
           if view else "none") + f":{len(models)}"
    if key == last_seen:
        return (gr.skip(),) * 9 + (last_seen,)
    if view is None:
        return (plots.build_pretrain_loss_figure([]), plots.build_pretrain_accuracy_figure([]),
                plots.build_learning_rate_figure([], []), plots.build_finetune_figure([]), gr.skip(),
                "No training has run here yet. Press **Train both** to start.", "", gr.update(interactive=True),
                gr.update(choices=models), key)
    return (plots.build_pretrain_loss_figure(view.pretrain), plots.build_pretrain_accuracy_figure(view.pretrain),
            plots.build_learning_rate_figure(view.pretrain, view.finetune), plots.build_finetune_figure(view.finetune),
            gr.update(choices=jobs.list_runs(), value=run_name), jobs.describe_status(view), view.log_tail,
            gr.update(interactive=not view.running), gr.update(choices=models), key)


# ---------- BERT vs ALBERT ----------
def load_comparison():
    """Parameter tables and charts (counted on the meta device: seconds), plus the cached same-task result."""
    from albert_dish import compare

    report = compare.build_report(run_latency=False)
    return (compare.build_param_figure(report.params), compare.params_frame(report),
            compare.explain(report), compare.same_task_frame(report))


def run_latency(progress=gr.Progress()):
    """Measure BERT vs ALBERT latency and memory on this machine."""
    from albert_dish import compare

    progress(0, desc="Warming up")
    report = compare.build_report(run_latency=True, on_progress=lambda f, m: progress(f, desc=m))
    return (compare.build_latency_figure(report.latency), compare.build_memory_figure(report.latency),
            compare.latency_frame(report), compare.explain(report))


def show_job_settings():
    """On page load, show the running job's preset and numbers in the Train form (a reload would show the defaults)."""
    job = jobs.active_job()
    return jobs.form_values(job) if job else [gr.skip()] * (1 + len(jobs.SETTING_FIELDS))


def device_note() -> str:
    from albert_dish.model import describe_device

    return f"**Training device:** {describe_device()}"


with gr.Blocks(title="albert-dish: find dishes in restaurant reviews") as demo:
    gr.Markdown("# albert-dish\nTrain a compact **ALBERT** language model on restaurant reviews, then let it "
                "find the **dish names** in any review.")
    with gr.Tabs():
        with gr.Tab("Train", id="train"):
            device = gr.Markdown()
            with gr.Row():
                corpus = gr.File(label="Pretraining corpus (.txt, one review per line) — default: data_toy",
                                 file_types=[".txt"], type="filepath")
                train_file = gr.File(label="Labelled training CSV (review,dish_name)", file_types=[".csv"],
                                     type="filepath")
                val_file = gr.File(label="Labelled validation CSV (review,dish_name)", file_types=[".csv"],
                                   type="filepath")
            with gr.Row():
                preset = gr.Dropdown(["tiny", "small", "base", "test"], value="tiny", label="Preset",
                                     info="tiny: ~8-9 min on 2 CPU cores with bf16, ~20 min without; small/base: GPU")
                defaults = jobs.preset_values("tiny")
                numbers = [gr.Number(label=label, value=value, precision=None if "LR" in label else 0, min_width=120)
                           for label, value in zip(("Pretraining steps", "Fine-tuning epochs", "Pretraining batch",
                                                    "Fine-tuning batch", "Pretraining LR (LAMB)",
                                                    "Fine-tuning LR (LAMB)", "Max length (tokens)"), defaults)]
            with gr.Row():
                pretrain_btn = gr.Button("Pretrain", variant="secondary")
                finetune_btn = gr.Button("Fine-tune", variant="secondary")
                train_btn = gr.Button("Train both", variant="primary")
                resume_btn = gr.Button("Resume")
                stop_btn = gr.Button("Stop", variant="stop")
            with gr.Row():
                run_picker = gr.Dropdown(choices=jobs.list_runs(), value=None, label="Runs", scale=1,
                                         info="pick a past run to see its curves; the running job shows by default")
                status = gr.Markdown("No training has run here yet.", elem_id="train-status")
            with gr.Row():
                loss_plot = gr.Plot(label="Pretraining loss")
                accuracy_plot = gr.Plot(label="Pretraining accuracy")
            with gr.Row():
                lr_plot = gr.Plot(label="Learning rate")
                finetune_plot = gr.Plot(label="Fine-tuning")
            log_box = gr.Textbox(label="Log (last lines)", lines=8, max_lines=8, interactive=False)
            last_seen = gr.State(None)
            timer = gr.Timer(1.5)

        with gr.Tab("Find dishes", id="find"):
            with gr.Row():
                with gr.Column(scale=3):
                    text = gr.Textbox(label="Reviews (one per line)", lines=6, elem_id="review-input",
                                      placeholder="Paste one or more reviews, one per line…")
                with gr.Column(scale=1):
                    model_picker = gr.Dropdown(choices=jobs.list_models(), value=str(jobs.SHIPPED_TAGGER),
                                               label="Model", allow_custom_value=True)
                    threshold = gr.Slider(0, 1, value=0.5, step=0.05, label="Confidence threshold")
                    find_btn = gr.Button("Find dishes", variant="primary", elem_id="find-button")
            gr.Examples(EXAMPLES, inputs=[text], label="Examples (click one)")
            summary = gr.Markdown()
            highlighted = gr.HighlightedText(label="Dishes found", color_map={"DISH": "#f59e0b"},
                                             combine_adjacent=False, elem_id="highlighted")
            table = gr.Dataframe(headers=["review #", "dish", "confidence", "start", "end"], label="Dishes",
                                 interactive=False, max_height=300)
            gr.Markdown("### Batch: tag a whole file")
            with gr.Row():
                upload = gr.File(label="CSV with a 'review' column, or .txt with one review per line",
                                 file_types=[".csv", ".txt"], type="filepath", elem_id="batch-upload")
                tagged = gr.File(label="Download: tagged CSV", elem_id="batch-download")
            batch_btn = gr.Button("Tag file", elem_id="batch-button")
            batch_summary = gr.Markdown()
            top_plot = gr.Plot(label="Most mentioned dishes")

        with gr.Tab("BERT vs ALBERT", id="compare"):
            explanation = gr.Markdown()
            param_plot = gr.Plot(label="Parameters")
            param_table = gr.Dataframe(label="Parameter counts (computed from the real model classes)",
                                       interactive=False)
            latency_btn = gr.Button("Measure latency on this machine", variant="primary")
            with gr.Row():
                latency_plot = gr.Plot(label="Latency")
                memory_plot = gr.Plot(label="Memory")
            latency_table = gr.Dataframe(value=[["Press 'Measure latency on this machine' (about 45 s on 2 CPU cores)."]],
                                         headers=["latency"], label="Latency (ms)", interactive=False)
            same_task = gr.Dataframe(label="Same dish task, trained both ways", interactive=False)

    train_inputs = [corpus, train_file, val_file, preset, *numbers]
    preset.input(jobs.preset_values, [preset], numbers, api_visibility="private")
    for button, command in ((pretrain_btn, "pretrain"), (finetune_btn, "finetune"), (train_btn, "train")):
        button.click(lambda run, *a, c=command: start(c, run, *a), [run_picker, *train_inputs], [run_picker],
                     api_visibility="private")
    resume_btn.click(resume, [run_picker], [run_picker], api_visibility="private")
    stop_btn.click(stop, None, None, api_visibility="private")
    refresh_outputs = [loss_plot, accuracy_plot, lr_plot, finetune_plot, run_picker, status, log_box, train_btn,
                       model_picker, last_seen]
    timer.tick(show_run, [run_picker, last_seen], refresh_outputs, api_visibility="private", show_progress="hidden")
    run_picker.input(lambda run: show_run(run, None), [run_picker], refresh_outputs, api_visibility="private",
                     show_progress="hidden")
    find_btn.click(find_dishes, [text, model_picker, threshold], [highlighted, table, summary], api_name="find_dishes")
    text.submit(find_dishes, [text, model_picker, threshold], [highlighted, table, summary], api_visibility="private")
    batch_btn.click(tag_uploaded_file, [upload, model_picker, threshold], [tagged, top_plot, batch_summary],
                    api_name="tag_file")
    latency_btn.click(run_latency, None, [latency_plot, memory_plot, latency_table, explanation],
                      api_name="measure_latency")
    demo.load(device_note, None, device, api_visibility="private")
    demo.load(show_job_settings, None, [preset, *numbers], api_visibility="private")
    demo.load(load_comparison, None, [param_plot, param_table, explanation, same_task], api_visibility="private")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if (jobs.SHIPPED_TAGGER / "config.json").exists():  # load while the server starts; a first click waits for it
        threading.Thread(target=get_tagger, args=(str(jobs.SHIPPED_TAGGER),), daemon=True).start()
    demo.queue(default_concurrency_limit=4).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), theme=THEME)
