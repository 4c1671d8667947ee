"""Kedro datasets for the backbone (model, tokenizer) and dual-head checkpoints (safetensors + JSON)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.checkpoint import CONFIG_FILE, load_dual_head, save_dual_head
from r2ec_pipeline.model.dual_head import R2ecModel


class _BackboneDataset(AbstractDataset[None, Any]):
    """Read-only: ``backbone`` is a packaged GGUF spec (cached under ``cache_dir``) or a local HF folder."""

    loader: Callable[[str, str], Any]

    def __init__(self, backbone: str, cache_dir: str, metadata: dict[str, Any] | None = None) -> None:
        self._backbone, self._cache_dir, self.metadata = backbone, cache_dir, metadata

    def load(self) -> Any:
        return type(self).loader(self._backbone, self._cache_dir)

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"backbone": self._backbone, "cache_dir": self._cache_dir}


class BackboneModelDataset(_BackboneDataset):
    """The backbone causal LM (``lm_head`` included)."""

    loader = staticmethod(load_causal_lm)


class BackboneTokenizerDataset(_BackboneDataset):
    """The backbone's tokenizer with its chat template."""

    loader = staticmethod(load_tokenizer)


class DualHeadModelDataset(AbstractDataset[R2ecModel, R2ecModel]):
    """A dual-head checkpoint folder (adapters, item table, tokenizer, config); written atomically."""

    def __init__(self, filepath: str, cache_dir: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath, self._cache_dir, self.metadata = Path(filepath), cache_dir, metadata

    def load(self) -> R2ecModel:
        return load_dual_head(self._filepath, self._cache_dir)

    def save(self, data: R2ecModel) -> None:
        save_dual_head(data, self._filepath)

    def _exists(self) -> bool:
        return (self._filepath / CONFIG_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
