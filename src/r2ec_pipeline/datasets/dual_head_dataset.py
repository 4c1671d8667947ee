"""Kedro dataset for dual-head checkpoints (safetensors + JSON)."""

from __future__ import annotations

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
