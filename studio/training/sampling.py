"""Length buckets: training batches whose examples have nearly the same length.

Each batch is padded to its longest example, and padding costs as much compute as real tokens.
transformers' `group_by_length` sorts inside "megabatches" of at most a quarter of the data, so a
small instruction set (64 conversations, batch 4) keeps sorting only within groups of 16 and about
a sixth of every batch is padding. Here the examples are shuffled, cut into buckets of up to
`bucket_batches` batches, each bucket is sorted by length and cut into batches, and then the
*batches* are shuffled. Which examples share a batch changes every epoch (a new shuffle fills the
buckets) and so does the order the model sees them in; padding drops to a few percent.

Examples never attend to each other: a batch is still separate rows with their own attention mask.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


def bucketed_batches(lengths: list[int], batch_size: int, generator: torch.Generator,
                     bucket_batches: int = 64) -> list[list[int]]:
    """Index batches for one epoch: full batches in random order (the longest first, so a memory
    problem shows at the first step, not the last), then the one partial batch, if any."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    bucket = batch_size * bucket_batches
    full, partial = [], []
    for start in range(0, len(order), bucket):
        ranked = sorted(order[start:start + bucket], key=lengths.__getitem__, reverse=True)
        for i in range(0, len(ranked), batch_size):
            (full if len(ranked[i:i + batch_size]) == batch_size else partial).append(ranked[i:i + batch_size])
    full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if full:
        longest = max(range(len(full)), key=lambda i: lengths[full[i][0]])
        full[0], full[longest] = full[longest], full[0]
    # Partial pieces (one per bucket at most) are merged so only the very last batch is short:
    # the DataLoader cuts the index stream into consecutive runs of batch_size.
    tail = [i for piece in partial for i in piece]
    tail.sort(key=lengths.__getitem__, reverse=True)
    return full + [tail[i:i + batch_size] for i in range(0, len(tail), batch_size)]


class LengthBucketSampler(Sampler[int]):
    """Yields example indices so that consecutive runs of `batch_size` form length buckets."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_batches: int = 64) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:   # the Trainer calls this before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        batches = bucketed_batches(self.lengths, self.batch_size, generator, self.bucket_batches)
        return iter([i for batch in batches for i in batch])


def padded_positions(lengths: list[int], batches, multiple: int = 1) -> int:
    """Positions the model computes for these batches: each batch padded to its longest example
    (and on to a multiple of `multiple` positions, as `kernel_shapes.PadToMultiple` pads)."""
    from studio.training.kernel_shapes import round_up
    return sum(round_up(max(lengths[i] for i in batch), multiple) * len(batch) for batch in batches)


def padding_share(lengths: list[int], batches: list[list[int]]) -> float:
    """The share of a padded batch's positions that are padding, over all batches."""
    padded = padded_positions(lengths, batches)
    return 1 - sum(lengths[i] for b in batches for i in b) / padded if padded else 0.0
