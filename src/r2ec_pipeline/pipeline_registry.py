"""Project pipelines, registered explicitly so the whole flow reads from this file.

(Kedro 1.7's ``find_pipelines`` loads only the pipelines named on the command line, which would
break the composite ``data`` and ``__default__`` pipelines.)
"""

from __future__ import annotations

from kedro.pipeline import Pipeline

from r2ec_pipeline.pipelines.ablations import pipeline as ablations
from r2ec_pipeline.pipelines.baselines import pipeline as baselines
from r2ec_pipeline.pipelines.catalog_update import pipeline as catalog_update
from r2ec_pipeline.pipelines.cold_start import pipeline as cold_start
from r2ec_pipeline.pipelines.data_ingestion import pipeline as data_ingestion
from r2ec_pipeline.pipelines.data_validation import pipeline as data_validation
from r2ec_pipeline.pipelines.evaluation import pipeline as evaluation
from r2ec_pipeline.pipelines.prompts import pipeline as prompts
from r2ec_pipeline.pipelines.recpo import pipeline as recpo
from r2ec_pipeline.pipelines.registration import pipeline as registration
from r2ec_pipeline.pipelines.sft import pipeline as sft

# The stages in the order they build on each other; each is also a DVC stage of the same name.
STAGES = {
    "data_ingestion": data_ingestion.create_pipeline,
    "data_validation": data_validation.create_pipeline,
    "prompts": prompts.create_pipeline,
    "baselines": baselines.create_pipeline,
    "sft": sft.create_pipeline,
    "recpo": recpo.create_pipeline,
    "evaluation": evaluation.create_pipeline,
}
# The stages a model trains with; the cold-start evaluation retrains them without the newest items.
TRAINING = ("prompts", "baselines", "sft", "recpo")
# Not DVC stages: publishing to the MLflow registry is a side effect; the ablation grid, catalog updates
# of a registered model and the cold-start evaluation are run on demand (`kedro run --pipelines <name>`).
RELEASE = {"registration": registration.create_pipeline}
ON_DEMAND = {
    "ablations": ablations.create_pipeline,
    "catalog_update": catalog_update.create_pipeline,
    "cold_start": lambda: cold_start.create_pipeline(sum((STAGES[name]() for name in TRAINING), Pipeline([]))),
}
DATA_PIPELINES = ("data_ingestion", "data_validation", "prompts")


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline under its own name, ``data`` (ingestion → validation → prompts) and ``__default__`` (all)."""
    pipelines = {name: create() for name, create in {**STAGES, **RELEASE, **ON_DEMAND}.items()}
    pipelines["data"] = sum((pipelines[name] for name in DATA_PIPELINES), Pipeline([]))
    pipelines["__default__"] = sum(pipelines[name] for name in [*STAGES, *RELEASE])
    return pipelines
