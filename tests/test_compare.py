"""Scoring base vs tuned on a labelled set: metrics, confusion matrices, disagreements."""

import numpy as np
import pytest

from studio.compare import score
from studio.errors import JobError


def test_score_compares_both_models_on_the_same_rows():
    labels = ["bad", "good"]
    gold = ["good", "good", "bad", "bad"]
    base = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.4, 0.6]])   # right on rows 1, 2
    tuned = np.array([[0.1, 0.9], [0.2, 0.8], [0.9, 0.1], [0.7, 0.3]])  # right everywhere
    result = score(labels, ["a", "b", "c", "d"], gold, base, tuned)
    summary = result.summary.set_index("metric")
    assert summary.loc["accuracy", "base"] == pytest.approx(0.5)
    assert summary.loc["accuracy", "tuned"] == pytest.approx(1.0)
    assert summary.loc["accuracy", "delta"] == pytest.approx(0.5)
    assert result.confusion_tuned.tolist() == [[2, 0], [0, 2]]
    assert result.confusion_base.tolist() == [[1, 1], [1, 1]]
    assert result.disagreements["text"].tolist() == ["a", "d"]
    assert result.per_class.set_index("label").loc["good", "tuned_f1"] == pytest.approx(1.0)
    assert set(result.to_dict()) >= {"summary", "per_class", "confusion_base", "disagreements"}


def test_unknown_gold_labels_are_named():
    with pytest.raises(JobError, match="maybe"):
        score(["a", "b"], ["t"], ["maybe"], np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))


def test_a_generation_run_is_not_loaded_as_a_classifier(tmp_path):
    """`studio predict` on a text generation run: a message, not a KeyError on 'labels'."""
    import json
    from studio.compare import ClassifierPair
    from studio.config import RunConfig
    from studio.training.runs import Run
    run = Run(tmp_path / "20261202-000000-gen-0000")
    (run.dir / "model").mkdir(parents=True)
    RunConfig(task="generate", model="smollm2-135m-instruct").save(run.dir / "config.yaml")
    (run.dir / "model" / "studio.json").write_text(json.dumps({"task": "generate"}))
    (run.dir / "model" / "COMPLETE").write_text("ok")
    with pytest.raises(JobError, match="not a classification run"):
        ClassifierPair(run)
