"""Kedro datasets that read and write MLflow, so that no node calls MLflow itself.

``RegisteredModelDataset`` registers a model in the active run and gates ``champion``;
``ChildRunsDataset`` saves a summary of variants and gives each variant a nested MLflow run (both write
their JSON aside and swap it in, never half-written, then log it to the active run);
``RegisteredVersionDataset`` loads a registered version's files (what a catalog update starts from).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import mlflow
from kedro.io import AbstractDataset, DatasetError

from r2ec_pipeline.reporting.tables import flatten
from r2ec_pipeline.serving.registry import (
    RegisteredVersion,
    Registration,
    download_version,
    register,
)

logger = logging.getLogger(__name__)


def _write_json(path: Path, data: Any) -> None:
    """Write through a staging file renamed into place (no half-written report), with the permissions a
    plain ``open`` would give (``mkstemp`` makes its file private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2, default=str)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o666 & ~umask)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


class _JSONReport(AbstractDataset[Any, dict[str, Any]]):
    """Loads the JSON report at ``filepath``; subclasses say what saving does in MLflow."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath, self.metadata = Path(filepath), metadata

    def load(self) -> dict[str, Any]:
        if not self._filepath.is_file():
            raise DatasetError(f"{self._filepath} is missing: run the pipeline that writes it first")
        return json.loads(self._filepath.read_text())

    def _save_report(self, report: dict[str, Any]) -> None:
        _write_json(self._filepath, report)
        if mlflow.active_run() is not None:
            mlflow.log_artifact(str(self._filepath))

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


def _active_run_tags() -> dict[str, str]:
    """The tags of the MLflow run in progress (profile, commit, evaluation users), copied onto the versions."""
    run = mlflow.active_run()
    return mlflow.get_run(run.info.run_id).data.tags if run is not None else {}


class RegisteredModelDataset(_JSONReport):
    """Saving a ``Registration`` logs the model to the active run, registers it, gates ``champion`` and
    writes the registration report (name, version, aliases, decision, tags); loading reads that report.

    The version is tagged with the registration's tags and the run's profile, commit and evaluation
    users (set by ``RunTagsHooks``).
    """

    def save(self, data: Registration) -> None:
        report = register(data, _active_run_tags())
        self._save_report(report)
        log = logger.info if report["promoted"] else logger.warning
        log("%s version %s: %s", report["model_name"], report["version"], report["promotion"])


class RegisteredModelsDataset(_JSONReport):
    """Saving a list of ``Registration`` registers each in turn as ``RegisteredModelDataset`` does; the report
    is ``{"versions": [report, ...]}`` (an empty list registers nothing)."""

    def save(self, data: list[Registration]) -> None:
        run_tags = _active_run_tags()
        reports = [register(registration, run_tags) for registration in data]
        self._save_report({"versions": reports})
        for report in reports:
            logger.info("%s version %s: %s", report["model_name"], report["version"], report["promotion"])


class ChildRunsDataset(_JSONReport):
    """A summary ``{variant: {..., "mlflow_run": {"params", "metrics", "tags", "curves"}}, ...}`` saved as JSON;
    each variant's ``mlflow_run`` entry also becomes an MLflow run nested under the active run (named after it).

    ``curves`` are ``{metric: [values by step, from 1]}``. Without an active run only the JSON is written.
    """

    RUN_KEY = "mlflow_run"

    def save(self, data: dict[str, Any]) -> None:
        self._save_report(data)
        if mlflow.active_run() is None:
            return
        for variant, entry in data.items():
            if not isinstance(entry, dict) or self.RUN_KEY not in entry:
                continue
            run = entry[self.RUN_KEY]
            with mlflow.start_run(run_name=variant, nested=True):
                mlflow.set_tags(run.get("tags", {}))
                mlflow.log_params(run.get("params", {}))
                mlflow.log_metrics(flatten(run.get("metrics", {})))
                for name, values in run.get("curves", {}).items():
                    for step, value in enumerate(values, start=1):
                        mlflow.log_metric(name, value, step=step)


class RegisteredVersionDataset(AbstractDataset[None, RegisteredVersion]):
    """A registered version (``models:/<name>@<alias>`` or ``models:/<name>/<version>``) downloaded into
    ``download_dir``: its checkpoint, catalog, serving settings and backbone. Read-only; downloaded once per
    dataset instance (one Kedro run), however many nodes read it, so every node sees the same version."""

    def __init__(self, model_uri: str, download_dir: str, metadata: dict[str, Any] | None = None) -> None:
        self._model_uri, self._download_dir, self.metadata = model_uri, Path(download_dir), metadata
        self._loaded: RegisteredVersion | None = None

    def load(self) -> RegisteredVersion:
        if self._loaded is None:
            self._loaded = download_version(self._model_uri, self._download_dir)
            logger.info(
                "loaded %s: %s version %d, %d items",
                self._model_uri,
                self._loaded.name,
                self._loaded.version,
                len(self._loaded.items),
            )
        return self._loaded

    def save(self, data: None) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only: registered versions are written by registration")

    def _describe(self) -> dict[str, Any]:
        return {"model_uri": self._model_uri, "download_dir": str(self._download_dir)}
