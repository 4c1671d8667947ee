"""Full-ranking evaluation of the rec head (method §6), shared by SFT, RecPO and the evaluation stage.

Two modes: ``direct`` reads h at the answer tag right after the prompt (no reasoning); ``reasoning``
reads h after greedy reasoning. ``rank_both_modes`` gets both from one prompt pass per user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from r2ec_pipeline.metrics import DEFAULT_KS, ranking_metrics
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.scoring import target_ranks, top_k

MODES = ("direct", "reasoning")


@dataclass
class Ranking:
    """Per sample: the target's 1-based rank over the whole catalog and the best ``top_n`` items."""

    ranks: np.ndarray  # (n,)
    top_ids: np.ndarray  # (n, top_n) item ids, best first
    top_scores: np.ndarray  # (n, top_n)

    @classmethod
    def from_scores(cls, scores: torch.Tensor, targets: Sequence[int], top_n: int) -> Ranking:
        """Rank the targets in already-masked scores (rows = samples, columns = item ids)."""
        ranks = target_ranks(scores, torch.tensor(list(targets), device=scores.device))
        ids, values = top_k(scores, top_n)
        return cls(ranks.cpu().numpy(), ids.cpu().numpy(), values.float().cpu().numpy())

    def take(self, rows: np.ndarray) -> Ranking:
        """The rankings of ``rows``, in that order."""
        return Ranking(self.ranks[rows], self.top_ids[rows], self.top_scores[rows])

    @classmethod
    def concat(cls, parts: Sequence[Ranking], top_n: int) -> Ranking:
        if not parts:
            return cls(np.array([], dtype=np.int64), np.zeros((0, top_n), np.int64), np.zeros((0, top_n), np.float32))
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("ranks", "top_ids", "top_scores")))


def _batches(total: int, batch_size: int, desc: str, progress: bool):
    return tqdm(range(0, total, batch_size), desc=desc, disable=not progress, leave=False)


@torch.no_grad()
def _rank_in_batches(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    user_states: Callable[[Sequence[str]], dict[str, torch.Tensor]],
    batch_size: int,
    top_n: int,
    progress: bool,
) -> dict[str, Ranking]:
    """Rankings per mode, with ``user_states(prompt batch)`` → {mode: h}, in eval mode.

    Prompts are batched by length (less padding to compute) and results put back in input order.
    """
    was_training = model.lm.training
    model.lm.eval()
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    parts: dict[str, list[Ranking]] = {}
    try:
        for start in _batches(len(order), batch_size, "ranking", progress):
            rows = order[start : start + batch_size]
            states = user_states([prompts[i] for i in rows])
            for mode, mode_states in states.items():
                scores = model.score(mode_states, [histories[i] for i in rows])
                parts.setdefault(mode, []).append(Ranking.from_scores(scores, [targets[i] for i in rows], top_n))
    finally:
        model.lm.train(was_training)
    inverse = np.argsort(np.asarray(order, dtype=np.int64))
    return {mode: Ranking.concat(rankings, top_n).take(inverse) for mode, rankings in parts.items()}


def rank_without_reasoning(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    batch_size: int = 8,
    progress: bool = True,
    top_n: int = 10,
) -> Ranking:
    """Direct mode only: h from prompt + answer tag (the prefix every prompt shares is run once)."""
    was_training = model.lm.training
    model.lm.eval()
    prefix = model.shared_prefix(model.user_texts(prompts)) if prompts else None
    model.lm.train(was_training)
    rankings = _rank_in_batches(
        model,
        prompts,
        targets,
        histories,
        lambda batch: {"direct": model.encode_shared_prefix(model.user_texts(batch), prefix=prefix)},
        batch_size,
        top_n,
        progress,
    )
    return rankings.get("direct", Ranking.concat([], top_n))


def rank_both_modes(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    max_new_tokens: int,
    batch_size: int = 8,
    progress: bool = True,
    top_n: int = 10,
) -> tuple[dict[str, Ranking], list[str]]:
    """Rankings in both modes (one prompt pass per batch) and the greedy reasoning texts."""
    texts: dict[str, str] = {}

    def both(batch: Sequence[str]) -> dict[str, torch.Tensor]:
        generation = generate_reasoning(model, batch, max_new_tokens, direct=True, logprobs=False)
        texts.update(zip(batch, generation.texts, strict=True))
        return {"direct": generation.direct_hidden, "reasoning": generation.final_hidden}

    rankings = _rank_in_batches(model, prompts, targets, histories, both, batch_size, top_n, progress)
    empty = Ranking.concat([], top_n)
    return {mode: rankings.get(mode, empty) for mode in MODES}, [texts[prompt] for prompt in prompts]


def evaluate_without_reasoning(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    item_ids: Sequence[int],
    item_prompts: Sequence[str],
    batch_size: int = 8,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Re-encode the item table with the current weights, then Hit/NDCG@K and MRR over all items."""
    model.build_item_table(item_ids, item_prompts, batch_size=max(batch_size, 32))
    return ranking_metrics(rank_without_reasoning(model, prompts, targets, histories, batch_size).ranks, ks)


def reasoning_length(model: R2ecModel, texts: Sequence[str]) -> float:
    """Mean reasoning length in tokens (answer tag included)."""
    lengths = [len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    return float(np.mean(lengths)) if lengths else 0.0


def both_modes_metrics(
    model: R2ecModel, rankings: dict[str, Ranking], texts: Sequence[str], ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """``reasoning.*`` and ``direct.*`` metrics of ``rank_both_modes``'s rankings, and the mean reasoning length."""
    metrics = {
        f"{mode}.{name}": value for mode in MODES for name, value in ranking_metrics(rankings[mode].ranks, ks).items()
    }
    metrics["reasoning.length"] = reasoning_length(model, texts)
    return metrics
