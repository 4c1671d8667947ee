"""great-expectations validation of the canonical tables."""

from r2ec_pipeline.pipelines.data_validation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
