"""The backbone in the MLflow store once per content, not once per registered version.

A registered R²ec version holds what training changed (adapters, item table, tokenizer, config) and the
catalog: a few MB. The backbone's Hugging Face folder (hundreds of MB for SmolLM2, GBs for a 2B model)
is logged once, as the artifacts of a run in the ``r2ec-backbones`` experiment tagged with the sha256
of its files, and every version names it by that run's URI and hash. Loading a version fetches the
backbone from the same MLflow store (offline, like the version itself) into a local cache keyed by the
hash, once per machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import mlflow
from mlflow import MlflowClient

EXPERIMENT = "r2ec-backbones"
HASH_TAG = "backbone_sha256"
ARTIFACT_PATH = "backbone"


def folder_digest(folder: str | os.PathLike[str]) -> str:
    """sha256 over every file's relative path and bytes, in sorted order: equal folders, equal digest."""
    root, digest = Path(folder), hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def log_backbone(folder: str | os.PathLike[str], client: MlflowClient | None = None) -> tuple[str, str]:
    """The backbone's (artifact URI, sha256) in the current MLflow store, logging it only if no run has it yet."""
    client = client or MlflowClient()
    digest = folder_digest(folder)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    found = client.search_runs(
        [experiment_id], f"tags.{HASH_TAG} = '{digest}' and attributes.status = 'FINISHED'", max_results=1
    )
    if found:
        return f"runs:/{found[0].info.run_id}/{ARTIFACT_PATH}", digest
    run = client.create_run(
        experiment_id,
        run_name=f"{Path(folder).name} {digest[:12]}",
        tags={HASH_TAG: digest, "backbone": Path(folder).name},
    )
    try:
        client.log_artifacts(run.info.run_id, str(folder), ARTIFACT_PATH)
    except Exception:
        client.set_terminated(run.info.run_id, "FAILED")  # never found by the search above
        raise
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/{ARTIFACT_PATH}", digest


def default_cache() -> Path:
    return Path(os.environ.get("R2EC_BACKBONE_CACHE", Path.home() / ".cache/r2ec-pipeline/backbones"))


def fetch_backbone(uri: str, digest: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """A local folder with the backbone at ``uri`` (checked against ``digest``), downloaded once per machine."""
    target = Path(cache or default_cache()) / digest
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=target.parent))
    try:  # downloaded aside, checked, then moved in: never a half-written cache entry
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)))
        if (found := folder_digest(folder)) != digest:
            raise ValueError(f"backbone at {uri} has sha256 {found}, the model expects {digest}")
        os.replace(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
