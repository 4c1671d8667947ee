"""Kedro dataset for the backbone's tokenizer, so prompt rendering gets it through the catalog."""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError
from transformers import PreTrainedTokenizerBase

from r2ec_pipeline.model.backbone import load_tokenizer


class BackboneTokenizerDataset(AbstractDataset[None, PreTrainedTokenizerBase]):
    """The tokenizer (with chat template) of ``backbone``: a packaged GGUF spec or a local HF folder."""

    def __init__(self, backbone: str, cache_dir: str, metadata: dict[str, Any] | None = None) -> None:
        self._backbone = backbone
        self._cache_dir = cache_dir
        self.metadata = metadata

    def load(self) -> PreTrainedTokenizerBase:
        return load_tokenizer(self._backbone, self._cache_dir)

    def save(self, data: None) -> None:
        raise DatasetError("BackboneTokenizerDataset is read-only")

    def _describe(self) -> dict[str, Any]:
        return {"backbone": self._backbone, "cache_dir": self._cache_dir}
