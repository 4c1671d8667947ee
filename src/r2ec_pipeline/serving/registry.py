"""Log the dual-head model as an MLflow pyfunc, register it, and gate the ``champion`` alias.

A new version always gets the ``challenger`` alias; ``champion`` moves to it only when its
promotion metric (stored as a version tag) beats the current champion's. A refused promotion is a
normal outcome, reported and tagged, never an error.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model

import r2ec_pipeline
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import save_dual_head
from r2ec_pipeline.serving.backbone_store import fetch_backbone, log_backbone
from r2ec_pipeline.serving.pyfunc import SIGNATURE, R2ecPyfunc, ServingSettings

CHAMPION, CHALLENGER = "champion", "challenger"
METRIC_TAG = "promotion_metric"
VALUE_TAG = "promotion_value"
# What the served model imports (`--env-manager local` uses the current environment instead). Pinned to
# the versions installed here, so MLflow need not load the model to infer them.
SERVING_PACKAGES = ("torch", "transformers", "peft", "safetensors", "mlflow", "pandas", "pyarrow")


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str


COMPARED_TAGS = ("dataset", "data_hash", "promotion_users")  # a metric compares only on the same data and users
RUN_TAGS = ("profile", "git_commit", "evaluation_users")  # copied from the run onto the version it registers


@dataclass(frozen=True)
class Registration:
    """A model to register: its files (or the model itself), how it serves, the metric it competes on and
    the version's tags."""

    checkpoint: Path | R2ecModel
    backbone: Path
    items: pd.DataFrame
    settings: ServingSettings
    input_example: pd.DataFrame
    model_name: str
    metric: str
    value: float | None
    tags: dict[str, str]


def promotion_decision(
    metric: str, challenger: float | None, champion: float | None, mismatch: str | None = None
) -> Promotion:
    """Promote when there is no champion, or when the challenger is strictly better on ``metric``
    computed on the same dataset and users (``mismatch`` says how they differ, if they do)."""
    if challenger is None:
        return Promotion(False, f"not promoted: the challenger has no {metric}")
    if champion is None:
        return Promotion(True, f"promoted: no champion yet ({metric} = {challenger:.4f})")
    if mismatch:
        return Promotion(False, f"not promoted: {metric} is not comparable with the champion's ({mismatch})")
    if challenger > champion:
        return Promotion(True, f"promoted: {metric} {challenger:.4f} > champion's {champion:.4f}")
    return Promotion(False, f"not promoted: {metric} {challenger:.4f} does not beat the champion's {champion:.4f}")


def basis_mismatch(champion: dict[str, str], challenger: dict[str, str]) -> str | None:
    """How the champion's metric basis (dataset, data hash, users) differs from the challenger's; None if equal."""
    differences = [
        f"{tag} {champion.get(tag, 'untagged')!r} vs {challenger.get(tag, 'untagged')!r}"
        for tag in COMPARED_TAGS
        if champion.get(tag) != challenger.get(tag)
    ]
    return "; ".join(differences) or None


def log_pyfunc(
    checkpoint: Path, backbone: Path, items: pd.DataFrame, settings: ServingSettings, input_example: pd.DataFrame
) -> mlflow.models.model.ModelInfo:
    """Log the model (adapters, item table, tokenizer, config, catalog) to the active run.

    The backbone is not copied into the version: it is logged once per content (``log_backbone``) and
    the version's ``serving.json`` names it by URI and sha256.
    """
    uri, digest = log_backbone(backbone)
    settings = replace(settings, backbone_uri=uri, backbone_sha256=digest)
    with tempfile.TemporaryDirectory() as staging:
        items_path, serving_path = Path(staging) / "items.parquet", Path(staging) / "serving.json"
        items[["item_id", "raw_item_id", "title"]].to_parquet(items_path, index=False)
        serving_path.write_text(json.dumps(asdict(settings), indent=2))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=R2ecPyfunc(),
            artifacts={"checkpoint": str(checkpoint), "items": str(items_path), "serving": str(serving_path)},
            code_paths=[str(Path(r2ec_pipeline.__file__).parent)],
            signature=SIGNATURE,
            input_example=input_example,
            pip_requirements=pip_requirements(),
        )


def champion_metric(client: MlflowClient, name: str, metric: str) -> tuple[float | None, dict[str, str]]:
    """The current champion's value of ``metric`` (None when there is no champion or it lacks the tag) and tags."""
    try:
        version = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, {}
    if version.tags.get(METRIC_TAG) != metric or VALUE_TAG not in version.tags:
        return None, dict(version.tags)
    return float(version.tags[VALUE_TAG]), dict(version.tags)


def register_and_gate(
    model_uri: str, name: str, metric: str, value: float | None, tags: dict[str, str] | None = None
) -> dict[str, object]:
    """Register ``model_uri`` as a new version of ``name``: challenger always, champion if it wins.

    ``tags`` (dataset, data_hash, promotion_users, profile, git_commit, ...) go on the version; the
    champion moves only when its ``COMPARED_TAGS`` equal the challenger's.
    """
    client = MlflowClient()
    tags = dict(tags or {})
    version = mlflow.register_model(model_uri, name).version
    for key, tag in tags.items():
        client.set_model_version_tag(name, version, key, tag)
    if value is not None:
        client.set_model_version_tag(name, version, METRIC_TAG, metric)
        client.set_model_version_tag(name, version, VALUE_TAG, repr(float(value)))
    client.set_registered_model_alias(name, CHALLENGER, version)
    champion_value, champion_tags = champion_metric(client, name, metric)
    decision = promotion_decision(metric, value, champion_value, basis_mismatch(champion_tags, tags))
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion", decision.reason)
    aliases = sorted(client.get_model_version(name, version).aliases)
    return {
        "model_name": name,
        "version": int(version),
        "aliases": aliases,
        "promoted": decision.promoted,
        "promotion": decision.reason,
        "metric": metric,
        "value": value,
        "model_uri": model_uri,
        "tags": tags,
    }


def promote(name: str, version: int, reason: str) -> list[str]:
    """Move ``champion`` to ``version`` by a person's decision, e.g. where the rule found the two models'
    metrics not comparable; ``reason`` replaces the version's ``promotion`` tag. Returns its aliases."""
    client = MlflowClient()
    client.set_registered_model_alias(name, CHAMPION, str(version))
    client.set_model_version_tag(name, str(version), "promotion", reason)
    return sorted(client.get_model_version(name, str(version)).aliases)


def register(registration: Registration, run_tags: dict[str, str]) -> dict[str, object]:
    """Log the model to the active run, register it and gate ``champion``; the version carries
    ``registration.tags`` plus the run's ``RUN_TAGS``. Returns the registration report."""
    with tempfile.TemporaryDirectory() as staging:
        checkpoint = registration.checkpoint
        if isinstance(checkpoint, R2ecModel):  # a model in memory is written as a checkpoint folder first
            checkpoint = save_dual_head(checkpoint, Path(staging) / "checkpoint")
        info = log_pyfunc(
            checkpoint, registration.backbone, registration.items, registration.settings, registration.input_example
        )
    tags = {key: run_tags[key] for key in RUN_TAGS if key in run_tags} | registration.tags
    return register_and_gate(info.model_uri, registration.model_name, registration.metric, registration.value, tags)


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered version's files on this machine: what a catalog update starts from."""

    name: str
    version: int
    checkpoint: Path  # the dual-head checkpoint folder
    items: pd.DataFrame  # its catalog (CATALOG_COLUMNS)
    settings: ServingSettings
    backbone: Path  # the backbone folder it loads onto (fetched once per content)
    tags: dict[str, str]


def _version(client: MlflowClient, model_uri: str) -> ModelVersion:
    """The version ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` names; a clear error otherwise."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/(\d+))", model_uri)
    if match is None:
        raise MlflowException.invalid_parameter_value(
            f"model URI {model_uri!r} must read models:/<name>@<alias> or models:/<name>/<version>"
        )
    name, alias, number = match.groups()
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except MlflowException as error:
        raise MlflowException.invalid_parameter_value(
            f"{model_uri} is not in the registry at {mlflow.get_tracking_uri()}: run `make run` (or the "
            f"registration pipeline) first ({error.message})"
        ) from None


def download_version(model_uri: str, folder: Path) -> RegisteredVersion:
    """Download a registered version's artifacts into ``folder`` (replaced) and read its catalog and settings."""
    client = MlflowClient()
    found = _version(client, model_uri)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{found.name}/{found.version}", dst_path=str(folder)))
    artifacts = Model.load(str(local)).flavors["python_function"]["artifacts"]
    paths = {name: local / entry["path"] for name, entry in artifacts.items()}
    settings = ServingSettings(**json.loads(paths["serving"].read_text()))
    backbone = (
        fetch_backbone(settings.backbone_uri, settings.backbone_sha256) if settings.backbone_uri else paths["backbone"]
    )
    return RegisteredVersion(
        name=found.name,
        version=int(found.version),
        checkpoint=paths["checkpoint"],
        items=pd.read_parquet(paths["items"]),
        settings=settings,
        backbone=backbone,
        tags=dict(found.tags),
    )
