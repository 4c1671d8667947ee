"""Kedro datasets for dual-head checkpoints (safetensors + JSON): one model, or a named set."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import CONFIG_FILE, load_dual_head, save_dual_head


class DualHeadModelDataset(AbstractDataset[R2ecModel, R2ecModel | None]):
    """A dual-head checkpoint folder (adapters, item table, tokenizer, config); written atomically.

    With ``missing_ok`` a checkpoint that was never written loads as ``None`` (the consumer decides
    what to start from) instead of failing.
    """

    def __init__(
        self, filepath: str, cache_dir: str, missing_ok: bool = False, metadata: dict[str, Any] | None = None
    ) -> None:
        self._filepath, self._cache_dir, self._missing_ok, self.metadata = (
            Path(filepath),
            cache_dir,
            missing_ok,
            metadata,
        )

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


class DualHeadModelsDataset(AbstractDataset[dict[str, R2ecModel], dict[str, R2ecModel | Path]]):
    """Named dual-head checkpoints, one folder each under ``path`` (``{name: model}``, possibly empty).

    Saving replaces the whole set (a name no longer given is removed: nothing stale is registered);
    loading gives the models, or with ``as_folders`` their folders (to package as they are).
    """

    def __init__(
        self, path: str, cache_dir: str, as_folders: bool = False, metadata: dict[str, Any] | None = None
    ) -> None:
        self._path, self._cache_dir, self._as_folders, self.metadata = Path(path), cache_dir, as_folders, metadata

    def _folders(self) -> dict[str, Path]:
        if not self._path.is_dir():
            return {}
        return {p.name: p for p in sorted(self._path.iterdir()) if (p / CONFIG_FILE).is_file()}

    def load(self) -> dict[str, R2ecModel | Path]:
        folders = self._folders()
        if self._as_folders:
            return dict(folders)
        return {name: load_dual_head(folder, self._cache_dir) for name, folder in folders.items()}

    def save(self, data: dict[str, R2ecModel]) -> None:
        for name, folder in self._folders().items():
            if name not in data:
                shutil.rmtree(folder)
        for name, model in data.items():
            save_dual_head(model, self._path / name)
        self._path.mkdir(parents=True, exist_ok=True)  # an empty set is a folder too (DVC tracks it)

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "as_folders": self._as_folders}
