"""Length buckets: every example once per epoch, batches of near-equal length, a new order each epoch."""

import random

import torch

from studio.training.estimate import eval_positions, train_positions_per_epoch
from studio.training.sampling import LengthBucketSampler, bucketed_batches, padding_share


def _skewed_lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)   # like instruction data: mostly short, a long tail
    return [int(min(1024, 30 + rng.expovariate(1 / 150))) for _ in range(n)]


def _batches(sampler: LengthBucketSampler, batch_size: int) -> list[list[int]]:
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def test_every_example_once_and_only_the_last_batch_short():
    lengths = _skewed_lengths(203)
    sampler = LengthBucketSampler(lengths, batch_size=4, seed=1, bucket_batches=8)
    batches = _batches(sampler, 4)
    assert sorted(i for b in batches for i in b) == list(range(203))
    assert all(len(b) == 4 for b in batches[:-1]) and len(batches[-1]) == 3
    longest = max(range(203), key=lengths.__getitem__)
    assert longest in batches[0], "the longest batch comes first, so running out of memory shows at once"


def test_far_less_padding_than_transformers_group_by_length():
    from transformers.trainer_pt_utils import get_length_grouped_indices
    lengths = _skewed_lengths(64)
    generator = torch.Generator().manual_seed(0)
    ours = padding_share(lengths, bucketed_batches(lengths, 4, generator))
    order = get_length_grouped_indices(lengths, 4, generator=generator)
    theirs = padding_share(lengths, [order[i:i + 4] for i in range(0, 64, 4)])
    assert ours < 0.08 and ours < theirs / 2, (ours, theirs)


def test_new_order_each_epoch_same_order_for_the_same_seed_and_epoch():
    lengths = _skewed_lengths(600)
    sampler = LengthBucketSampler(lengths, batch_size=8, seed=3)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch0 != epoch1
    assert {tuple(sorted(b)) for b in _batches(sampler, 8)} != {tuple(sorted(epoch0[i:i + 8])) for i in range(0, 600, 8)}, \
        "with several buckets, which examples share a batch changes too"
    again = LengthBucketSampler(lengths, batch_size=8, seed=3)
    again.set_epoch(1)
    assert list(again) == epoch1


def test_positions_the_estimate_scales_by():
    assert eval_positions([2, 3, 10, 11, 12], batch_size=2) == 2 * 3 + 2 * 11 + 12
    lengths = [5] * 8 + [50] * 8
    assert train_positions_per_epoch(lengths, 4, length_buckets=True) == 4 * (5 * 2 + 50 * 2)
    assert train_positions_per_epoch(lengths, 4, length_buckets=False) >= 4 * (5 * 2 + 50 * 2)


def test_the_estimates_batch_has_the_length_a_typical_position_sits_in():
    """Ten 2-token examples and two 20-token ones: the mean length is 5, but 40 of the 60
    positions sit in the long ones (sum L² / sum L = 14.0), so the timed batch is the long ones."""
    from studio.training.estimate import _typical_batch
    dataset = {"input_ids": [[1] * 2] * 10 + [[1] * 20] * 2}

    class Rows(dict):
        def __getitem__(self, key):
            return {"input_ids": dataset["input_ids"][key]} if isinstance(key, int) else dataset[key]

    batch, seconds = _typical_batch(Rows(dataset), lambda rows: {"lengths": [len(r["input_ids"]) for r in rows]}, 2)
    assert batch["lengths"] == [20, 20] and seconds >= 0


def test_estimate_counts_steps_evaluations_and_the_cached_bottom_once(tmp_path, tiny_bert):
    from conftest import tiny_config, write_tiny_csv
    from studio.tasks import classify
    from studio.training.estimate import estimate_training
    config = tiny_config(write_tiny_csv(tmp_path / "d.csv", n=40), tiny_bert, method="freeze", freeze_depth=1,
                         epochs=3, batch_size=8)
    prepared = classify.prepare(config)
    rng = torch.get_rng_state()
    estimate = estimate_training(prepared, config.train)
    assert torch.equal(torch.get_rng_state(), rng), "estimating must not change what training draws"
    assert all(p.grad is None for p in prepared.model.parameters())
    assert (estimate.steps, estimate.evaluations) == (3 * 4, 3)   # 30 training rows, batch 8, 3 epochs
    assert estimate.first_step_seconds > estimate.later_step_seconds > 0   # epoch 1 also runs the bottom
    assert estimate.total_seconds > estimate.steps * estimate.later_step_seconds
    assert "12 steps, 3 evaluations" in estimate.describe()
