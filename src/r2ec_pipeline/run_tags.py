"""What an MLflow run and a registered version say about themselves: name, dataset, profile, commit, data, users.

Plain functions (no Kedro, no MLflow): ``hooks.RunTagsHooks`` puts them on the Kedro run's MLflow run,
and registration copies them onto the model version it registers, where the champion gate compares them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_PIPELINE = "__default__"


def run_name(pipelines: Sequence[str] | None, env: str | None, started: datetime) -> str:
    """``<pipelines> · <profile> · <time>``, e.g. ``all · base · 2026-11-27 10:30`` (Kedro's default: ``__default__``)."""
    names = [("all" if name == DEFAULT_PIPELINE else name) for name in (pipelines or [DEFAULT_PIPELINE])]
    return f"{'+'.join(names)} · {profile(env)} · {started:%Y-%m-%d %H:%M}"


def profile(env: str | None) -> str:
    """The Kedro environment that set the parameters (none given: ``base``, with ``local`` overrides)."""
    return env or "base"


def dataset_name(ingestion: Mapping[str, Any]) -> str:
    """The ingestion source (``movielens_100k``, ``amazon_2023``); ``data_hash`` tells files of one source apart."""
    return str(ingestion.get("source", "unknown"))


def git_commit(project: str | Path) -> str:
    """HEAD's sha, with ``+dirty`` when tracked files differ from it. Outside a git checkout (a copy of the
    tree on a lent GPU machine) the ``R2EC_GIT_COMMIT`` environment variable, which the copy's sender sets
    (``benchmarks/gpu_carry.sh``), else ``unknown``."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("R2EC_GIT_COMMIT", "unknown")


def data_hash(table: pd.DataFrame) -> str:
    """A content hash of a table (values and column names, not the index): equal data, equal hash."""
    digest = hashlib.sha256(",".join(map(str, table.columns)).encode())
    digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def evaluation_users(evaluation: Mapping[str, Any]) -> str:
    """The evaluation's user sets as one tag value (null counts mean every user of the split)."""
    keys = ("users", "valid_users", "reasoning_users", "recpo_reasoning_users", "zero_shot_users")
    parts = [f"{key}={'all' if evaluation.get(key) is None else evaluation[key]}" for key in keys if key in evaluation]
    return ",".join(parts + [f"seed={evaluation.get('seed', 0)}"])


def metric_users(metric: str, users: int | None, seed: int) -> str:
    """Which users a promotion metric was computed on: split, count and the seeded order they come from."""
    return f"{metric.split('.', 1)[0]}: {users if users is not None else '?'} users, seed {seed}"


def missing_tags(existing: Mapping[str, str], wanted: Mapping[str, str]) -> dict[str, str]:
    """The ``wanted`` tags an experiment lacks; a value someone set differently (in the UI) is theirs to keep."""
    return {key: str(value) for key, value in wanted.items() if key not in existing}


def experiment_id(name: str, tracking_uri: str) -> str:
    """The id of experiment ``name`` in the store, for a link to it (the UI's routes use ids, not names)."""
    import mlflow

    experiment = mlflow.MlflowClient(tracking_uri).get_experiment_by_name(name)
    if experiment is None:
        raise SystemExit(f"no experiment {name!r} in {tracking_uri} yet: run `make run` first")
    return experiment.experiment_id


if __name__ == "__main__":  # `python -m r2ec_pipeline.run_tags r2ec`: the experiment's id (make mlflow-ui)
    import os
    import sys

    print(experiment_id(sys.argv[1], os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")))
