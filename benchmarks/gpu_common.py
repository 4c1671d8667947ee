"""What the GPU speed benchmark reads and how it times: the carried, validated tables, and a timer.

``gpu_speed.py`` runs on a lent machine with torch, transformers and peft but no Kedro or MLflow; this
module needs nothing more. The tables are the data pipelines' outputs (the great-expectations gate passed),
copied from the CPU machine by ``gpu_carry.sh``: no second data path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from r2ec_pipeline.data.samples import mask_lists, seeded_subset
from r2ec_pipeline.model.sft_batched import synchronize

# the catalog's paths of the tables the benchmark reads (conf/base/catalog.yml)
TABLES = {
    "interactions": "data/03_primary/interactions.parquet",
    "train": "data/05_model_input/train_samples.parquet",
    "test": "data/05_model_input/test_samples.parquet",
    "items": "data/05_model_input/item_prompts.parquet",
}


def load_tables(data_root: Path, train_samples: int | None) -> dict[str, Any]:
    """The tables the data pipelines validated and rendered (``data/03_primary``, ``data/05_model_input`` under
    ``data_root``, carried from the CPU machine): training samples (a seeded subset of ``train_samples``),
    test samples, the item prompts and each training sample's earlier items."""
    paths = {name: data_root / path for name, path in TABLES.items()}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"carried tables missing: {missing} (benchmarks/gpu_carry.sh copies them)")
    tables = {name: pd.read_parquet(path) for name, path in paths.items()}
    train = seeded_subset(tables["train"], train_samples, 0)
    return {
        "train": train,
        "test": tables["test"],
        "item_prompt": dict(zip(tables["items"]["item_id"].astype(int), tables["items"]["prompt"], strict=True)),
        "histories": {"train": mask_lists(train, tables["interactions"], "full")},
    }


def timed(function: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> float:
    """Mean seconds of ``function()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - started) / repeats
