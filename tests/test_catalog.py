"""Model references are validated before anything is loaded; unsafe models are refused."""

import json
import subprocess
import sys

import pytest

from studio import catalog
from studio.errors import ModelError


def _folder(tmp, name, *, weights="model.safetensors", config=None):
    folder = tmp / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"model_type": "bert"}))
    if weights:
        (folder / weights).write_bytes(b"x")
    return folder


@pytest.mark.parametrize("spec,message", [
    ("", "no model was chosen"),
    ("org/model; rm -rf /", "characters no model id"),
    ("$(whoami)/x", "characters no model id"),
    ("a|b", "characters no model id"),
    ("not a model", "characters no model id"),
    ("../../etc", "outside the allowed model folders"),
    ("/etc", "outside the allowed model folders"),
    ("justaname", "neither a catalog name"),
])
def test_bad_references_are_refused_with_a_reason(spec, message, model_root):
    with pytest.raises(ModelError, match=message):
        catalog.resolve(spec)


def test_hub_id_is_accepted_syntactically_but_missing_ones_fail_clearly(model_root, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resolved = catalog.resolve("no-such-org/no-such-model-xyz")
    assert resolved.hub_id == "no-such-org/no-such-model-xyz"
    with pytest.raises(ModelError, match="could not load the model"):
        catalog.read_config(resolved)


@pytest.mark.parametrize("weights,config,message", [
    ("pytorch_model.bin", None, "no .safetensors weights"),
    (None, None, "no .safetensors weights"),
    ("model.safetensors", {"model_type": "bert", "auto_map": {"AutoModel": "evil.Model"}}, "its own code"),
])
def test_unsafe_local_folders_are_refused(model_root, weights, config, message):
    folder = _folder(model_root, f"m-{message[:6].replace(' ', '')}-{weights}", weights=weights, config=config)
    with pytest.raises(ModelError, match=message):
        catalog.resolve(str(folder))


def test_local_folder_inside_allowed_root_resolves(tiny_bert):
    assert catalog.resolve(str(tiny_bert)).folder == tiny_bert.resolve()


def test_offline_minilm_is_in_the_catalog():
    resolved = catalog.resolve("minilm")
    assert (resolved.folder / "model.safetensors").exists()
    summary = catalog.model_summary(catalog.read_config(resolved))
    assert summary["layers"] == 6 and summary["hidden_size"] == 384


def test_preflight_refuses_a_model_too_large_for_memory():
    from transformers import LlamaConfig
    huge = LlamaConfig(hidden_size=8192, num_hidden_layers=80, intermediate_size=28672, vocab_size=128000)
    with pytest.raises(ModelError, match="GiB to train"):
        catalog.preflight_memory(huge, available_bytes=24 * 2**30)


def test_engine_imports_without_gradio():
    """Every module of the engine (all of studio/ except studio/ui/) imports without gradio."""
    code = ("import importlib, pkgutil, sys, studio\n"
            "names = [m.name for m in pkgutil.walk_packages(studio.__path__, 'studio.') if not m.name.startswith('studio.ui')]\n"
            "assert 'studio.generation' in names and 'studio.training.job' in names, names\n"
            "for name in names: importlib.import_module(name)\n"
            "assert 'gradio' not in sys.modules, 'engine imported gradio'")
    subprocess.run([sys.executable, "-c", code], check=True)
