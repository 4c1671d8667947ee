"""Project-specific Kedro datasets (referenced by type path in ``conf/base/catalog.yml``)."""

from r2ec_pipeline.datasets.models import (
    BackboneModelDataset,
    BackboneTokenizerDataset,
    CheckpointStoreDataset,
    DualHeadModelDataset,
)
from r2ec_pipeline.datasets.raw_sources import AmazonReviews2023Dataset, RecboleWheelDataset

__all__ = [
    "AmazonReviews2023Dataset",
    "BackboneModelDataset",
    "BackboneTokenizerDataset",
    "CheckpointStoreDataset",
    "DualHeadModelDataset",
    "RecboleWheelDataset",
]
