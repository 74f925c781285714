"""Freeze depth and LoRA train exactly the parameters they should (tiny random BERT)."""

import pytest
import torch

from studio.config import TrainSpec
from studio.freezing import apply_method, layer_report, trainable_summary


def _classifier(folder, layers=2):
    from transformers import AutoModelForSequenceClassification
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3)


def _changed_after_step(model):
    """Names of parameters whose values change after one optimizer step on random data."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    ids = torch.randint(5, 50, (4, 12))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1, 2, 1]))
    out.loss.backward()
    opt.step()
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


@pytest.mark.parametrize("depth,trained_blocks", [(0, {0, 1}), (1, {1}), (2, set())])
def test_freeze_depth_trains_exactly_the_top(tiny_bert, depth, trained_blocks):
    model = apply_method(_classifier(tiny_bert), TrainSpec(method="freeze", freeze_depth=depth), "classify")
    changed = _changed_after_step(model)
    blocks = {int(n.split("encoder.layer.")[1].split(".")[0]) for n in changed if "encoder.layer." in n}
    assert blocks == trained_blocks
    assert any(n.startswith("classifier.") for n in changed), "the head always trains"
    embeddings_changed = any(".embeddings." in n for n in changed)
    assert embeddings_changed == (depth == 0)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert not (frozen & changed), "a frozen parameter changed"


def test_freeze_depth_out_of_range_names_the_field(tiny_bert):
    from studio.errors import ConfigError
    with pytest.raises(ConfigError, match="train.freeze_depth.*between 0 and 2"):
        apply_method(_classifier(tiny_bert), TrainSpec(method="freeze", freeze_depth=5), "classify")


def test_layer_report_counts_every_parameter(tiny_bert):
    model = apply_method(_classifier(tiny_bert), TrainSpec(method="freeze", freeze_depth=1), "classify")
    report = layer_report(model)
    assert [g.name for g in report] == ["embeddings", "block 0", "block 1", "head"]
    assert sum(g.trainable + g.frozen for g in report) == sum(p.numel() for p in model.parameters())
    by_name = {g.name: g for g in report}
    assert by_name["embeddings"].trainable == 0 and by_name["block 0"].trainable == 0
    assert by_name["block 1"].frozen == 0 and by_name["head"].frozen == 0
    summary = trainable_summary(model)
    assert 0 < summary["share"] < 1


def test_lora_trains_only_adapters_and_head(tiny_bert):
    model = apply_method(_classifier(tiny_bert), TrainSpec(method="lora", lora_r=4), "classify")
    changed = _changed_after_step(model)
    assert changed, "nothing trained"
    for name in changed:
        assert "lora_" in name or "modules_to_save" in name, name
    assert any("lora_B" in n for n in changed)
    report = layer_report(model)
    assert all(g.trainable > 0 for g in report if g.kind == "block"), "adapters sit in every block"
    assert trainable_summary(model)["share"] < 0.5
