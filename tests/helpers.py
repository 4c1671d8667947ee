"""Test helpers: tiny canonical tables and in-memory Kedro catalogs (tiny models: ``r2ec_pipeline.model.tiny_backbone``)."""

from __future__ import annotations

import socket
from typing import Any

import pandas as pd
from kedro.io import DataCatalog, MemoryDataset

from r2ec_pipeline.model.tiny_backbone import build_tiny_backbone, build_tiny_tokenizer

__all__ = ["KeptDataset", "build_tiny_backbone", "build_tiny_tokenizer", "free_port", "memory_catalog", "tiny_tables"]


def tiny_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Canonical interactions (4 users, 6 items, ratings 1..5) and items, valid under every rule."""
    rows = [
        # user, item, rating, timestamp
        (1, 1, 5.0, 100),
        (1, 2, 4.0, 200),
        (1, 3, 3.0, 300),
        (1, 4, 5.0, 400),
        (2, 2, 2.0, 150),
        (2, 5, 4.0, 250),
        (2, 6, 1.0, 350),
        (3, 1, 3.0, 120),
        (3, 6, 5.0, 220),
        (4, 3, 4.0, 500),
        (4, 4, 4.0, 500),
        (4, 5, 2.0, 600),
    ]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    interactions["raw_user_id"] = "u" + interactions["user_id"].astype(str)
    interactions["raw_item_id"] = "i" + interactions["item_id"].astype(str)
    items = pd.DataFrame(
        {
            "item_id": range(1, 7),
            "raw_item_id": [f"i{i}" for i in range(1, 7)],
            "title": ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Babe"],
            "year": ["1995"] * 6,
            "genres": ["Animation", "Action", "Thriller", "Comedy", "Crime", "Drama"],
        }
    )
    return interactions, items


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner does not release after its last use, so a test can read it back."""

    def _release(self) -> None:
        pass


def memory_catalog(inputs: dict[str, Any], outputs: list[str]) -> DataCatalog:
    """A catalog of in-memory inputs and kept outputs for running one pipeline in a test."""
    datasets = {name: MemoryDataset(value) for name, value in inputs.items()}
    datasets.update({name: KeptDataset() for name in outputs})
    return DataCatalog(datasets)


def free_port() -> int:
    """A TCP port free on loopback right now (servers and torchrun rendezvous; never a fixed number)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
