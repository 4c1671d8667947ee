"""Full-ranking metrics for a single held-out target per sample (method §6).

Protocol: every catalog item is ranked (no sampled negatives); the user's earlier history is masked
to −inf before ranking; ties count against the target (``model.scoring.target_ranks``). With one
relevant item at 1-based rank r:

- Hit@K  = 1 if r ≤ K else 0
- NDCG@K = 1 / log2(r + 1) if r ≤ K else 0   (the ideal DCG is 1: RecBole's formula)
- MRR    = 1 / r

Each is averaged over samples.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_KS = (5, 10, 20)


def hit_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of samples whose target is ranked within the top k."""
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else 0.0


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean of 1/log2(rank+1) over samples with rank ≤ k (0 otherwise)."""
    ranks = np.asarray(ranks, dtype=float)
    if not len(ranks):
        return 0.0
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank."""
    return float(np.mean(1.0 / np.asarray(ranks, dtype=float))) if len(ranks) else 0.0


def ranking_metrics(ranks: Iterable[int], ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """``{"hit_at_5": …, "ndcg_at_5": …, …, "mrr": …}`` (names MLflow accepts) from the targets' 1-based ranks."""
    ranks = np.fromiter(ranks, dtype=float)
    if len(ranks) and ranks.min() < 1:
        raise ValueError(f"ranks are 1-based; got {ranks.min():g}")
    metrics = {}
    for k in ks:
        metrics[f"hit_at_{k}"] = hit_at_k(ranks, k)
        metrics[f"ndcg_at_{k}"] = ndcg_at_k(ranks, k)
    metrics["mrr"] = mrr(ranks)
    return metrics


def per_sample(ranks: Iterable[int], metric: str) -> np.ndarray:
    """One value per sample of ``metric`` (``hit_at_K``, ``ndcg_at_K`` or ``mrr``): what the means above average."""
    ranks = np.fromiter(ranks, dtype=float)
    if metric == "mrr":
        return 1.0 / ranks
    kind, _, k = metric.rpartition("_at_")
    if kind == "hit" and k.isdigit():
        return (ranks <= int(k)).astype(float)
    if kind == "ndcg" and k.isdigit():
        return np.where(ranks <= int(k), 1.0 / np.log2(ranks + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r} (expected hit_at_K, ndcg_at_K or mrr)")


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Difference of means mean(a) − mean(b) with a paired bootstrap confidence interval.

    ``a[i]`` and ``b[i]`` are two models' values on the same user i. Users are resampled with
    replacement (the same draw for both models), so what varies between users cancels out of the
    difference; the interval is the percentile interval of the resampled differences.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need the same users in the same order: shapes {a.shape} and {b.shape}")
    if not len(a):
        raise ValueError("no users to compare")
    differences = a - b
    draws = np.random.default_rng(seed).integers(0, len(a), size=(resamples, len(a)))
    means = differences[draws].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return {"difference": float(differences.mean()), "low": float(low), "high": float(high), "users": len(a)}
