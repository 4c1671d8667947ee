"""Full-ranking evaluation of the rec head (spec §6), shared by SFT, RecPO and the evaluation stage."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from r2ec_pipeline.metrics import DEFAULT_KS, ranking_metrics
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.scoring import target_ranks


@torch.no_grad()
def _rank_in_batches(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    user_states: Callable[[Sequence[str]], torch.Tensor],
    batch_size: int,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """1-based rank of each target, with h = ``user_states(prompt batch)``, in eval mode."""
    was_training = model.lm.training
    model.lm.eval()
    ranks = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, leave=False):
        stop = start + batch_size
        scores = model.score(user_states(prompts[start:stop]), histories[start:stop])
        ranks.append(target_ranks(scores, torch.tensor(targets[start:stop], device=scores.device)).cpu())
    model.lm.train(was_training)
    return torch.cat(ranks).numpy() if ranks else np.array([], dtype=np.int64)


def rank_without_reasoning(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    batch_size: int = 8,
    progress: bool = True,
) -> np.ndarray:
    """1-based rank of each target when h comes from prompt + answer tag (the no-reasoning path)."""
    return _rank_in_batches(model, prompts, targets, histories,
                            lambda batch: model.encode_shared_prefix(model.user_texts(batch)),
                            batch_size, "ranking", progress)


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
    return ranking_metrics(rank_without_reasoning(model, prompts, targets, histories, batch_size), ks)


def rank_with_reasoning(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    max_new_tokens: int,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """1-based rank of each target when h comes after greedy reasoning, and the reasoning texts."""
    texts: list[str] = []

    def after_reasoning(batch: Sequence[str]) -> torch.Tensor:
        generation = generate_reasoning(model, batch, max_new_tokens)
        texts.extend(generation.texts)
        return generation.final_hidden

    ranks = _rank_in_batches(model, prompts, targets, histories, after_reasoning, batch_size, "reasoning", progress)
    return ranks, texts


def evaluate_both_modes(
    model: R2ecModel,
    prompts: Sequence[str],
    targets: Sequence[int],
    histories: Sequence[Sequence[int]],
    max_new_tokens: int,
    batch_size: int = 8,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Metrics with greedy reasoning (``reasoning.*``) and without (``direct.*``), on the current table."""
    reasoning_ranks, texts = rank_with_reasoning(model, prompts, targets, histories, max_new_tokens, batch_size)
    direct_ranks = rank_without_reasoning(model, prompts, targets, histories, batch_size)
    metrics = {f"reasoning.{name}": value for name, value in ranking_metrics(reasoning_ranks, ks).items()}
    metrics.update({f"direct.{name}": value for name, value in ranking_metrics(direct_ranks, ks).items()})
    lengths = [len(model.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    metrics["reasoning.length"] = float(np.mean(lengths)) if lengths else 0.0
    return metrics
