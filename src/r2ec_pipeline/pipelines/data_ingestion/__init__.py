"""Offline ingestion of MovieLens-100k (embedded) or an Amazon Reviews 2023 category (local files)."""

from r2ec_pipeline.pipelines import lazy_pipeline

__getattr__ = lazy_pipeline(__name__)  # the nodes import without Kedro
__all__ = ["create_pipeline"]
