"""Kedro dataset for a static HTML site (GX Data Docs): written whole, then logged to the active MLflow run."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class SiteDataset(AbstractDataset[dict[str, bytes], Path]):
    """A folder of files given as ``{relative path: bytes}``; loads as the folder's ``index.html`` path.

    The folder is written aside and swapped in (never a half-written site). With ``mlflow_artifact_path``
    and an active MLflow run, the folder is also logged as that run's artifacts under that path.
    """

    def __init__(
        self, path: str, mlflow_artifact_path: str | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        self._path, self._artifact_path, self.metadata = Path(path), mlflow_artifact_path, metadata

    def load(self) -> Path:
        index = self._path / "index.html"
        if not index.is_file():
            raise DatasetError(f"{index} is missing: run the pipeline that writes this site first")
        return index

    def save(self, data: dict[str, bytes]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self._path.name}-", dir=self._path.parent))
        try:
            for name, content in data.items():
                target = staging / name
                if staging not in target.resolve().parents:
                    raise DatasetError(f"site file {name!r} would be written outside {self._path}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            shutil.rmtree(self._path, ignore_errors=True)
            os.replace(staging, self._path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._log_to_mlflow()

    def _log_to_mlflow(self) -> None:
        if self._artifact_path is None:
            return
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_artifacts(str(self._path), self._artifact_path)

    def _exists(self) -> bool:
        return (self._path / "index.html").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "mlflow_artifact_path": self._artifact_path}
