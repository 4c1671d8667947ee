"""Samples (user, history, target) and the two split protocols (method §1).

A sample's target is one interaction and its history the user's earlier interactions in time order
(ties at the same second keep the source order), truncated to the latest ``window_size``. Every
interaction but a user's first yields a sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

SAMPLE_COLUMNS = [
    "user_id",
    "position",
    "target_item_id",
    "target_rating",
    "target_timestamp",
    "history_item_ids",
    "history_ratings",
    "history_timestamps",
]
SPLITS = ("train", "valid", "test")


def build_samples(interactions: pd.DataFrame, window_size: int) -> pd.DataFrame:
    """One row per (user, target); ``position`` counts the user's interactions before the target.

    Histories are oldest first and hold at most ``window_size`` items; the full earlier history
    (needed for ``history_mask: full``) is the user's interactions with a smaller ``position``.
    """
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1, got {window_size}")
    ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    rows: list[tuple] = []
    for user_id, group in ordered.groupby("user_id", sort=True):
        items = group["item_id"].to_numpy()
        ratings = group["rating"].to_numpy(dtype=float)
        stamps = group["timestamp"].to_numpy(dtype=np.int64)
        for position in range(1, len(items)):
            start = max(0, position - window_size)
            rows.append(
                (
                    int(user_id),
                    position,
                    int(items[position]),
                    float(ratings[position]),
                    int(stamps[position]),
                    items[start:position].tolist(),
                    ratings[start:position].tolist(),
                    stamps[start:position].tolist(),
                )
            )
    return pd.DataFrame.from_records(rows, columns=SAMPLE_COLUMNS)


def leave_one_out_split(samples: pd.DataFrame) -> pd.Series:
    """Per user: the last sample is ``test``, the second to last ``valid``, the rest ``train``."""
    from_end = samples.groupby("user_id")["position"].transform("max") - samples["position"]
    labels = np.select([from_end == 0, from_end == 1], ["test", "valid"], default="train")
    return pd.Series(labels, index=samples.index, name="split")


def temporal_split(samples: pd.DataFrame, ratios: tuple[float, float, float]) -> pd.Series:
    """All samples by target time: the first ``ratios[0]`` train, the next ``ratios[1]`` valid, the rest test.

    Ties in time are broken by user and position so the split is deterministic.
    """
    order = samples.sort_values(["target_timestamp", "user_id", "position"], kind="stable").index
    total = len(order)
    first, second = round(total * ratios[0]), round(total * (ratios[0] + ratios[1]))
    labels = pd.Series("test", index=samples.index, name="split", dtype=object)
    labels.loc[order[:first]] = "train"
    labels.loc[order[first:second]] = "valid"
    return labels


def assign_splits(samples: pd.DataFrame, protocol: str, ratios: tuple[float, float, float]) -> pd.Series:
    """Split labels under ``protocol`` (``temporal`` or ``leave_one_out``)."""
    if protocol == "leave_one_out":
        return leave_one_out_split(samples)
    if protocol == "temporal":
        return temporal_split(samples, ratios)
    raise ValueError(f"unknown split protocol {protocol!r} (expected 'temporal' or 'leave_one_out')")


def earlier_items(interactions: pd.DataFrame, samples: pd.DataFrame) -> list[list[int]]:
    """Every item each sample's user interacted with before its target (``history_mask: full``).

    Uses the same time order as ``build_samples``, so ``position`` indexes into it directly.
    """
    return list(EarlierItems(samples, interactions, "full"))


class EarlierItems(Sequence[list[int]]):
    """``mask_lists`` computed on access: the masks of ~100k training samples without materialising them all."""

    def __init__(self, samples: pd.DataFrame, interactions: pd.DataFrame, history_mask: str) -> None:
        self.history_mask = history_mask
        if history_mask == "window":
            self._windows = samples["history_item_ids"].tolist()
            return
        ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
        self._by_user = {
            int(user): group["item_id"].astype(int).tolist() for user, group in ordered.groupby("user_id", sort=False)
        }
        self._keys = list(zip(samples["user_id"].astype(int), samples["position"].astype(int), strict=True))

    def __len__(self) -> int:
        return len(self._windows if self.history_mask == "window" else self._keys)

    def __getitem__(self, index: int) -> list[int]:  # type: ignore[override]  (no slices needed)
        if self.history_mask == "window":
            return list(map(int, self._windows[index]))
        user, position = self._keys[index]
        return self._by_user[user][:position]


def seeded_subset(samples: pd.DataFrame, size: int | None, seed: int) -> pd.DataFrame:
    """A fixed random subset of ``size`` samples in their original order (all of them if None or larger)."""
    if size is None or size >= len(samples):
        return samples
    return samples.sample(n=size, random_state=seed).sort_index()


def fixed_users_last_samples(samples: pd.DataFrame, users: int | None, seed: int) -> pd.DataFrame:
    """The last sample (latest target) of each of ``users`` seeded users, in user order (all samples if None).

    RecPO's fit check trains on this fixed set, visiting each user again and again.
    """
    if users is None:
        return samples
    chosen = pd.Series(sorted(samples["user_id"].unique())).sample(
        n=min(users, samples["user_id"].nunique()), random_state=seed
    )
    last = samples[samples["user_id"].isin(chosen)].sort_values(["user_id", "position"], kind="stable")
    return last.groupby("user_id", sort=True).tail(1)


def mask_lists(samples: pd.DataFrame, interactions: pd.DataFrame, history_mask: str) -> list[list[int]]:
    """Items to mask per sample: the whole earlier history (``full``) or the prompt window."""
    return list(EarlierItems(samples, interactions, history_mask))


def dataset_statistics(interactions: pd.DataFrame, items: int, split_sizes: dict[str, int]) -> dict[str, Any]:
    """The paper's Table 5 row: users, items, interactions, density, samples and their split."""
    users = int(interactions["user_id"].nunique())
    return {
        "users": users,
        "items": items,
        "interactions": len(interactions),
        "density": len(interactions) / (users * items) if users and items else 0.0,
        "samples": sum(split_sizes.values()),
        **split_sizes,
    }


def table5_line(statistics: dict[str, Any]) -> str:
    """``statistics`` as the paper prints it: #Users #Items Density #Samples (train / valid / test)."""
    return (
        f"users {statistics['users']:,} | items {statistics['items']:,} | density {statistics['density']:.4%} | "
        f"samples {statistics['samples']:,} ({statistics['train']:,} / {statistics['valid']:,} / "
        f"{statistics['test']:,})"
    )
