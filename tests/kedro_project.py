"""Running a Kedro project on tiny local data (the ``project`` fixture, in conftest): the tiny sizes, two ways to run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kedro.framework.session import KedroSession

from r2ec_pipeline.config.profile import nested_keys

TINY_TRAINING = {
    "model.adapters.top_layers": 1,
    "model.adapters.r": 2,
    "model.adapters.alpha": 4,
    "model.encode_batch_size": 4,
    "sft.steps": 2,
    "sft.batch_size": 2,
    "sft.negatives": 2,
    "sft.eval_every": 1,
    "sft.eval_users": 2,
    "recpo.per_device_train_batch_size": 2,
    "recpo.num_generations": 2,
    "recpo.max_completion_length": 2,
    "recpo.max_steps": 2,
    "recpo.save_steps": 1,
    "recpo.eval_users": 2,
    "recpo.learning_rate": 1e-2,
    "baselines.sasrec.max_epochs": 2,
    "baselines.sasrec.hidden_size": 8,
    "evaluation.users": 3,
    "evaluation.valid_users": 3,
    "evaluation.reasoning_users": 2,
    "evaluation.recpo_reasoning_users": 2,
    "evaluation.zero_shot_users": 2,
    "evaluation.reasoning_tokens": 2,
    "evaluation.top_n": 4,
    "registration.reasoning_tokens": 2,
}


def run_session(project: Path, pipeline: str = "__default__", **runtime_params):
    """``pipeline`` in a Kedro session of this process, on the tiny data and sizes (``runtime_params`` last)."""
    params = {
        "data_ingestion.source": "amazon_2023",
        "data_ingestion.amazon.min_items": 3,
        **TINY_TRAINING,
        **runtime_params,
    }
    with KedroSession.create(project_path=project, runtime_params=nested_keys(params)) as session:
        return session.run(pipeline_names=[pipeline])


def run_cli(project: Path, pipeline: str = "__default__", **runtime_params) -> None:
    """`kedro run` in a fresh process: kedro-mlflow's hooks pile up across sessions of one process and
    log into each other's runs, so tests that compare or count runs start their own processes."""
    (project / "src").mkdir(exist_ok=True)  # the kedro CLI wants a source folder; the package is installed
    params = {
        "data_ingestion.source": "amazon_2023",
        "data_ingestion.amazon.min_items": 3,
        **TINY_TRAINING,
        **runtime_params,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines",
            pipeline,
            "--params",
            ",".join(f"{key}={value}" for key, value in params.items()),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
