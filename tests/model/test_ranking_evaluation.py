"""Full-ranking evaluation from scores to metrics: ties, ranks K and K+1, masked history, RecBole's formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from r2ec_pipeline.metrics import ranking_metrics
from r2ec_pipeline.model.evaluation import Ranking
from r2ec_pipeline.model.scoring import mask_items

NEG = float("-inf")


def _metrics(scores: list[list[float]], targets: list[int], histories=None, ks=(1, 2, 3)) -> dict[str, float]:
    tensor = torch.tensor(scores)
    if histories is not None:
        mask_items(tensor, histories)
    return ranking_metrics(Ranking.from_scores(tensor, targets, top_n=3).ranks, ks)


def test_a_tie_at_the_cutoff_pushes_the_target_to_rank_k_plus_one():
    # items 1..4; the target (item 2) ties item 3 for second place: pessimistic rank 3, so Hit@2 = 0
    tied = _metrics([[NEG, 0.9, 0.5, 0.5, 0.1]], [2])
    assert (tied["hit_at_2"], tied["hit_at_3"]) == (0.0, 1.0)
    assert tied["ndcg_at_3"] == pytest.approx(1 / math.log2(4)) and tied["mrr"] == pytest.approx(1 / 3)
    untied = _metrics([[NEG, 0.9, 0.5, 0.4, 0.1]], [2])  # same target at rank K = 2 exactly
    assert (untied["hit_at_2"], untied["ndcg_at_2"]) == (1.0, pytest.approx(1 / math.log2(3)))


def test_masked_history_cannot_outrank_the_target_and_never_appears_in_the_top_list():
    scores = [[NEG, 0.9, 0.8, 0.7, 0.1]]
    assert _metrics(scores, [3])["mrr"] == pytest.approx(1 / 3)
    masked = _metrics(scores, [3], histories=[[1, 2]])  # the two items above it were already seen
    assert masked["mrr"] == 1.0 and masked["hit_at_1"] == 1.0
    ranking = Ranking.from_scores(mask_items(torch.tensor(scores), [[1, 2]]), [3], top_n=3)
    assert ranking.top_ids[0, :2].tolist() == [3, 4] and np.isneginf(ranking.top_scores[0, 2])


def test_a_target_masked_as_history_ranks_last_not_first():
    # a repeated item: masking it must not award a hit (its −inf ties every other masked item)
    metrics = _metrics([[NEG, 0.9, 0.8, 0.7, 0.1]], [2], histories=[[2]])
    assert metrics["hit_at_3"] == 0.0 and metrics["mrr"] == pytest.approx(1 / 4)  # last of 4 items


def _recbole_ndcg_hit_mrr(pos_index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RecBole 1.2's topk metrics (recbole/evaluator/metrics.py: NDCG, Hit, MRR) for one positive per user,
    transcribed: ``pos_index[u, j]`` is True when the user's j-th recommendation is the target."""
    pos_len = np.ones(pos_index.shape[0], dtype=int)
    len_rank = np.full_like(pos_len, pos_index.shape[1])
    idcg_len = np.where(pos_len > len_rank, len_rank, pos_len)
    iranks = np.zeros_like(pos_index, dtype=float)
    iranks[:, :] = np.arange(1, pos_index.shape[1] + 1)
    idcg = np.cumsum(1.0 / np.log2(iranks + 1), axis=1)
    for row, idx in enumerate(idcg_len):
        idcg[row, idx:] = idcg[row, idx - 1]
    ranks = np.zeros_like(pos_index, dtype=float)
    ranks[:, :] = np.arange(1, pos_index.shape[1] + 1)
    dcg = np.cumsum(np.where(pos_index, 1.0 / np.log2(ranks + 1), 0), axis=1)
    ndcg = dcg / idcg
    hit = (np.cumsum(pos_index, axis=1) > 0).astype(int)
    idxs = pos_index.argmax(axis=1)
    mrr = np.zeros_like(pos_index, dtype=float)
    for row, idx in enumerate(idxs):
        if pos_index[row, idx] > 0:
            mrr[row, idx:] = 1 / (idx + 1)
    return ndcg, hit, mrr


def test_metrics_agree_with_recboles_formulas_on_a_random_fixture():
    generator = torch.Generator().manual_seed(7)
    scores = torch.rand(40, 31, generator=generator)  # 40 users, items 1..30 (distinct scores: no ties)
    scores[:, 0] = NEG
    targets = torch.randint(1, 31, (40,), generator=generator)
    histories = [torch.randperm(30, generator=generator)[:5].add(1).tolist() for _ in range(40)]
    histories = [[i for i in h if i != int(t)] for h, t in zip(histories, targets, strict=True)]
    masked = mask_items(scores.clone(), histories)
    ours = ranking_metrics(Ranking.from_scores(masked, targets.tolist(), top_n=30).ranks, ks=(5, 10, 20))
    full_list = masked.topk(30, dim=1).indices.numpy()  # every item, best first (RecBole's topk over all)
    ndcg, hit, mrr = _recbole_ndcg_hit_mrr(full_list == targets.numpy()[:, None])
    for k in (5, 10, 20):
        assert ours[f"ndcg_at_{k}"] == pytest.approx(ndcg[:, k - 1].mean())
        assert ours[f"hit_at_{k}"] == pytest.approx(hit[:, k - 1].mean())
    assert ours["mrr"] == pytest.approx(mrr[:, -1].mean())  # untruncated MRR = RecBole's MRR@|catalog|
    assert 0 < ours["hit_at_5"] < ours["hit_at_20"] < 1  # the fixture exercises hits and misses
