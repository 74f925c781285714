"""Charts and Monitor texts are pure functions: build them from small lists and look inside."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from conftest import ROOT
from studio import plots
from studio.training.progress import Snapshot
from studio.ui import monitor_view as mv

RUN = [
    {"step": 1, "epoch": 0.2, "loss": 0.70, "learning_rate": 1e-4, "samples_per_second": 30.0},
    {"step": 3, "epoch": 0.6, "loss": 0.60, "learning_rate": 2e-4, "samples_per_second": 32.0},
    {"step": 5, "epoch": 1.0, "event": "epoch_end"},
    {"step": 5, "epoch": 1.0, "eval_loss": 0.55, "eval_accuracy": 0.7, "eval_macro_f1": 0.68},
    {"step": 7, "epoch": 1.4, "loss": 0.40, "learning_rate": 1e-4, "samples_per_second": 31.0},
    {"step": 10, "epoch": 2.0, "event": "epoch_end"},
    {"step": 10, "epoch": 2.0, "eval_loss": 0.50, "eval_accuracy": 0.8, "eval_macro_f1": 0.79},
]
OVERFIT = RUN + [
    {"step": 12, "epoch": 2.4, "loss": 0.20, "learning_rate": 5e-5},
    {"step": 15, "epoch": 3.0, "eval_loss": 0.65, "eval_accuracy": 0.78},
]


@dataclass
class Group:
    name: str
    trainable: int
    frozen: int


def traces(fig) -> dict:
    return {t.name: t for t in fig.data}


def test_loss_figure_has_both_curves_and_epoch_lines():
    fig = plots.loss_figure(RUN, max_steps=10)
    curves = traces(fig)
    assert list(curves["training loss"].x) == [1, 3, 7]
    assert list(curves["validation loss"].y) == [0.55, 0.50]
    assert [s.x0 for s in fig.layout.shapes] == [5, 10], "one dotted line per epoch boundary"
    assert fig.layout.xaxis.range[1] >= 10, "fixed axis: the curve grows towards the end"


@pytest.mark.parametrize("build, args, words", [
    (plots.loss_figure, ([],), "Waiting"),
    (plots.metric_figure, ([{"step": 1, "loss": 1.0}],), "after the first evaluation"),
    (plots.lr_figure, ([],), "learning-rate"),
    (plots.label_distribution_figure, ({},), "No labels"),
    (plots.token_length_figure, ([], 128, 0.0), "No texts"),
    (plots.layer_stack_figure, ([],), "Load a model"),
    (plots.confusion_figure, ([], [], "t"), "Nothing"),
])
def test_empty_inputs_give_a_figure_that_says_why(build, args, words):
    fig = build(*args)
    assert not fig.data
    assert words in fig.layout.annotations[0].text


def test_metric_and_lr_figures():
    metric = traces(plots.metric_figure(RUN))
    assert list(metric["accuracy"].y) == [0.7, 0.8] and list(metric["macro-F1"].x) == [5, 10]
    lr = plots.lr_figure(RUN).data[0]
    assert list(lr.y) == [1e-4, 2e-4, 1e-4]


def test_data_figures():
    counts = {"train": {"neg": 10, "pos": 30}, "validation": {"neg": 3, "pos": 7}}
    bars = traces(plots.label_distribution_figure(counts))
    assert list(bars["train"].y) == [10, 30] and list(bars["validation"].x) == ["neg", "pos"]
    fig = plots.token_length_figure([5, 10, 200], 128, 1 / 3)
    assert fig.layout.shapes[0].x0 == 128
    assert "33% of texts are cut" in fig.layout.title.text


@pytest.mark.parametrize("groups, learn", [
    ([Group("embeddings", 0, 100), Group("block 0", 0, 50), Group("block 1", 50, 0), Group("head", 2, 0)],
     [0.0, 0.0, 1.0, 1.0]),
    ([Group("embeddings", 0, 100), Group("block 0", 5, 95), Group("head", 2, 0)], [0.0, 0.05, 1.0]),
])
def test_layer_stack_shows_the_share_that_learns(groups, learn):
    fig = plots.layer_stack_figure(groups)
    shares = traces(fig)
    assert list(shares["learns"].x) == pytest.approx(learn)
    assert list(shares["frozen"].customdata) == [g.frozen for g in groups]
    assert list(shares["learns"].y)[0].startswith("embeddings")


def test_confusion_figure_keeps_counts():
    fig = plots.confusion_figure([[5, 1], [2, 7]], ["a", "b"], "Base")
    assert [list(r) for r in fig.data[0].z] == [[5, 1], [2, 7]] and fig.layout.title.text == "Base"


@pytest.mark.parametrize("n, text", [(912, "912"), (338_690, "338.7K"), (22_713_986, "22.7M"),
                                     (1_500_000_000, "1.5B")])
def test_short_count(n, text):
    assert plots.short_count(n) == text


@pytest.mark.parametrize("records, expected", [
    (RUN, None),                                     # both losses fall: fine
    (OVERFIT, "rose from 0.500 (step 10) to 0.650"),  # validation up, training down
    (RUN[:4], None),                                 # one evaluation: too early to say
    (OVERFIT[:-2] + [{"step": 12, "loss": 0.9}, {"step": 15, "eval_loss": 0.65}], None),  # both rise
])
def test_overfitting_note(records, expected):
    note = mv.overfitting_note(records)
    assert (note is None) if expected is None else (expected in note)


@pytest.mark.parametrize("seconds, text", [(None, "–"), (5, "0:05"), (65, "1:05"), (3725, "1:02:05")])
def test_format_duration(seconds, text):
    assert mv.format_duration(seconds) == text


@pytest.mark.parametrize("snap, words", [
    (Snapshot(3, (), "queued", queue_position=2), ["Waiting in line", "number 2 in line"]),
    (Snapshot(3, (), "failed", error="data.csv line 3: no label."), ["Failed", "line 3: no label"]),
    (Snapshot(3, (), "interrupted"), ["Interrupted", "Resume"]),
    (Snapshot(3, (), "running", message="Loading model"), ["Training", "Loading model"]),
    (Snapshot(3, (), "completed"), ["Finished"]),
])
def test_status_markdown_says_what_the_user_needs(snap, words):
    text = mv.status_markdown(snap, "run-1", "reviews")
    assert all(w in text for w in words) and "run-1" in text


def test_progress_markdown_has_step_speed_and_scores():
    snap = Snapshot(9, tuple(RUN), "running", step=7, max_steps=10, epoch=1.4, started_at=0.0)
    text = mv.progress_markdown(snap)
    for part in ("7 / 10", "1.40", "ETA", "31.0 samples/s", "0.4000", "80.0%"):
        assert part in text


def test_final_markdown():
    text = mv.final_markdown({"wall_time_seconds": 65, "eval": {"accuracy": 0.9, "macro_f1": 0.85}})
    assert "1:05" in text and "90.0%" in text and "85.0%" in text
    assert mv.final_markdown(None) == ""
    stopped = mv.final_markdown({"state": "stopped", "wall_time_seconds": 20})
    assert "0:20" in stopped and "Final scores" not in stopped and "no final scores" in stopped


def test_empty_charts_of_an_ended_run_do_not_say_waiting():
    from studio import plots
    def text(fig):
        return " ".join(a.text for a in fig.layout.annotations)
    assert "Waiting" in text(plots.loss_figure([]))
    for figure in (plots.loss_figure, plots.metric_figure, plots.lr_figure):
        assert "ended before" in text(figure([], ended=True)), figure.__name__


def test_coerce_train_casts_ui_values_to_field_types():
    from studio.errors import ConfigError
    from studio.ui.actions import coerce_train
    spec = coerce_train({"freeze_depth": 3.0, "epochs": 0.5, "batch_size": "8", "method": "lora",
                         "cache_frozen": 1, "unknown": 5, "seed": None})
    assert (spec.freeze_depth, spec.epochs, spec.batch_size, spec.method) == (3, 0.5, 8, "lora")
    assert spec.cache_frozen is True and spec.seed == 42
    with pytest.raises(ConfigError, match="learning_rate"):
        coerce_train({"learning_rate": "fast"})


def test_engine_and_view_modules_import_without_gradio():
    code = ("import sys; import studio.plots, studio.ui.monitor_view, studio.ui.actions, studio.ui.session; "
            "assert 'gradio' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("epochs,labelled", [(5, 5), (30, 10), (23, 8)])
def test_long_runs_label_every_kth_epoch_so_labels_do_not_overlap(epochs, labelled):
    from studio import plots
    records = [{"step": 10 * (e + 1), "loss": 1.0} for e in range(epochs)]
    records += [{"step": 10 * (e + 1), "epoch": e + 1, "event": "epoch_end"} for e in range(epochs)]
    fig = plots.loss_figure(records)
    texts = [a.text for a in fig.layout.annotations if a.text and a.text.startswith("epoch")]
    assert len(fig.layout.shapes) == epochs, "every epoch keeps its line"
    assert len(texts) == labelled and texts[-1] == f"epoch {epochs}"
