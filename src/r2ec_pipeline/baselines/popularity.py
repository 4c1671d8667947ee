"""Popularity: every user gets the catalog ranked by how often each item occurs in the training data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch


class Popularity:
    """Item scores = training interaction counts; ties keep the lower item id first (stable, seeded by nothing)."""

    def __init__(self, counts: torch.Tensor) -> None:
        self.counts = counts.float()

    @classmethod
    def fit(cls, item_ids: Sequence[int], num_items: int) -> Popularity:
        """Count each id in ``item_ids`` (training targets or interactions); ids run 1..num_items, 0 is padding."""
        ids = np.asarray(item_ids, dtype=np.int64)
        if ids.size and (ids.min() < 1 or ids.max() > num_items):
            raise ValueError(f"item ids must lie in 1..{num_items}, found {ids.min()}..{ids.max()}")
        return cls(torch.as_tensor(np.bincount(ids, minlength=num_items + 1), dtype=torch.float))

    @classmethod
    def from_counts(cls, counts: pd.DataFrame, num_items: int | None = None) -> Popularity:
        """From a saved ``item_id``/``count`` table; ids up to ``num_items`` that it lacks (items added to
        the catalog after training) count 0."""
        size = max(int(counts["item_id"].max()), num_items or 0) + 1  # column = item id, 0 = padding
        dense = np.zeros(size, dtype=np.float32)
        dense[counts["item_id"].astype(int).to_numpy()] = counts["count"].to_numpy()
        return cls(torch.from_numpy(dense))

    def score(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """Scores (users × (num_items + 1)); column 0 is −inf so padding never ranks."""
        scores = self.counts.clone()
        scores[0] = float("-inf")
        return scores.expand(len(histories), -1).clone()
