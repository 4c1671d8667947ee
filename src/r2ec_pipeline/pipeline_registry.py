"""Project pipelines: each folder under ``pipelines/`` registers itself under its own name."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# The order in which the stages build on each other; ``__default__`` runs them in this order.
DATA_PIPELINES = ("data_ingestion", "data_validation", "prompts")


def register_pipelines() -> dict[str, Pipeline]:
    """Register every pipeline found in ``r2ec_pipeline.pipelines`` plus ``data`` and ``__default__``."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["data"] = sum((pipelines[name] for name in DATA_PIPELINES), Pipeline([]))
    pipelines["__default__"] = pipelines["data"]
    return pipelines
