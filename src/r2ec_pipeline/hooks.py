"""Project hooks: fail on a bad parameter before any node runs; size torch's thread pool; let only the
first process of a multi-process run (``accelerate launch`` / torchrun) write outputs."""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime
from typing import Any

from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline

from r2ec_pipeline.config import validate_parameters
from r2ec_pipeline.run_tags import (
    DEFAULT_PIPELINE,
    data_hash,
    dataset_name,
    evaluation_users,
    git_commit,
    missing_tags,
    profile,
    run_name,
)

logger = logging.getLogger(__name__)


DVC_TRACKED_ENVIRONMENTS = (None, "base", "local")  # dvc.yaml's params are conf/base's (local: machine overrides)


def refuse_untracked_environment(dvc_stage: str | None, env: str | None) -> None:
    """Stop a DVC stage run under a Kedro environment whose parameters dvc.yaml does not track.

    dvc.yaml lists conf/base's parameter files, so ``KEDRO_ENV=paper dvc repro`` would train with the
    paper's parameters while DVC records (and later compares) the base ones: stale results that look
    fresh. Such environments run with ``kedro run --env <env>`` instead.
    """
    if dvc_stage and env not in DVC_TRACKED_ENVIRONMENTS:
        raise RuntimeError(
            f"dvc repro (stage {dvc_stage!r}) runs with conf/base parameters only, but KEDRO_ENV is {env!r}: "
            f"DVC would record results of conf/{env} as if they came from conf/base. Run that environment with "
            f"`kedro run --env {env}` (unset KEDRO_ENV for dvc repro)."
        )


class ParameterValidationHooks:
    """Validate all parameter blocks against their typed models as soon as the context exists.

    Then set torch's intra-op threads explicitly (``model.num_threads``, default every core):
    oversubscribed thread pools made generation 10x slower on a 2-core machine.
    """

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        refuse_untracked_environment(os.environ.get("DVC_STAGE"), context.env)
        typed = validate_parameters(context.params)
        logger.info("parameters validated: %s", ", ".join(sorted(context.params)))
        import torch

        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
        threads = typed["model"].num_threads or max(1, (os.cpu_count() or 1) // local_processes)
        torch.set_num_threads(threads)
        logger.info("torch threads: %d", threads)


def runner_name(runner: Any) -> str:
    """The runner's class name, whether Kedro passes the runner, its name, its repr
    (``<kedro.runner.sequential_runner.SequentialRunner object at 0x…>``) or ``"None"`` (the default runner)."""
    text = runner if isinstance(runner, str) else type(runner).__name__
    found = re.search(r"(\w+Runner)\b", text)
    return found.group(1) if found else "SequentialRunner"


def process_rank() -> int:
    """This process's global rank under torchrun / ``accelerate launch`` (0 when run alone)."""
    return int(os.environ.get("RANK", "0"))


class DistributedRunHooks:
    """Under a multi-process launch every process runs the pipeline, but only rank 0 writes outputs.

    The other ranks' outputs become in-memory datasets, so no file, checkpoint or MLflow entry is
    written twice (settings.py also turns kedro-mlflow's hooks off for them: one MLflow run per launch).
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        if process_rank() == 0:
            return
        for name in pipeline.all_outputs():
            catalog[name] = MemoryDataset(copy_mode="assign")
        logger.info("rank %d: outputs kept in memory, written by rank 0 only", process_rank())


class RunTagsHooks:
    """Name kedro-mlflow's run after what ran and tag it with what its numbers depend on.

    Name: ``<pipelines> · <profile> · <start time>``. Tags: ``dataset``, ``profile``, ``git_commit``,
    ``evaluation_users`` (the evaluation's user sets) and ``data_hash`` (of the validated interactions,
    once the run has them). Registration copies them onto the model version it registers. The experiment
    gets the tags mlflow.yml gives it (kind, description) if it lacks them: MLflow sets them only when it
    creates the experiment, so a store that predates them would open on the wrong page.
    """

    def __init__(self) -> None:
        self._hashed_run: str | None = None  # the run whose data_hash is set: hashed once, not on every load
        self._experiment_tags: dict[str, str] = {}

    @hook_impl(trylast=True)  # after kedro-mlflow has read mlflow.yml into context.mlflow
    def after_context_created(self, context: KedroContext) -> None:
        config = getattr(context, "mlflow", None)
        tags = config.tracking.experiment.create_experiment_kwargs.tags if config is not None else None
        self._experiment_tags = dict(tags or {})

    @hook_impl(trylast=True)  # after kedro-mlflow's own before_pipeline_run has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return
        client = mlflow.MlflowClient()
        experiment = client.get_experiment(run.info.experiment_id)
        for key, value in missing_tags(experiment.tags, self._experiment_tags).items():
            client.set_experiment_tag(experiment.experiment_id, key, value)
        params = catalog.load("parameters") if "parameters" in catalog else {}
        pipelines = run_params.get("pipeline_names") or [run_params.get("pipeline_name") or DEFAULT_PIPELINE]
        mlflow.set_tags(
            {
                "mlflow.runName": run_name(pipelines, run_params.get("env"), datetime.now()),
                "profile": profile(run_params.get("env")),
                "dataset": dataset_name(params.get("data_ingestion", {})),
                "git_commit": git_commit(run_params.get("project_path") or "."),
                "evaluation_users": evaluation_users(params.get("evaluation", {})),
                # kedro-mlflow tags the run with every run parameter as it is: the runner object's repr
                "runner": runner_name(run_params.get("runner")),
            }
        )

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        self._tag_data(dataset_name, data)

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        self._tag_data(dataset_name, data)

    def _tag_data(self, name: str, data: Any) -> None:
        import mlflow

        run = mlflow.active_run()
        if name == "validated_interactions" and run is not None and run.info.run_id != self._hashed_run:
            mlflow.set_tag("data_hash", data_hash(data))
            self._hashed_run = run.info.run_id
