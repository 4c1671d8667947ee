"""registration: the RecPO model as an MLflow pyfunc, registered as challenger, promoted if better."""

from r2ec_pipeline.pipelines.registration.pipeline import create_pipeline

__all__ = ["create_pipeline"]
