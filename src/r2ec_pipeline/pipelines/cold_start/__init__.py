"""cold_start: the newest items held out of training, added by a catalog update, ranked for the users who chose them."""

from r2ec_pipeline.pipelines.cold_start.pipeline import create_pipeline

__all__ = ["create_pipeline"]
