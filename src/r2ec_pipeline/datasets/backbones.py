"""Kedro datasets for the backbone (model, tokenizer, HF folder) and read-only folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from r2ec_pipeline.model.backbone import backbone_folder, load_causal_lm, load_tokenizer


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


class BackboneFolderDataset(_BackboneDataset):
    """The backbone's Hugging Face folder (weights + tokenizer), e.g. to ship it inside an MLflow model."""

    loader = staticmethod(backbone_folder)


class FolderDataset(AbstractDataset[None, Path]):
    """Read-only: the path of a folder another dataset wrote (e.g. a checkpoint to package as it is)."""

    def __init__(self, path: str, marker: str | None = None, metadata: dict[str, Any] | None = None) -> None:
        self._path, self._marker, self.metadata = Path(path), marker, metadata

    def load(self) -> Path:
        if not self._exists():
            raise DatasetError(
                f"{self._path} is missing{f' or has no {self._marker}' if self._marker else ''}: "
                "run the pipeline that writes it first"
            )
        return self._path

    def save(self, data: None) -> None:
        raise DatasetError("FolderDataset is read-only")

    def _exists(self) -> bool:
        return (self._path / self._marker).is_file() if self._marker else self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "marker": self._marker}
