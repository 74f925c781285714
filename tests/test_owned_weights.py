"""Trainable weights get their own memory before training; frozen and tied weights are kept."""

import torch

from studio.training.owned_weights import own_trainable_weights


def test_trainable_weights_are_copied_frozen_ones_kept_tied_ones_stay_tied(tmp_path):
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 4), torch.nn.Linear(4, 10))
    model[2].weight = model[0].weight                      # a tied output layer
    model[1].requires_grad_(False)
    before = {name: (p.data_ptr(), p.detach().clone()) for name, p in model.named_parameters()}
    copied = own_trainable_weights(model)
    assert copied == 10 * 4 + 10                            # the shared weight once, and the bias
    after = dict(model.named_parameters())
    assert after["0.weight"].data_ptr() != before["0.weight"][0], "trainable: fresh memory"
    assert after["1.weight"].data_ptr() == before["1.weight"][0], "frozen: left where it was"
    assert model[2].weight is model[0].weight, "still tied"
    for name, (_, value) in before.items():
        assert torch.equal(after[name], value), name

