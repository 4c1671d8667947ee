"""evaluation: every model ranked over the whole catalog on validation and test (method §6)."""

from r2ec_pipeline.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
