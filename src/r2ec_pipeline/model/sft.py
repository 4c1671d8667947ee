"""SFT warm-start of the rec head (method §4): the no-reasoning path trained with in-batch InfoNCE.

The loop reads top to bottom: sample a batch, encode users (prompt + answer tag) and their target
items (plus optional sampled negatives) with gradient, InfoNCE, clip, step; every ``eval_every``
steps, validation N@10 (full ranking, no reasoning) decides which adapter weights are kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from r2ec_pipeline.config import SFTParams
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import restore_trainable, trainable_state
from r2ec_pipeline.model.losses import catalog_infonce, in_batch_infonce
from r2ec_pipeline.model.sft_batched_run import train_sft_batched
from r2ec_pipeline.model.sft_result import SFTResult, record_metrics
from r2ec_pipeline.model.training_state import CheckpointStore

__all__ = ["SFTResult", "chunked_item_backward", "train_sft"]

logger = logging.getLogger(__name__)


def chunked_item_backward(
    model: R2ecModel,
    user_states: torch.Tensor,
    item_texts: Sequence[str],
    chunk_size: int | None,
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Backpropagate ``loss_of(user_states, item states)`` holding one chunk of items' activations at a time.

    The gradient-cache trick (Gao et al., 2021): the items are encoded once without a graph, the loss's
    gradient with respect to their states is taken (the users' graph is used and freed then), and each
    chunk of items is encoded again with a graph and given its rows of that gradient. The summed
    gradient equals one pass over every item; an item's activations then cost one chunk's memory, not
    the whole batch's, for one extra forward pass of the adapted layers. Returns the (detached) loss.
    """
    if chunk_size is None or chunk_size >= len(item_texts):
        loss = loss_of(user_states, model.encode_shared_prefix(item_texts))
        loss.backward()
        return loss.detach()
    ids = model.common_prefix_ids(item_texts)  # every chunk splits prefix and suffix where the batch does
    with torch.no_grad():
        items = model.encode_shared_prefix(item_texts, prefix=model.run_prefix(ids) if ids else None)
    items.requires_grad_(True)
    loss = loss_of(user_states, items)
    loss.backward()
    for start in range(0, len(item_texts), chunk_size):
        # with a graph (its keys and values depend on the adapters); no cache to share under checkpointing
        prefix = model.run_prefix(ids) if ids and not model.recomputes_activations else None
        chunk = model.encode_shared_prefix(item_texts[start : start + chunk_size], prefix=prefix)
        chunk.backward(items.grad[start : start + chunk_size])
    return loss.detach()


def train_sft(
    model: R2ecModel,
    user_prompts: Sequence[str],
    target_ids: Sequence[int],
    item_prompt: dict[int, str],
    evaluate: Callable[[R2ecModel], dict[str, float]] | None,
    settings: SFTParams,
    histories: Sequence[Sequence[int]] | None = None,
    store: CheckpointStore | None = None,
) -> SFTResult:
    """Train the adapters; keep the weights (and item table) with the best validation metric.

    ``engine: batched`` hands the run to ``sft_batched_run.train_sft_batched`` (the accelerator engine,
    the one that writes and resumes checkpoints in ``store``).
    Without ``evaluate`` nothing is validated: the last weights are kept and the item table is
    encoded once at the end (the evaluation stage validates them instead). With ``softmax: catalog``
    each user's target competes with every item, ``histories[i]`` (sample i's earlier items) left out.
    """
    if settings.softmax == "sampled" and min(settings.batch_size, len(user_prompts)) + settings.negatives < 2:
        raise ValueError(
            f"SFT needs at least 2 items in each softmax: {len(user_prompts)} training sample(s), "
            f"batch_size {settings.batch_size}, negatives {settings.negatives}"
        )
    if settings.engine == "batched":
        return train_sft_batched(
            model, user_prompts, target_ids, item_prompt, evaluate, settings, histories, store=store
        )
    generator = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    catalog = np.array(sorted(item_prompt))
    texts = model.user_texts(user_prompts)
    parameters = [p for p in model.lm.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    history: dict[str, list[dict[str, float]]] = {}

    evaluations = {0: evaluate(model)} if evaluate else {}  # step → validation metrics; 0 is zero-shot
    record_metrics(history, evaluations.get(0, {}), 0, "valid.")
    best_value, best_step = evaluations[0][settings.selection_metric] if evaluate else float("-inf"), 0
    best_state = trainable_state(model)
    model.lm.train()
    train_seconds, steps_run, samples_run, stale = 0.0, 0, 0, 0
    progress = tqdm(range(1, settings.steps + 1), desc="sft", leave=False)
    for step in progress:
        started = time.perf_counter()
        batch = generator.choice(len(texts), size=min(settings.batch_size, len(texts)), replace=False)
        targets = torch.tensor([target_ids[i] for i in batch])
        optimizer.zero_grad(set_to_none=True)
        if settings.softmax == "catalog":
            if (step - 1) % settings.table_refresh_every == 0:  # the bank of item rows, refreshed now and then
                model.build_item_table(list(catalog), [item_prompt[int(i)] for i in catalog], progress=False)
            loss = catalog_infonce(
                model.encode_shared_prefix([texts[i] for i in batch], remember=False),
                model.encode_shared_prefix([item_prompt[int(i)] for i in targets]),
                targets.to(model.device),
                model.item_table,
                model.config.similarity_temperature,
                [list(histories[i]) for i in batch] if histories is not None else None,
            )
            loss.backward()
        else:
            negatives = generator.choice(catalog, size=settings.negatives, replace=False) if settings.negatives else []
            columns = torch.cat([targets, torch.as_tensor(negatives, dtype=torch.long)]).to(model.device)
            own, tau = targets.to(model.device), model.config.similarity_temperature
            loss = chunked_item_backward(
                model,
                model.encode_shared_prefix([texts[i] for i in batch], remember=False),
                [item_prompt[int(i)] for i in columns],
                settings.item_chunk_size,
                lambda users, items: in_batch_infonce(users, items, own, tau, columns),  # noqa: B023 (called at once)
            )
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        optimizer.step()
        train_seconds += time.perf_counter() - started
        steps_run, samples_run = step, samples_run + len(batch)
        record_metrics(history, {"loss": loss.item(), "grad_norm": float(grad_norm)}, step, "train.")
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if evaluate and (step % settings.eval_every == 0 or step == settings.steps):
            metrics = evaluations[step] = evaluate(model)
            record_metrics(history, metrics, step, "valid.")
            logger.info(
                "sft step %d: loss %.4f, valid %s %.4f",
                step,
                loss.item(),
                settings.selection_metric,
                metrics[settings.selection_metric],
            )
            if metrics[settings.selection_metric] > best_value:
                best_value, best_step, stale = metrics[settings.selection_metric], step, 0
                best_state = trainable_state(model)
            else:
                stale += 1
            if settings.early_stopping_patience is not None and stale >= settings.early_stopping_patience:
                logger.info(
                    "sft: no better validation %s in %d validations, stopped at step %d",
                    settings.selection_metric,
                    stale,
                    step,
                )
                break
            model.lm.train()
        if settings.max_seconds is not None and train_seconds >= settings.max_seconds:
            logger.info("sft: time budget of %.0f s reached at step %d", settings.max_seconds, step)
            break
    if not evaluate:
        model.build_item_table(list(catalog), [item_prompt[int(i)] for i in catalog])
        return SFTResult(history, {}, {}, steps_run, train_seconds / max(steps_run, 1), steps_run, samples_run)
    restore_trainable(model, best_state)
    return SFTResult(
        history,
        evaluations[0],
        evaluations[best_step],
        best_step,
        train_seconds / max(steps_run, 1),
        steps_run,
        samples_run,
    )
