"""Kedro dataset for the rows a catalog update adds (its own module: the DVC stages do not import it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from r2ec_pipeline.items.rows import CatalogUpdateError, read_item_rows


class ItemRowsDataset(AbstractDataset[None, pd.DataFrame]):
    """New catalog items (parquet, CSV or JSONL(.gz)) in the project's item schema, or Amazon Reviews 2023
    metadata lines: what ``catalog_update`` adds to a registered model. Read-only."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath, self.metadata = Path(filepath), metadata

    def load(self) -> pd.DataFrame:
        try:
            return read_item_rows(self._filepath)
        except CatalogUpdateError as error:
            raise DatasetError(str(error)) from None

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: it reads the new items at {self._filepath}")

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
