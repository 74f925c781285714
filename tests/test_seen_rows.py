"""Training only the embedding rows the data uses gives the same model as training the whole table."""

from __future__ import annotations

import copy

import torch
from torch import nn

from studio.tasks.seen_rows import SeenRowsEmbedding, fold_seen_rows, train_seen_rows_only

VOCAB = 50
SEEN = range(5, 20)          # training batches use only these tokens (and padding, id 0)


def _classifier():
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    config = BertConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        num_labels=3, pad_token_id=0)
    return BertForSequenceClassification(config)


def _batch(low, high, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, high, (4, 7), generator=g)
    ids[0, 5:] = 0                                   # a padded row
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, 3, (4,), generator=g)}


def _train(model, steps=6):
    """AdamW with weight decay, a decaying learning rate and gradient clipping, as the Trainer runs it."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.5)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / (steps + 1))
    losses = []
    for step in range(steps):
        loss = model(**_batch(SEEN.start, SEEN.stop, step)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_same_training_as_the_whole_table():
    whole = _classifier()
    seen = copy.deepcopy(whole)
    assert train_seen_rows_only(seen, [list(SEEN)])
    embedding = seen.get_input_embeddings()
    assert isinstance(embedding, SeenRowsEmbedding)
    assert embedding.seen_rows.shape == (len(SEEN) + 1, 16)            # + the sentinel
    assert not embedding.weight.requires_grad

    torch.testing.assert_close(_train(seen), _train(whole), rtol=1e-5, atol=1e-6)
    unseen_batch = _batch(20, VOCAB, seed=99)                         # evaluation on tokens never trained
    with torch.no_grad():
        torch.testing.assert_close(embedding(unseen_batch["input_ids"]),
                                   whole.get_input_embeddings()(unseen_batch["input_ids"]), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(seen(**unseen_batch).logits, whole(**unseen_batch).logits, rtol=1e-4, atol=1e-5)
    assert 0.9 < embedding.unseen_scale() < 0.99, "weight decay shrank the unseen rows"

    fold_seen_rows(seen)
    plain = seen.get_input_embeddings()
    assert type(plain) is nn.Embedding and plain.weight.requires_grad
    torch.testing.assert_close(plain.weight, whole.get_input_embeddings().weight, rtol=1e-5, atol=1e-6)
    assert seen.state_dict().keys() == whole.state_dict().keys()


def test_left_alone_when_frozen_or_tied():
    frozen = _classifier()
    frozen.get_input_embeddings().weight.requires_grad_(False)
    assert not train_seen_rows_only(frozen, [[1, 2]])

    from transformers import LlamaConfig, LlamaForCausalLM
    tied = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, tie_word_embeddings=True))
    assert not train_seen_rows_only(tied, [[1, 2]]), "a tied output layer gives every row a gradient"


def test_full_fine_tuning_run_saves_a_plain_model(tmp_path, tiny_bert):
    """Through the engine: the table is swapped for training and the saved model loads cleanly."""
    from conftest import tiny_config, write_tiny_csv
    from transformers import BertForSequenceClassification
    from studio.tasks import classify

    config = tiny_config(write_tiny_csv(tmp_path / "d.csv"), tiny_bert, epochs=1)
    prepared = classify.prepare(config)
    assert isinstance(prepared.model.get_input_embeddings(), SeenRowsEmbedding)
    frozen = classify.prepare(tiny_config(tmp_path / "d.csv", tiny_bert, method="freeze", freeze_depth=1))
    assert not any(isinstance(m, SeenRowsEmbedding) for m in frozen.model.modules())

    prepared.save(prepared.model, tmp_path / "out")
    loaded, info = BertForSequenceClassification.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.testing.assert_close(loaded.get_input_embeddings().weight, prepared.model.get_input_embeddings().weight)
