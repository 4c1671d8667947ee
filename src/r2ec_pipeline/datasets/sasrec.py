"""Kedro dataset for the SASRec baseline (a folder: config.json + model.safetensors)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset
from safetensors.torch import load_file, save_file

from r2ec_pipeline.baselines.sasrec import SASRec
from r2ec_pipeline.config import SASRecParams


class SASRecDataset(AbstractDataset[SASRec, SASRec]):
    """A SASRec baseline as a folder: ``config.json`` (catalog size, settings) + ``model.safetensors``."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath, self.metadata = Path(filepath), metadata

    def load(self) -> SASRec:
        config = json.loads((self._filepath / "config.json").read_text())
        model = SASRec(config["num_items"], SASRecParams.model_validate(config["settings"]))
        model.load_state_dict(load_file(self._filepath / "model.safetensors"))
        return model.eval()

    def save(self, data: SASRec) -> None:
        self._filepath.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self._filepath.name}-", dir=self._filepath.parent))
        try:  # written aside, then swapped in: never a half-written model
            config = {"num_items": data.items.num_embeddings - 1, "settings": data.settings.model_dump()}
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
