"""Shared fixtures: tiny random models built from a config (no downloads), temp workspaces."""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "assets" / "samples"
TINY_ROOT_ENV = "STUDIO_MODEL_ROOTS"


def _char_vocab() -> list[str]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + [f"##{c}" for c in chars]


def make_tiny_bert(folder: Path, *, layers: int = 2, hidden: int = 32) -> Path:
    """A 2-block random BERT classifier base with a character-level WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate(_char_vocab())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)  # transformers 5: a dict, not a file
    config = BertConfig(vocab_size=len(_char_vocab()), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=256)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def model_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    os.environ[TINY_ROOT_ENV] = str(root)
    return root


@pytest.fixture(scope="session")
def tiny_bert(model_root) -> Path:
    return make_tiny_bert(model_root / "tiny-bert")


@pytest.fixture(scope="module")
def client(server):
    """A gradio_client for the test module's own `server` fixture (an in-process studio app)."""
    import gradio_client
    return gradio_client.Client(server[0], verbose=False)


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("STUDIO_WORKSPACE", str(tmp_path / "workspace"))
    return tmp_path / "workspace"


def write_tiny_csv(path: Path, n: int = 48) -> Path:
    """A trivially learnable two-class set: 'good ...' vs 'bad ...'."""
    rows = ["text,label"]
    for i in range(n):
        label = "good" if i % 2 == 0 else "bad"
        rows.append(f"{label} thing number {i},{label}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def tiny_config(data_path: Path, model: Path, **train):
    from studio.config import DataSpec, RunConfig, TrainSpec
    defaults = dict(method="full", epochs=2, batch_size=8, max_length=32, learning_rate=1e-3,
                    save_checkpoints=False)
    defaults.update(train)
    return RunConfig(task="classify", model=str(model), name="tiny",
                     data=DataSpec(path=str(data_path), validation_split=0.25),
                     train=TrainSpec(**defaults))
