"""Plotly figures of training curves and predictions (no gradio here; the app only places them)."""
from __future__ import annotations

from collections import Counter
from typing import Any

import plotly.graph_objects as go

Records = list[dict[str, Any]]


def _figure(title: str, y_title: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=y_title, height=300, template="plotly_white",
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def _add(fig: go.Figure, records: Records, key: str, name: str, dash: str | None = None) -> None:
    points = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
    if points:
        x, y = zip(*points)
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers" if len(x) < 30 else "lines",
                                 line=dict(dash=dash)))


def build_pretrain_loss_figure(records: Records) -> go.Figure:
    """Pretraining loss: total, MLM and SOP (training), and held-out loss."""
    fig = _figure("Pretraining loss", "loss")
    for key, name in (("loss", "total"), ("mlm_loss", "masked LM"), ("sop_loss", "sentence order")):
        _add(fig, records, key, name)
    _add(fig, records, "eval_loss", "held-out total", "dot")
    return fig


def build_pretrain_accuracy_figure(records: Records) -> go.Figure:
    """Masked-LM and sentence-order accuracy, training and held-out."""
    fig = _figure("Pretraining accuracy", "accuracy")
    _add(fig, records, "mlm_accuracy", "masked LM")
    _add(fig, records, "sop_accuracy", "sentence order")
    _add(fig, records, "eval_mlm_accuracy", "masked LM (held-out)", "dot")
    _add(fig, records, "eval_sop_accuracy", "sentence order (held-out)", "dot")
    fig.update_yaxes(range=[0, 1])
    return fig


def build_learning_rate_figure(pretrain: Records, finetune: Records) -> go.Figure:
    """Learning-rate schedules (linear warm-up, then decay) of both stages."""
    fig = _figure("Learning rate", "learning rate")
    _add(fig, pretrain, "learning_rate", "pretraining")
    _add(fig, finetune, "learning_rate", "fine-tuning")
    return fig


def build_finetune_figure(records: Records) -> go.Figure:
    """Fine-tuning loss and, per epoch, validation entity F1 and token accuracy (then the self-training round's)."""
    fig = _figure("Fine-tuning: loss and validation scores", "loss")
    _add(fig, records, "loss", "training loss")
    _add(fig, records, "eval_loss", "validation loss", "dot")
    for key, name in (("eval_f1", "validation entity F1"), ("eval_token_accuracy", "validation token accuracy")):
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            x, y = zip(*points)
            fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers", yaxis="y2"))
    fig.update_layout(yaxis2=dict(title="score", overlaying="y", side="right", range=[0, 1]))
    starts = {}
    for r in records:
        if r.get("round"):
            starts.setdefault(r["round"], r["step"])
    for name, step in starts.items():
        fig.add_vline(x=step, line_dash="dash", line_color="gray", annotation_text=name)
    return fig


def build_top_dishes_figure(dishes_per_review: list[list[str]], top: int = 15) -> go.Figure:
    """Horizontal bars of the most mentioned dishes (case-insensitive, counted once per review)."""
    counts = Counter(name for dishes in dishes_per_review for name in {d.lower() for d in dishes})
    names, values = zip(*counts.most_common(top)) if counts else ((), ())
    fig = go.Figure(go.Bar(x=list(values)[::-1], y=list(names)[::-1], orientation="h", marker_color="#d97706"))
    fig.update_layout(title="Most mentioned dishes", xaxis_title="reviews mentioning it", height=420,
                      template="plotly_white", margin=dict(l=160, r=20, t=50, b=40))
    return fig
