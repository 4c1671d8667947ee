"""Kedro datasets for the backbone (model, tokenizer) and dual-head checkpoints (safetensors + JSON)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from safetensors.torch import load_file, save_file

from r2ec_pipeline.baselines.sasrec import SASRec, SASRecSettings
from r2ec_pipeline.model.backbone import backbone_folder, load_causal_lm, load_tokenizer
from r2ec_pipeline.model.checkpoint import CONFIG_FILE, load_dual_head, save_dual_head
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.rl.checkpointing import CheckpointStore


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
            raise DatasetError(f"{self._path} is missing{f' or has no {self._marker}' if self._marker else ''}: "
                               "run the pipeline that writes it first")
        return self._path

    def save(self, data: None) -> None:
        raise DatasetError("FolderDataset is read-only")

    def _exists(self) -> bool:
        return (self._path / self._marker).is_file() if self._marker else self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "marker": self._marker}


class DualHeadModelDataset(AbstractDataset[R2ecModel, R2ecModel | None]):
    """A dual-head checkpoint folder (adapters, item table, tokenizer, config); written atomically.

    With ``missing_ok`` a checkpoint that was never written loads as ``None`` (the consumer decides
    what to start from) instead of failing.
    """

    def __init__(
        self, filepath: str, cache_dir: str, missing_ok: bool = False, metadata: dict[str, Any] | None = None
    ) -> None:
        self._filepath, self._cache_dir, self._missing_ok, self.metadata = Path(filepath), cache_dir, missing_ok, metadata

    def load(self) -> R2ecModel | None:
        if self._missing_ok and not self._exists():
            return None
        return load_dual_head(self._filepath, self._cache_dir)

    def save(self, data: R2ecModel) -> None:
        save_dual_head(data, self._filepath)

    def _exists(self) -> bool:
        return (self._filepath / CONFIG_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "missing_ok": self._missing_ok}


class CheckpointStoreDataset(AbstractDataset[None, CheckpointStore]):
    """The folder of resumable RecPO training checkpoints, handed to the training node as a store."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path, self.metadata = Path(path), metadata

    def load(self) -> CheckpointStore:
        return CheckpointStore(self._path)

    def save(self, data: None) -> None:
        raise DatasetError("CheckpointStoreDataset is written by the trainer, not saved as a node output")

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class SASRecDataset(AbstractDataset[SASRec, SASRec]):
    """A SASRec baseline as a folder: ``config.json`` (catalog size, settings) + ``model.safetensors``."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath, self.metadata = Path(filepath), metadata

    def load(self) -> SASRec:
        config = json.loads((self._filepath / "config.json").read_text())
        model = SASRec(config["num_items"], SASRecSettings(**config["settings"]))
        model.load_state_dict(load_file(self._filepath / "model.safetensors"))
        return model.eval()

    def save(self, data: SASRec) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self._filepath.name}-", dir=self._filepath.parent))
        try:  # written aside, then swapped in: never a half-written model
            config = {"num_items": data.items.num_embeddings - 1, "settings": asdict(data.settings)}
            (staging / "config.json").write_text(json.dumps(config, indent=2))
            save_file({k: v.contiguous() for k, v in data.state_dict().items()}, staging / "model.safetensors")
            shutil.rmtree(self._filepath, ignore_errors=True)
            os.replace(staging, self._filepath)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _exists(self) -> bool:
        return (self._filepath / "model.safetensors").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
