"""catalog_update: new items added to a registered model without retraining, registered as a new version."""

from r2ec_pipeline.pipelines.catalog_update.pipeline import create_pipeline

__all__ = ["create_pipeline"]
