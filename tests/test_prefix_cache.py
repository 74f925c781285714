"""Frozen-prefix caching gives the same training as the uncached path, and reuses its work."""

import math

import torch

from conftest import tiny_config, write_tiny_csv
from studio.training.manager import JobManager
from studio.training.prefix_cache import ActivationStore
from studio.training.runs import RunStore


def _losses(tmp_path, tiny_bert, name, **train):
    config = tiny_config(write_tiny_csv(tmp_path / f"{name}.csv", n=64), tiny_bert, method="freeze",
                         freeze_depth=1, epochs=3, batch_size=8, learning_rate=3e-3, **train)
    manager = JobManager(RunStore(tmp_path / f"runs-{name}"))
    job = manager.submit(config)
    snap = job.wait(120)
    assert snap.state == "completed", snap.error
    train_losses = [r["loss"] for r in snap.records if r.get("loss") is not None]
    eval_losses = [r["eval_loss"] for r in snap.records if r.get("eval_loss") is not None]
    return train_losses, eval_losses, job


def test_cached_training_matches_uncached(tmp_path, tiny_bert):
    from transformers import BertModel
    plain_train, plain_eval, plain_job = _losses(tmp_path, tiny_bert, "plain", cache_frozen=False)
    cached_train, cached_eval, cached_job = _losses(tmp_path, tiny_bert, "cached", cache_frozen=True)
    assert len(plain_train) == len(cached_train) > 5
    for a, b in zip(plain_train + plain_eval, cached_train + cached_eval):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), (a, b)
    # The comparison means something only if the top trained: its weights moved, the same way.
    start = BertModel.from_pretrained(tiny_bert).encoder.layer[1].output.dense.weight
    plain_top, cached_top = (BertModel.from_pretrained(job.run.model_dir).encoder.layer[1].output.dense.weight
                             for job in (plain_job, cached_job))
    assert (plain_top - start).abs().max() > 1e-3
    torch.testing.assert_close(cached_top, plain_top, rtol=1e-4, atol=1e-5)


def test_cache_computes_each_example_once(tmp_path, tiny_bert):
    from studio.tasks import classify
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv", n=40), tiny_bert, method="freeze", freeze_depth=2)
    prepared = classify.prepare(config)
    model = prepared.model
    batch = prepared.collator([prepared.train_dataset[i] for i in range(8)])
    first = model(**batch).loss
    assert model.misses == 8 and model.hits == 0
    second = model(**batch).loss
    assert model.hits == 8 and model.misses == 8
    assert torch.allclose(first, second, atol=1e-6)
    # Saving unwraps to an ordinary transformers model.
    out = tmp_path / "saved"
    out.mkdir()
    prepared.save(model, out)
    assert (out / "model.safetensors").exists()


def test_store_spills_to_disk_past_its_bound():
    store = ActivationStore(max_memory_bytes=10 * 4 * 4)
    tensors = {i: torch.randn(4, 4) for i in range(5)}
    for key, value in tensors.items():
        store.put(key, value)
    assert store.spilled == 3 and store.memory_bytes <= 10 * 4 * 4
    for key, value in tensors.items():
        assert torch.equal(store.get(key), value)
    store.close()
