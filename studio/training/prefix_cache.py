"""Frozen-prefix caching: compute the frozen bottom of the network once, train the top from it.

With freeze depth k, the embeddings and blocks 0..k-1 never change, and (kept in eval mode, so
no dropout) they map each example to the same hidden states every epoch. So the first time an
example is seen we run the bottom once under `no_grad` and keep its output; every later pass
feeds that output straight into block k. Epochs after the first then cost only the trainable top.

How it stays model-agnostic: the wrapped model is the ordinary transformers model. To *capture*,
a forward hook on block k-1 raises with the block's output, so nothing above it runs. To *reuse*,
the frozen blocks' `forward` is swapped (for the duration of one call) for a passthrough, and
block k-1 returns the cached states; masks, positions, pooler and head are the model's own code.

Only real (non-padding) token positions are stored, one tensor per example, so the cache is
independent of how examples are batched. Past `max_memory_bytes` new entries spill to a file.
"""

from __future__ import annotations

import os
import tempfile
import threading
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from studio.freezing import find_blocks


class _Captured(Exception):
    def __init__(self, hidden: torch.Tensor) -> None:
        self.hidden = hidden


class ActivationStore:
    """Per-example float32 tensors of shape (tokens, hidden); RAM first, then a spill file."""

    def __init__(self, max_memory_bytes: int = 1 << 30, spill_dir: str | None = None) -> None:
        self.max_memory_bytes = max_memory_bytes
        self.spill_dir = spill_dir
        self._memory: dict[int, torch.Tensor] = {}
        self._disk: dict[int, tuple[int, tuple[int, int]]] = {}
        self._bytes = 0
        self._file = None
        self._path: str | None = None
        self._lock = threading.Lock()

    def __contains__(self, key: int) -> bool:
        return key in self._memory or key in self._disk

    def __len__(self) -> int:
        return len(self._memory) + len(self._disk)

    @property
    def memory_bytes(self) -> int:
        return self._bytes

    @property
    def spilled(self) -> int:
        return len(self._disk)

    def put(self, key: int, value: torch.Tensor) -> None:
        value = value.detach().to(torch.float32).contiguous()
        with self._lock:
            if self._bytes + value.numel() * 4 <= self.max_memory_bytes:
                self._memory[key] = value.clone()
                self._bytes += value.numel() * 4
                return
            if self._file is None:
                fd, self._path = tempfile.mkstemp(prefix="prefix-cache-", suffix=".f32", dir=self.spill_dir)
                self._file = os.fdopen(fd, "w+b")
            self._file.seek(0, os.SEEK_END)
            offset = self._file.tell()
            self._file.write(value.numpy().tobytes())
            self._disk[key] = (offset, tuple(value.shape))

    def discard(self, key: int) -> None:
        """Forget one in-memory entry (used for timing probes)."""
        with self._lock:
            value = self._memory.pop(key, None)
            if value is not None:
                self._bytes -= value.numel() * 4

    def get(self, key: int) -> torch.Tensor:
        if key in self._memory:
            return self._memory[key]
        offset, shape = self._disk[key]
        with self._lock:
            self._file.flush()
            self._file.seek(offset)
            raw = self._file.read(int(np.prod(shape)) * 4)
        return torch.from_numpy(np.frombuffer(raw, dtype=np.float32).reshape(shape).copy())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            os.unlink(self._path)
            self._file = None
        self._memory.clear()
        self._disk.clear()
        self._bytes = 0


class CachedPrefixModel(nn.Module):
    """Wraps a model whose embeddings and lowest `depth` blocks are frozen.

    Batches must carry an `example_id` (a stable integer per example) next to the usual inputs.
    """

    accepts_loss_kwargs = False  # tell Trainer not to pass num_items_in_batch through

    def __init__(self, model: nn.Module, depth: int, store: ActivationStore | None = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("prefix caching needs at least one frozen block")
        self.model = model
        self.depth = depth
        self.store = store or ActivationStore()
        _, blocks = find_blocks(model)
        self._blocks = list(blocks)  # plain list: not registered twice as submodules
        self.hits = 0
        self.misses = 0

    @property
    def config(self):
        return self.model.config

    def forward(self, input_ids=None, attention_mask=None, labels=None, example_id=None, **kwargs):
        if example_id is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids = [int(i) for i in example_id]
        missing = [row for row, key in enumerate(ids) if key not in self.store]
        if missing:
            self._capture(input_ids[missing], attention_mask[missing], [ids[r] for r in missing])
        self.hits += len(ids) - len(missing)
        self.misses += len(missing)
        hidden = self._assemble(ids, attention_mask)
        with self._bottom_replaced_by(hidden):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)

    @torch.no_grad()
    def _capture(self, input_ids, attention_mask, keys) -> None:
        """Run embeddings + frozen blocks once (eval mode, no grad) and store real-token states."""
        def stop_here(module, args, output):
            raise _Captured(output[0] if isinstance(output, tuple) else output)

        handle = self._blocks[self.depth - 1].register_forward_hook(stop_here)
        was_training = self.model.training
        self.model.eval()
        try:
            self.model(input_ids=input_ids, attention_mask=attention_mask)
            raise RuntimeError("the frozen prefix was never reached")
        except _Captured as captured:
            hidden = captured.hidden
        finally:
            handle.remove()
            self.model.train(was_training)
        mask = attention_mask.bool()
        for row, key in enumerate(keys):
            self.store.put(key, hidden[row][mask[row]])

    def _assemble(self, ids, attention_mask) -> torch.Tensor:
        batch, length = attention_mask.shape
        hidden_size = self.store.get(ids[0]).shape[-1]
        out = torch.zeros(batch, length, hidden_size, dtype=torch.float32)
        mask = attention_mask.bool()
        for row, key in enumerate(ids):
            out[row][mask[row]] = self.store.get(key)
        return out

    @contextmanager
    def _bottom_replaced_by(self, hidden: torch.Tensor):
        """Frozen blocks become passthroughs; the last of them emits the cached states."""
        def passthrough(hidden_states, *args, **kwargs):
            return hidden_states

        def emit_cached(hidden_states, *args, **kwargs):
            return hidden.to(hidden_states.dtype)

        frozen = self._blocks[: self.depth]
        own = [vars(block).get("forward") for block in frozen]   # a block may have its own forward
        for block in frozen[:-1]:
            block.forward = passthrough
        frozen[-1].forward = emit_cached
        try:
            yield
        finally:
            for block, forward in zip(frozen, own):
                if forward is None:
                    del block.forward  # back to the class's forward
                else:
                    block.forward = forward


def keep_frozen_in_eval(model: nn.Module, frozen_modules: list[nn.Module]) -> None:
    """Make `model.train()` leave frozen modules in eval mode (no dropout where nothing learns).

    This makes the frozen bottom deterministic, which is what lets its output be cached, and it
    is the same computation with or without the cache.
    """
    original_train = model.train

    def train(mode: bool = True):
        original_train(mode)
        for module in frozen_modules:
            module.eval()
        return model

    model.train = train
    model.train(model.training)
