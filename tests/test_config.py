"""The config validates on creation, names the bad field, and round-trips through YAML."""

import dataclasses

import pytest

from studio.config import DataSpec, RunConfig, TrainSpec, field_meta
from studio.errors import ConfigError


def test_yaml_round_trip_is_exact(tmp_path):
    config = RunConfig(name="demo", train=TrainSpec(method="lora", lora_r=4, epochs=2))
    path = tmp_path / "c.yaml"
    config.save(path)
    assert RunConfig.load(path) == config


@pytest.mark.parametrize("yaml_text,where", [
    ("train: {learning_rate: 5}", "train.learning_rate"),
    ("train: {method: magic}", "train.method"),
    ("train: {epochs: many}", "train.epochs"),
    ("data: {validation_split: 0.9}", "data.validation_split"),
    ("train: {lerning_rate: 0.1}", "unknown setting(s) lerning_rate"),
    ("task: translate", "task: must be one of"),
    ("[1, 2", "not valid yaml at line 1"),
])
def test_bad_values_name_the_field(yaml_text, where):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_yaml(yaml_text)
    assert where in info.value.user_message.lower()


def test_every_field_has_help_text():
    for cls in (RunConfig, DataSpec, TrainSpec):
        for f in dataclasses.fields(cls):
            if f.name in ("data", "train", "generate"):
                continue
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_field_meta_gives_range_and_default():
    meta = field_meta(TrainSpec, "learning_rate")
    assert meta["default"] == TrainSpec().learning_rate and meta["min"] < meta["default"] < meta["max"]
