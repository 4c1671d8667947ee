"""Project-specific Kedro datasets (referenced by type path in ``conf/base/catalog.yml``)."""

from r2ec_pipeline.datasets.models import (
    BackboneFolderDataset,
    BackboneModelDataset,
    BackboneTokenizerDataset,
    CheckpointStoreDataset,
    DualHeadModelDataset,
    FolderDataset,
    SASRecDataset,
)
from r2ec_pipeline.datasets.raw_sources import AmazonReviews2023Dataset, RecboleWheelDataset

__all__ = [
    "BackboneFolderDataset",
    "AmazonReviews2023Dataset",
    "BackboneModelDataset",
    "BackboneTokenizerDataset",
    "CheckpointStoreDataset",
    "DualHeadModelDataset",
    "FolderDataset",
    "RecboleWheelDataset",
    "SASRecDataset",
]
