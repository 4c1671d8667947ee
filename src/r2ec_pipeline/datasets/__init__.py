"""Project-specific Kedro datasets (referenced by type path in ``conf/base/catalog.yml``)."""

from r2ec_pipeline.datasets.models import BackboneModelDataset, DualHeadModelDataset
from r2ec_pipeline.datasets.raw_sources import AmazonReviews2023Dataset, RecboleWheelDataset
from r2ec_pipeline.datasets.tokenizer import BackboneTokenizerDataset

__all__ = [
    "AmazonReviews2023Dataset",
    "BackboneModelDataset",
    "BackboneTokenizerDataset",
    "DualHeadModelDataset",
    "RecboleWheelDataset",
]
