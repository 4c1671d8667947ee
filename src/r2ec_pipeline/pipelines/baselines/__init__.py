"""baselines: Popularity and SASRec, trained on the training split."""

from r2ec_pipeline.pipelines.baselines.pipeline import create_pipeline

__all__ = ["create_pipeline"]
