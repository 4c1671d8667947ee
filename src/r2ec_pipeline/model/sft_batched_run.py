"""The batched SFT engine's training run: epochs of length batches, validation, best weights, checkpoints.

A run's state between two steps is the float32 master weights, AdamW's moments, the numpy generator that
orders the batches (and draws negatives), the current epoch's batches still to run, torch's RNG and the
validation record. ``save_steps`` writes it as a checkpoint (``model/training_state.py``) every N steps
and where training stops (the last step, early stopping, the time budget); ``resume_from_checkpoint``
reads one back and continues the schedule, so N steps, then M resumed, equal N + M straight. A time
budget only stops a run early: the next run resumes it and ends with the same model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from r2ec_pipeline.config import SFTParams
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import ITEM_TABLE_KEY, restore_trainable
from r2ec_pipeline.model.factory import DTYPES
from r2ec_pipeline.model.sft_batched import (
    MasterWeights,
    SFTData,
    batched_loss_backward,
    length_batches,
    refuse_checkpointed_prefixes,
    synchronize,
)
from r2ec_pipeline.model.sft_result import SFTResult, record_metrics
from r2ec_pipeline.model.training_state import (
    CheckpointStore,
    ResumeError,
    progress_from_state,
    refuse_changed_settings,
    restore_rng,
)

logger = logging.getLogger(__name__)

# settings a resumed run may change: how long it runs, how often it validates and saves
RESUMABLE_CHANGES = {
    "steps",
    "epochs",
    "eval_every",
    "eval_users",
    "early_stopping_patience",
    "max_seconds",
    "save_steps",
    "save_total_limit",
    "resume_from_checkpoint",
}


@dataclass
class SFTProgress:
    """What a run has produced so far: saved in every checkpoint, restored on resume."""

    step: int = 0
    samples: int = 0  # training rows run so far
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    evaluations: dict[int, dict[str, float]] = field(default_factory=dict)  # step → validation metrics
    best_value: float = float("-inf")
    best_step: int = 0
    stale: int = 0  # validations since the best one (early stopping)
    train_seconds: float = 0.0
    stopped_early: bool = False

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SFTProgress:
        return progress_from_state(cls, state)


def _snapshot(model: R2ecModel, weights: MasterWeights) -> dict[str, torch.Tensor]:
    """The float32 values of the trainable weights and the current item table, on the CPU (a ``trainable_state``)."""
    state = _masters(model, weights)
    state[ITEM_TABLE_KEY] = model.item_table.detach().float().to("cpu", copy=True)
    return state


def _masters(model: R2ecModel, weights: MasterWeights) -> dict[str, torch.Tensor]:
    names = [name for name, p in model.lm.named_parameters() if p.requires_grad]
    return {name: m.detach().float().to("cpu", copy=True) for name, m in zip(names, weights.masters, strict=True)}


def _load_masters(model: R2ecModel, weights: MasterWeights, saved: dict[str, torch.Tensor], path: Any) -> None:
    """Put saved float32 weights into the masters and the computing weights."""
    names = [name for name, p in model.lm.named_parameters() if p.requires_grad]
    if set(names) != set(saved):
        raise ResumeError(f"checkpoint {path} does not fit this model's trainable weights")
    with torch.no_grad():
        for name, master, parameter in zip(names, weights.masters, weights.parameters, strict=True):
            master.copy_(saved[name])
            parameter.copy_(saved[name])


class _Schedule:
    """The batch order: one numpy generator makes each epoch's length batches and the sampled negatives."""

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size = lengths, batch_size
        self.rng, self.batches = np.random.default_rng(seed), []

    def next_rows(self) -> np.ndarray:
        if not self.batches:
            self.batches = length_batches(self.lengths, self.batch_size, self.rng)
        return self.batches.pop()

    def state(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "batches": [torch.as_tensor(rows, dtype=torch.long) for rows in self.batches],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.batches = [rows.numpy() for rows in state["batches"]]


def train_sft_batched(
    model: R2ecModel,
    user_prompts: Sequence[str],
    target_ids: Sequence[int],
    item_prompt: dict[int, str],
    evaluate: Callable[[R2ecModel], dict[str, float]] | None,
    settings: SFTParams,
    histories: Sequence[Sequence[int]] | None = None,
    log_every: int = 50,
    store: CheckpointStore | None = None,
) -> SFTResult:
    """Train the adapters for ``settings.epochs`` passes (or ``steps`` batches); keep the best-validated weights.

    The same contract as ``sft.train_sft`` (an ``SFTResult``; without ``evaluate`` the last weights are
    kept and the item table is encoded at the end). Validation runs every ``eval_every`` steps and after
    the last one; losses are read back every ``log_every`` steps, so a step never waits for the host.
    With ``store`` and ``save_steps`` the run writes resumable checkpoints there; ``resume_from_checkpoint``
    continues one. Refuses gradient checkpointing with shared prefixes (HF drops the prefix's KV cache).
    """
    refuse_checkpointed_prefixes(model.checkpointing_enabled, settings.share_prefix)
    data = SFTData.build(
        model,
        user_prompts,
        target_ids,
        item_prompt,
        histories if settings.softmax == "full" else None,
        settings.share_prefix,
    )
    torch.manual_seed(settings.seed)
    batch_size = min(settings.batch_size, len(user_prompts))
    schedule = _Schedule(data.users.lengths, batch_size, settings.seed)
    catalog = np.array(sorted(item_prompt))
    trainable = [p for p in model.lm.parameters() if p.requires_grad]
    weights = MasterWeights(trainable, DTYPES[settings.adapter_dtype])
    optimizer = torch.optim.AdamW(weights.masters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    per_epoch = -(-len(user_prompts) // batch_size)
    total = settings.steps if settings.epochs is None else max(1, round(settings.epochs * per_epoch))
    config = settings.model_dump(mode="json")
    done, best_state = _begin(model, weights, optimizer, schedule, settings, config, evaluate, store)

    def save() -> None:
        if store is not None and settings.save_steps:
            resume = {"optimizer": optimizer.state_dict(), **schedule.state()}
            store.save({"config": config, **asdict(done)}, _masters(model, weights), resume, best_state)

    pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (step, loss, grad norm) not yet read back
    model.lm.train()
    synchronize(model.device)
    started = time.perf_counter()
    for step in range(done.step + 1, total + 1) if not done.stopped_early else ():
        rows = schedule.next_rows()
        negatives = (
            schedule.rng.choice(catalog, size=settings.negatives, replace=False)
            if settings.softmax == "sampled" and settings.negatives
            else None
        )
        loss = batched_loss_backward(model, data, rows, settings, negatives)
        pending.append((step, loss, weights.step(optimizer, settings.max_grad_norm)))
        done.step, done.samples = step, done.samples + len(rows)
        validate = evaluate is not None and (step % settings.eval_every == 0 or step == total)
        saving = bool(settings.save_steps) and step % settings.save_steps == 0
        if validate or saving or step % log_every == 0 or step == total:
            for logged, value, norm in pending:  # the one host sync of these steps
                record_metrics(done.history, {"loss": float(value), "grad_norm": float(norm)}, logged, "train.")
            pending.clear()
            done.train_seconds += time.perf_counter() - started
            logger.info(
                "sft step %d/%d: loss %.4f (%.1f s)",
                step,
                total,
                done.history["train.loss"][-1]["value"],
                done.train_seconds,
            )
        if validate:
            metrics = done.evaluations[step] = evaluate(model)
            record_metrics(done.history, metrics, step, "valid.")
            if metrics[settings.selection_metric] > done.best_value:
                done.best_value, done.best_step, done.stale = metrics[settings.selection_metric], step, 0
                best_state = _snapshot(model, weights)
            else:
                done.stale += 1
            model.lm.train()
            if settings.early_stopping_patience is not None and done.stale >= settings.early_stopping_patience:
                logger.info("sft: no better validation in %d validations, stopped at step %d", done.stale, step)
                done.stopped_early = True
        out_of_time = settings.max_seconds is not None and done.train_seconds >= settings.max_seconds
        if saving or done.stopped_early or out_of_time or step == total:
            save()
        if done.stopped_early:
            break
        if validate or saving or step % log_every == 0:
            if out_of_time:
                logger.info("sft: time budget of %.0f s reached at step %d of %d", settings.max_seconds, step, total)
                break
            synchronize(model.device)
            started = time.perf_counter()
    weights.release()
    seconds_per_step = done.train_seconds / max(done.step, 1)
    if evaluate is None:
        model.build_item_table(list(catalog), [item_prompt[int(i)] for i in catalog], progress=False)
        return SFTResult(done.history, {}, {}, done.step, seconds_per_step, done.step, done.samples)
    restore_trainable(model, best_state)
    if ITEM_TABLE_KEY not in best_state:  # read back from a checkpoint: the validated table is re-encoded
        model.build_item_table(list(catalog), [item_prompt[int(i)] for i in catalog], progress=False)
    return SFTResult(
        done.history,
        done.evaluations[0],
        done.evaluations[done.best_step],
        done.best_step,
        seconds_per_step,
        done.step,
        done.samples,
    )


def _begin(
    model: R2ecModel,
    weights: MasterWeights,
    optimizer: torch.optim.Optimizer,
    schedule: _Schedule,
    settings: SFTParams,
    config: dict[str, Any],
    evaluate: Callable[[R2ecModel], dict[str, float]] | None,
    store: CheckpointStore | None,
) -> tuple[SFTProgress, dict[str, torch.Tensor] | None]:
    """Resume from a checkpoint when asked to (progress and selected weights); else validate step 0."""
    if settings.resume_from_checkpoint and store is None:
        raise ResumeError("sft.resume_from_checkpoint needs a checkpoint folder (sft_checkpoints)")
    path = store.resolve(settings.resume_from_checkpoint) if store is not None else None
    if path is not None:
        saved = store.read(path)
        refuse_changed_settings(saved.state["config"], config, RESUMABLE_CHANGES, path)
        _load_masters(model, weights, saved.weights, path)
        optimizer.load_state_dict(saved.resume["optimizer"])
        schedule.restore(saved.resume)
        restore_rng(saved.resume)
        done = SFTProgress.from_state(saved.state)
        logger.info("resumed SFT from %s at step %d", path, done.step)
        return done, saved.best if saved.best is not None else None
    if store is not None and settings.save_steps and (stale := store.clear()):
        logger.warning("fresh SFT run: removed %d old checkpoint(s) from %s", stale, store.root)
    done = SFTProgress()
    if evaluate is None:
        return done, None
    done.evaluations[0] = evaluate(model)
    record_metrics(done.history, done.evaluations[0], 0, "valid.")
    done.best_value = done.evaluations[0][settings.selection_metric]
    return done, _snapshot(model, weights)
