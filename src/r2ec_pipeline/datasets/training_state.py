"""Kedro dataset for a training stage's resumable checkpoints (checkpoint-<step>/ folders, SFT or RecPO)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from r2ec_pipeline.model.training_state import CheckpointStore


class CheckpointStoreDataset(AbstractDataset[None, CheckpointStore]):
    """The folder of resumable training checkpoints, handed to the training node as a store."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path, self.metadata = Path(path), metadata

    def load(self) -> CheckpointStore:
        return CheckpointStore(self._path)

    def save(self, data: None) -> None:
        raise DatasetError("CheckpointStoreDataset is written by the trainer, not saved as a node output")

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
