"""Train only the word-embedding rows of tokens the training data contains.

Full fine-tuning trains every row of the word-embedding table: for MiniLM that is 30,522 rows of
384 numbers, half of the model's weights. A batch of 16 questions uses a few hundred of those
rows, and the whole training set a few thousand, but every step still builds a gradient for the
whole table, measures it for clipping, and runs AdamW over it: on this 2-core CPU, 15% of a full
fine-tuning step (284 ms with the table trainable, 241 ms without).

A row whose token never appears in the training data gets a zero gradient at every step, so
AdamW's moment estimates for it stay zero and its Adam update is exactly zero. The one thing that
still happens to it is weight decay: every step multiplies it by (1 - lr * weight_decay). All
such rows are multiplied by the same factors, so they stay their starting values times one
shared number.

`SeenRowsEmbedding` uses that. It trains a small table with one row per token the training data
contains, and keeps the full table frozen. The small table has one extra row, the *sentinel*. It
starts at 1.0 and is never looked up, so it never gets a gradient. The optimizer therefore
decays it exactly as it would have decayed every unseen row, whatever the learning-rate schedule
and weight decay. A lookup of an unseen token (in evaluation, say) returns the frozen row times
the sentinel. The loss, every gradient and every update match training the whole table (a test
checks this to float tolerance).

`fold_seen_rows(model)` writes the trained rows and the decay back into an ordinary
`nn.Embedding` before the model is saved, so a saved model is the plain transformers one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SeenRowsEmbedding(nn.Embedding):
    """An nn.Embedding whose `weight` is frozen and whose seen rows train in `seen_rows`."""

    @classmethod
    def adopt(cls, embedding: nn.Embedding, seen_ids) -> "SeenRowsEmbedding":
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        for name in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                     "scale_grad_by_freq", "sparse"):
            setattr(new, name, getattr(embedding, name))
        new.weight = embedding.weight
        new.weight.requires_grad_(False)
        ids = torch.as_tensor(sorted(set(int(i) for i in seen_ids) - {embedding.padding_idx}), dtype=torch.long)
        slot = torch.full((embedding.num_embeddings,), -1, dtype=torch.long)
        slot[ids] = torch.arange(len(ids))
        new.register_buffer("seen_ids", ids, persistent=False)
        new.register_buffer("slot", slot, persistent=False)
        sentinel = torch.ones(1, embedding.embedding_dim, dtype=embedding.weight.dtype)
        new.seen_rows = nn.Parameter(torch.cat([embedding.weight.detach()[ids], sentinel]))
        new.train(embedding.training)
        return new

    def unseen_scale(self) -> torch.Tensor:
        """How much the optimizer's weight decay has shrunk every unseen row so far."""
        return self.seen_rows[-1, 0].detach()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        slots = self.slot[input_ids]
        trained = F.embedding(slots.clamp(min=0), self.seen_rows)
        frozen = F.embedding(input_ids, self.weight) * self.unseen_scale()
        return torch.where((slots >= 0).unsqueeze(-1), trained, frozen)

    def folded(self) -> nn.Embedding:
        """An ordinary nn.Embedding with the trained rows and the decay written in."""
        with torch.no_grad():
            table = self.weight.detach() * self.unseen_scale()
            table[self.seen_ids] = self.seen_rows.detach()[:-1]
        plain = nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx,
                             max_norm=self.max_norm, norm_type=self.norm_type,
                             scale_grad_by_freq=self.scale_grad_by_freq, sparse=self.sparse,
                             dtype=table.dtype)
        plain.weight = nn.Parameter(table, requires_grad=True)
        return plain.train(self.training)


def train_seen_rows_only(model: nn.Module, token_lists) -> bool:
    """Swap the model's word embeddings for a SeenRowsEmbedding over the tokens in `token_lists`.

    Only when the table trains, is a plain dense nn.Embedding (no max_norm, no frequency scaling)
    and is not shared with an output layer (a tied output layer gives every row a gradient). Returns whether it was swapped.
    """
    embedding = model.get_input_embeddings()
    if (type(embedding) is not nn.Embedding or not embedding.weight.requires_grad or embedding.max_norm
            or embedding.scale_grad_by_freq or embedding.sparse):
        return False
    output = model.get_output_embeddings()
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return False
    seen = {int(token) for tokens in token_lists for token in tokens}
    model.set_input_embeddings(SeenRowsEmbedding.adopt(embedding, seen))
    return True


def fold_seen_rows(model: nn.Module) -> None:
    """Put a plain nn.Embedding back (trained rows and decay written in), if one was swapped."""
    embedding = model.get_input_embeddings()
    if isinstance(embedding, SeenRowsEmbedding):
        model.set_input_embeddings(embedding.folded())
