"""Command line: `python -m albert_dish {pretrain,finetune,train,predict,evaluate,lexicon,compare,...}`."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path("data_toy")
COMMANDS = {
    "pretrain": "train the tokenizer and pretrain ALBERT (MLM + SOP, LAMB) on a corpus",
    "finetune": "fine-tune a pretrained encoder as a dish tagger",
    "train": "pretrain, then fine-tune (the whole pipeline)",
    "predict": "find dishes in texts or in a CSV/TXT file",
    "evaluate": "entity P/R/F1, token accuracy, seen/unseen dishes, gazetteer baseline",
    "lexicon": "(re)build a tagger's corpus lexicon from a corpus (done by finetune / train already)",
    "compare": "BERT vs ALBERT: parameters, latency, memory, training cost",
    "make-data": "regenerate data_toy/ (fixed seed) and check it",
    "reproduce": "train the shipped model, the ablation and BERT; evaluate; write checkpoints/",
    "bench": "time model loading, one-review latency, batch throughput and app start-up",
}


DELEGATED = {"compare": "albert_dish.compare", "make-data": "albert_dish.datagen", "reproduce": "albert_dish.report",
             "bench": "albert_dish.bench"}


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type, prefix: str = "") -> None:
    """One `--field` flag per config dataclass field (default: the preset's value)."""
    group = parser.add_argument_group(f"{prefix or config_cls.__name__} overrides (default: the preset's value)")
    for field in dataclasses.fields(config_cls):
        flag = f"--{prefix}{field.name.replace('_', '-')}"
        dest = f"{prefix.replace('.', '_')}{field.name}"
        kind = type(field.default)
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, dest=dest, type=kind, default=None, metavar=kind.__name__.upper())


def build_config(presets: dict[str, Any], preset: str, args: argparse.Namespace, prefix: str = ""):
    """The preset with every flag the user gave applied (`dataclasses.replace`, so validation runs again)."""
    base = presets[preset]
    overrides = {f.name: getattr(args, f"{prefix.replace('.', '_')}{f.name}") for f in dataclasses.fields(base)}
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


def build_parser() -> argparse.ArgumentParser:
    from albert_dish.finetune import FinetuneConfig
    from albert_dish.pretrain import PRESETS, PretrainConfig

    parser = argparse.ArgumentParser(prog="python -m albert_dish", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(f"  {k:<10} {v}" for k, v in COMMANDS.items()))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    stage = argparse.ArgumentParser(add_help=False)
    stage.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="named configuration (default tiny)")
    stage.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    stage.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    stage.add_argument("--json", action="store_true", help="print the result as JSON")
    corpus = argparse.ArgumentParser(add_help=False)
    corpus.add_argument("--corpus", type=Path, default=DATA / "restaurant_review.txt", help="one review per line")
    labelled = argparse.ArgumentParser(add_help=False)
    labelled.add_argument("--train", type=Path, default=DATA / "dish_name_train.csv", help="review,dish_name CSV")
    labelled.add_argument("--val", type=Path, default=DATA / "dish_name_val.csv", help="review,dish_name CSV")

    p = sub.add_parser("pretrain", parents=[stage, corpus], help=COMMANDS["pretrain"])
    add_config_flags(p, PretrainConfig)
    p = sub.add_parser("finetune", parents=[stage, corpus, labelled], help=COMMANDS["finetune"])
    p.add_argument("--pretrained", type=Path, default=None, help="pretrained folder (default OUT/albert-pretrained)")
    add_config_flags(p, FinetuneConfig)
    p = sub.add_parser("train", parents=[stage, corpus, labelled], help=COMMANDS["train"])
    add_config_flags(p, PretrainConfig, "pretrain.")
    add_config_flags(p, FinetuneConfig, "finetune.")

    p = sub.add_parser("predict", help=COMMANDS["predict"])
    p.add_argument("text", nargs="*", help="review text(s) to tag")
    p.add_argument("--model", type=Path, default=Path("checkpoints/dish-tagger"))
    p.add_argument("--input", type=Path, help="CSV with a review column, or a .txt file with one review per line")
    p.add_argument("--output", type=Path, help="CSV to write (all input columns + predicted_dish_name)")
    p.add_argument("--column", default="review", help="text column of --input (default review)")
    p.add_argument("--threshold", type=float, default=0.0, help="drop dishes scored below this (0-1)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("evaluate", help=COMMANDS["evaluate"])
    p.add_argument("--model", type=Path, default=Path("checkpoints/dish-tagger"))
    p.add_argument("--data", type=Path, nargs="+", default=[DATA / "dish_name_val.csv"], help="labelled CSV(s)")
    p.add_argument("--train", type=Path, default=DATA / "dish_name_train.csv",
                   help="training CSV: defines seen dishes and the gazetteer baseline")
    p.add_argument("--errors", type=Path, help="write misses and false alarms to this CSV")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("lexicon", parents=[corpus], help=COMMANDS["lexicon"])
    p.add_argument("--model", type=Path, default=Path("checkpoints/dish-tagger"))
    p.add_argument("--val", type=Path, default=DATA / "dish_name_val.csv",
                   help="validation CSV: its reviews are left out of the corpus, and it is scored before and after")

    for name in DELEGATED:
        sub.add_parser(name, help=COMMANDS[name], add_help=False)
    return parser


def run_training(args: argparse.Namespace) -> dict[str, Any]:
    """Run pretrain / finetune / train and return where the outputs went."""
    from albert_dish import finetune, pretrain

    started = time.monotonic()
    result: dict[str, Any] = {"out": str(args.out)}
    if args.command in ("pretrain", "train"):
        prefix = "pretrain." if args.command == "train" else ""
        cfg = build_config(pretrain.PRESETS, args.preset, args, prefix)
        done = args.out / "albert-pretrained"
        if args.command == "train" and args.resume and _finished(args.out / "pretrain") and (done / "config.json").exists():
            log.info("Pretraining already finished: %s", done)
            result["pretrained"] = str(done)
        else:
            exported = pretrain.run_pretrain(args.corpus, args.out, cfg, resume=args.resume)
            result["pretrained"] = str(exported) if exported else None
            if exported is None:
                result["state"] = "stopped"
                return result
    if args.command in ("finetune", "train"):
        prefix = "finetune." if args.command == "train" else ""
        cfg = build_config(finetune.PRESETS, args.preset, args, prefix)
        pretrained = getattr(args, "pretrained", None) or args.out / "albert-pretrained"
        exported = finetune.run_finetune(pretrained, args.train, args.val, args.out, cfg, resume=args.resume,
                                         corpus=args.corpus)
        result["tagger"] = str(exported) if exported else None
        if exported is None:
            result["state"] = "stopped"
            return result
        result.update(json.loads((exported / "results.json").read_text()))
    result["state"] = "finished"
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _finished(run_dir: Path) -> bool:
    status = run_dir / "status.json"
    return status.exists() and json.loads(status.read_text()).get("state") == "finished"


def run_lexicon(args: argparse.Namespace) -> int:
    """Rebuild `corpus_lexicon.json` of a tagger folder (tiny-preset thresholds) and print validation F1 without and
    with it."""
    from albert_dish.data import read_labelled
    from albert_dish.files import write_text_atomic
    from albert_dish.finetune import PRESETS, build_corpus_lexicon, score_tagger
    from albert_dish.lexicon import FILENAME
    from albert_dish.predict import DishTagger

    tagger, val = DishTagger.load(args.model, use_lexicon=False), read_labelled(args.val)
    tagger.lexicon = build_corpus_lexicon(tagger, args.corpus, val, PRESETS["tiny"])
    write_text_atomic(args.model / FILENAME, tagger.lexicon.to_json())
    print(f"{args.model / FILENAME}: {len(tagger.lexicon.add)} phrases to add, {len(tagger.lexicon.drop)} to drop; "
          f"validation F1 {score_tagger(tagger.without_lexicon(), val)['f1']:.4f} without, "
          f"{score_tagger(tagger, val)['f1']:.4f} with it")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from albert_dish.predict import DishTagger, format_dishes, tag_file

    if not args.text and not args.input:
        raise SystemExit("predict: give review text(s) or --input FILE (see --help).")
    tagger = DishTagger.load(args.model)
    if args.input:
        output = args.output or args.input.with_name(args.input.stem + "_tagged.csv")
        from tqdm import tqdm

        with tqdm(desc="tagging", unit="review") as bar:
            rows = tag_file(tagger, args.input, output, args.column, args.threshold,
                            on_progress=lambda done, total: (setattr(bar, "total", total), bar.update(done - bar.n)))
        summary = {"input": str(args.input), "output": str(output), "reviews": len(rows),
                   "with_dishes": sum(bool(r["predicted_dish_name"]) for r in rows)}
        print(json.dumps(summary) if args.json else f"Tagged {summary['reviews']} reviews "
              f"({summary['with_dishes']} with dishes) -> {output}")
        return 0
    results = []
    for text, spans in zip(args.text, tagger.tag_batch(args.text)):
        spans = [s for s in spans if s.score >= args.threshold]
        results.append({"text": text, "dishes": [dataclasses.asdict(s) for s in spans]})
        if not args.json:
            found = ", ".join(f"{s.text} [{s.start}:{s.end}] {s.score:.2f}" for s in spans) or "(no dishes)"
            print(f"{format_dishes(spans) or '-'}\t{found}")
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False, indent=2))
    return 0


log = logging.getLogger("albert_dish")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code. Errors are printed as one clear line, not a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv[:1] and argv[0] in DELEGATED:  # these commands parse their own arguments
        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the weight-loading report of a new head is expected, not a problem
    try:
        if args.command in ("pretrain", "finetune", "train"):
            with contextlib.redirect_stdout(sys.stderr):  # progress logs to stderr; stdout holds only the result
                result = run_training(args)
            print(json.dumps(result, indent=2) if args.json else
                  "\n".join(f"{k}: {v}" for k, v in result.items() if not isinstance(v, list)))
            return 0 if result["state"] == "finished" else 3
        if args.command == "predict":
            return run_predict(args)
        if args.command == "lexicon":
            return run_lexicon(args)
        if args.command == "evaluate":
            from albert_dish.evaluate import main as evaluate_main

            return evaluate_main(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
