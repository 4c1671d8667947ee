"""The RecPO training loop (method §5): steps over shuffled users, table refreshes, evaluation, checkpoints.

Everything a step depends on is a function of (seed, step) or lives in a checkpoint, so a run killed
after step k and resumed gives the same step k+1 as an uninterrupted one; and the batch order and
rollout streams are indexed by the *global* batch, so N processes reproduce one process's run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup

from r2ec_pipeline.config import RecPOParams
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import ITEM_TABLE_KEY, CheckpointError, restore_trainable, trainable_state
from r2ec_pipeline.model.merged import MergedCopy
from r2ec_pipeline.model.training_state import (
    CheckpointStore,
    ResumeError,
    progress_from_state,
    refuse_changed_settings,
    restore_rng,
)
from r2ec_pipeline.rl.diagnostics import kl_to_reference
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.step import Batch, Rollout, recpo_step

logger = logging.getLogger(__name__)

# settings a resumed run may change without invalidating the saved state: the global batch may not change,
# but how it is split over processes may (batches and rollouts are indexed globally), and so may how an
# update is cut into micro-batches and log-prob chunks (the same gradient either way)
RESUMABLE_CHANGES = {
    "max_steps",
    "num_train_epochs",
    "save_steps",
    "save_total_limit",
    "eval_steps",
    "eval_users",
    "log_completions_steps",
    "per_device_train_batch_size",
    "world_size",
    "early_stopping_patience",
    "resume_from_checkpoint",
    "policy_micro_batch",
    "logprob_chunk_tokens",
}


@dataclass
class RecPOData:
    """Training samples and the catalog, as plain lists (no Kedro, no pandas)."""

    prompts: list[str]
    targets: list[int]
    histories: list[list[int]]  # items masked when ranking each sample
    item_prompt: dict[int, str]  # catalog: item id → item prompt
    user_ids: list[int] | None = None  # each sample's user, carried into the kept reasoning samples


@dataclass
class RecPOResult:
    history: dict[str, list[dict[str, float]]]  # metric → [{"value", "step"}], for MLflow
    samples: list[dict[str, Any]]  # sampled reasoning paths with their rewards
    evaluations: dict[int, dict[str, float]]  # step → validation metrics (0: before training)
    steps: int  # steps trained (fewer than planned after early stopping)
    selected_step: int  # the step whose weights the model holds (model selection)
    resumed_from: int = 0
    seconds_per_step: float = 0.0
    skipped_steps: int = 0
    stopped_early: bool = False

    @property
    def initial_metrics(self) -> dict[str, float]:
        """Validation before training."""
        return self.evaluations.get(0, {})

    @property
    def final_metrics(self) -> dict[str, float]:
        """Validation after the last step."""
        return self.evaluations.get(self.steps, {})

    @property
    def selected_metrics(self) -> dict[str, float]:
        """Validation of the weights kept."""
        return self.evaluations.get(self.selected_step, {})


@dataclass
class _Progress:
    """What a run has produced so far: saved in every checkpoint, restored on resume."""

    step: int = 0
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    evaluations: dict[int, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: int = 0
    best_step: int | None = None  # validation step with the best metric so far
    best_value: float | None = None
    stale_evaluations: int = 0  # validations since the best one (early stopping)
    stopped_early: bool = False

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Progress:
        return progress_from_state(cls, state)

    def evaluated(self, step: int, metrics: dict[str, float], metric: str | None) -> bool:
        """Record a validation; True when ``metric`` beats every earlier one (these weights are the best)."""
        self.evaluations[step] = metrics
        _record(self.history, metrics, step, "valid.")
        if metric is None or not metrics:
            return False
        if metric not in metrics:
            raise ValueError(f"metric_for_best_model {metric!r} is not among the validation metrics {sorted(metrics)}")
        if self.best_value is None or metrics[metric] > self.best_value:
            self.best_step, self.best_value, self.stale_evaluations = step, float(metrics[metric]), 0
            return True
        self.stale_evaluations += 1
        return False


def total_steps(samples: int, settings: RecPOParams, world_size: int = 1) -> int:
    """max_steps, or the steps of num_train_epochs epochs of full global batches."""
    if settings.max_steps is not None:
        return settings.max_steps
    per_epoch = samples // (settings.per_device_train_batch_size * world_size)
    if per_epoch < 1:
        raise ValueError(f"{samples} training samples do not fill one global batch")
    return math.ceil(settings.num_train_epochs * per_epoch)


def batch_indices(samples: int, global_batch: int, step: int, seed: int) -> np.ndarray:
    """Sample indices of global batch ``step`` (1-based): epoch-wise seeded permutations, last partial batch dropped."""
    per_epoch = samples // global_batch
    if per_epoch < 1:
        raise ValueError(f"{samples} training samples do not fill one global batch of {global_batch}")
    epoch, offset = divmod(step - 1, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(samples)
    return order[offset * global_batch : (offset + 1) * global_batch]


def row_generators(seed: int, step: int, rows: Sequence[int], device: torch.device) -> list[torch.Generator]:
    """One sampling stream per global rollout row, so a row's sample does not depend on its process."""
    return [
        torch.Generator(device=device).manual_seed(int(np.random.SeedSequence([seed, step, row]).generate_state(1)[0]))
        for row in rows
    ]


def _batch(data: RecPOData, indices: Sequence[int]) -> Batch:
    return Batch(
        prompts=[data.prompts[i] for i in indices],
        targets=[data.targets[i] for i in indices],
        histories=[data.histories[i] for i in indices],
        target_prompts=[data.item_prompt[data.targets[i]] for i in indices],
    )


def _record(history: dict[str, list[dict[str, float]]], metrics: dict[str, float], step: int, prefix: str) -> None:
    for name, value in metrics.items():
        history.setdefault(f"{prefix}{name}", []).append({"value": float(value), "step": step})


def _sample_rows(
    step: int, batch: Batch, paths: Rollout, group: int, users: Sequence[int | None]
) -> list[dict[str, Any]]:
    rewards, advantages = paths.rewards.flatten().tolist(), paths.advantages.flatten().tolist()
    best = paths.selected.flatten().tolist()
    return [
        {
            "step": step,
            "user_id": users[row // group],
            "target_item_id": batch.targets[row // group],
            "path": row % group,
            "reward": round(rewards[row], 6),
            "advantage": round(advantages[row], 6),
            "best": best[row],
            "stop": paths.stop_reasons[row],
            "text": text,
        }
        for row, text in enumerate(paths.texts)
    ]


class _RecPORun:
    """One RecPO run's moving parts: the model and its optimizer, the progress so far, the selected weights.

    ``train_recpo`` drives it step by step; each method is one thing a step may do (train, refresh the item
    table, validate, save), so the loop reads top to bottom.
    """

    def __init__(
        self,
        model: R2ecModel,
        data: RecPOData,
        settings: RecPOParams,
        evaluate: Callable[[R2ecModel], dict[str, float]] | None,
        store: CheckpointStore | None,
        collective: Collective,
    ) -> None:
        self.model, self.data, self.settings = model, data, settings
        self.evaluate, self.store, self.collective = evaluate, store, collective
        self.global_batch = settings.per_device_train_batch_size * collective.world_size
        self.steps = total_steps(len(data.prompts), settings, collective.world_size)
        self.item_ids = sorted(data.item_prompt)
        parameters = [p for p in model.lm.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("the model has no trainable parameters (load adapters as trainable)")
        self.optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.scheduler = get_constant_schedule_with_warmup(self.optimizer, settings.warmup_steps)
        self.config = {
            **settings.model_dump(mode="json"),
            "world_size": collective.world_size,
            "global_batch": self.global_batch,
        }
        self.done = _Progress()
        self.best: dict[str, torch.Tensor] | None = None  # trainable_state of the selected weights
        # the starting policy (a resumed run's model is the start until begin() loads the checkpoint)
        self.start = trainable_state(model) if settings.kl_to_start else None

    def begin(self) -> None:
        """Resume from the store's checkpoint when asked to; otherwise clear old checkpoints and validate step 0."""
        settings, store = self.settings, self.store
        if settings.resume_from_checkpoint and store is None:
            raise ResumeError("resume_from_checkpoint needs a checkpoint folder")
        checkpoint = store.resolve(settings.resume_from_checkpoint) if store is not None else None
        if checkpoint is not None:
            saved = store.read(checkpoint)
            refuse_changed_settings(saved.state["config"], self.config, RESUMABLE_CHANGES, checkpoint)
            try:
                restore_trainable(self.model, saved.weights, f"checkpoint {checkpoint}")
            except CheckpointError as error:
                raise ResumeError(str(error)) from error
            self.optimizer.load_state_dict(saved.resume["optimizer"])
            self.scheduler.load_state_dict(saved.resume["scheduler"])
            restore_rng(saved.resume)
            self.done, self.best = _Progress.from_state(saved.state), saved.best
            logger.info("resumed RecPO from %s at step %d", checkpoint, self.done.step)
            return
        if store is not None and self.collective.is_main and (stale := store.clear()):
            logger.warning(
                "fresh RecPO run: removed %d old checkpoint(s) from %s "
                "(resume_from_checkpoint: true continues a run instead)",
                stale,
                store.root,
            )
        if self.model.num_items < 1:
            self.refresh_table()
        if self.evaluate is not None:
            self.validate(0, refresh=False)  # the starting policy's table (SFT's) matches its weights

    def remaining_steps(self) -> range:
        return range(self.done.step + 1, self.steps + 1) if not self.done.stopped_early else range(0)

    def train_step(self, step: int, decoding: MergedCopy | None) -> dict[str, float]:
        """One RecPO update on global batch ``step`` (this process's shard), recorded in the history."""
        settings, collective, group = self.settings, self.collective, self.settings.num_generations
        started = time.perf_counter()
        indices = batch_indices(len(self.data.prompts), self.global_batch, step, settings.seed)
        local = indices[collective.shard(self.global_batch)].tolist()
        batch = _batch(self.data, local)
        first_row = collective.rank * settings.per_device_train_batch_size * group
        rows = range(first_row, first_row + settings.per_device_train_batch_size * group)
        generators = row_generators(settings.seed, step, rows, self.model.device)
        learning_rate = self.scheduler.get_last_lr()[0]
        metrics, paths = recpo_step(self.model, self.optimizer, batch, settings, generators, collective, decoding)
        if self.start is not None:
            metrics["kl_to_start"] = kl_to_reference(
                self.model,
                batch.prompts,
                paths,
                self.start,
                group,
                settings.temperature,
                settings.logprob_chunk_tokens,
                collective,
            )
        self.scheduler.step()
        elapsed = time.perf_counter() - started
        done = self.done
        done.step, done.seconds, done.skipped = step, done.seconds + elapsed, done.skipped + int(metrics["skipped"] > 0)
        _record(done.history, {**metrics, "learning_rate": learning_rate, "seconds_per_step": elapsed}, step, "train.")
        if settings.log_completions_steps and step % settings.log_completions_steps == 0 and collective.is_main:
            users = self.data.user_ids or [None] * len(self.data.prompts)
            done.samples.extend(_sample_rows(step, batch, paths, group, [users[i] for i in local]))
        return metrics

    def refresh_table(self) -> None:
        """Re-encode the catalog with the current weights (the rec head scores against it)."""
        prompts = [self.data.item_prompt[i] for i in self.item_ids]
        self.model.build_item_table(self.item_ids, prompts, progress=self.collective.is_main)

    def validate(self, step: int, refresh: bool = True) -> None:
        """Validate the current weights (item table refreshed first); keep them if best; decide early stopping."""
        if refresh:
            self.refresh_table()
        metrics = self.evaluate(self.model) if self.evaluate is not None and self.collective.is_main else {}
        if self.done.evaluated(step, metrics, self.settings.metric_for_best_model):
            self.best = trainable_state(self.model)
        patience = self.settings.early_stopping_patience
        stop = torch.tensor(float(bool(patience) and self.done.stale_evaluations >= patience), device=self.model.device)
        self.done.stopped_early = bool(self.collective.total(stop) > 0)  # decided on the main process

    def save(self, table: torch.Tensor | None = None) -> None:
        """A resumable checkpoint (main process), then every process waits for it.

        ``table``: the item table to keep instead of the model's (the end of a run refreshes the model's
        for its final weights; a resumed run must continue with the table the schedule had).
        """
        if self.store is not None and self.collective.is_main:
            state = {"config": self.config, **asdict(self.done)}
            resume = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
            weights = trainable_state(self.model)
            if table is not None:
                weights[ITEM_TABLE_KEY] = table.detach().float().to("cpu", copy=True).contiguous()
            self.store.save(state, weights, resume, self.best)
        self.collective.barrier()

    def select(self) -> int:
        """Put the best validated weights back (method §5); the step whose weights the model now holds."""
        done = self.done
        if self.best is None or done.best_step is None:
            return done.step
        if done.best_step != done.step:
            restore_trainable(self.model, {name: t.to(self.model.device) for name, t in self.best.items()})
            if ITEM_TABLE_KEY not in self.best:  # read back from a checkpoint: the table is re-encoded
                self.refresh_table()
        logger.info(
            "RecPO: selected the weights of step %d (%s %.4f)",
            done.best_step,
            self.settings.metric_for_best_model,
            done.best_value,
        )
        return done.best_step


def train_recpo(
    model: R2ecModel,
    data: RecPOData,
    settings: RecPOParams,
    evaluate: Callable[[R2ecModel], dict[str, float]] | None = None,
    store: CheckpointStore | None = None,
    collective: Collective | None = None,
) -> RecPOResult:
    """Train in place with RecPO; validation before, every ``eval_steps`` and after (main process).

    ``settings`` is the recpo parameter block; ``resume_from_checkpoint`` in it continues a run from ``store``.

    Model selection (method §5): the weights and item table of the validation with the best
    ``metric_for_best_model`` (step 0, the starting policy, included) are what the model holds on
    return; ``early_stopping_patience`` ends training after that many validations without a better
    one. Without validation the last weights are kept.
    """
    torch.manual_seed(settings.seed)
    run = _RecPORun(model, data, settings, evaluate, store, collective or Collective())
    run.begin()
    start = run.done.step
    decoding = MergedCopy(model) if settings.merged_rollouts else None  # after a resume: the resumed weights
    progress = tqdm(run.remaining_steps(), desc="recpo", disable=not run.collective.is_main, leave=False)
    for step in progress:
        metrics = run.train_step(step, decoding)
        progress.set_postfix(reward=f"{metrics['reward_mean']:.3f}", loss=f"{metrics['loss']:.3f}")
        if step == run.steps:
            break
        if settings.refresh_every and step % settings.refresh_every == 0:
            run.refresh_table()
        if settings.eval_steps and evaluate is not None and step % settings.eval_steps == 0:
            run.validate(step)
            if run.done.stopped_early:
                logger.info(
                    "RecPO: early stopping at step %d (%d validations without a better %s)",
                    step,
                    run.done.stale_evaluations,
                    settings.metric_for_best_model,
                )
                break
        if settings.save_steps and step % settings.save_steps == 0:
            run.save()

    done = run.done
    schedule_table = model.item_table  # what the schedule's next step reads: the checkpoint keeps it
    if done.step not in done.evaluations:
        run.validate(done.step)  # also refreshes the table: it must match the final weights
    elif start == done.step:
        run.refresh_table()  # resumed with no step left: the checkpoint held the schedule's table
    if start < done.step:
        run.save(schedule_table)
    selected = run.select()
    seconds_per_step = done.seconds / max(done.step, 1)
    logger.info(
        "RecPO: %d steps (from step %d), %.1f s/step, %d skipped", done.step, start, seconds_per_step, done.skipped
    )
    return RecPOResult(
        history=done.history,
        samples=done.samples,
        evaluations=done.evaluations,
        steps=done.step,
        selected_step=selected,
        resumed_from=start,
        seconds_per_step=seconds_per_step,
        skipped_steps=done.skipped,
        stopped_early=done.stopped_early,
    )
