"""One RecPO step (method §5), top to bottom: rollout, score, reward, advantage, losses, optimizer step.

Its settings are the recpo parameter block (``config.RecPOParams``): names follow TRL's GRPO where
the concept is the same (num_generations, temperature, top_k, max_completion_length, epsilon,
epsilon_high, beta, loss_type, num_iterations); the rest are R²ec's own. A batch may be one process's slice of a global batch (``Collective``): losses are then
divided by global counts and gradients summed, so the update equals the single-process one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from r2ec_pipeline.config import RecPOParams
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.generation import Generators, StopReason, generate_reasoning
from r2ec_pipeline.model.losses import catalog_target_logprobs, in_batch_target_logprobs
from r2ec_pipeline.model.merged import MergedCopy
from r2ec_pipeline.model.scoring import target_ranks
from r2ec_pipeline.rl.advantages import group_advantages
from r2ec_pipeline.rl.diagnostics import ratio_sums, rollout_metrics, spread
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.losses import (
    best_paths,
    clipped_item_loss,
    clipped_token_loss,
    kl_penalty,
)
from r2ec_pipeline.rl.policy import padded, policy_forward
from r2ec_pipeline.rl.rewards import fused_reward, rank_reward, similarity_reward

# rewards of the paths (users·G) from their tokens, their scores (users·G × items) and their targets (users·G):
# replaces the fused reward, for tasks whose reward is not the target's rank (the toy tests' "write token t")
RewardFn = Callable[[list[list[int]], torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Batch:
    prompts: list[str]  # user prompts (chat-formatted, generation prompt at the end)
    targets: list[int]  # target item ids
    histories: list[list[int]]  # items masked when ranking
    target_prompts: list[str]  # item prompts of the targets (re-encoded with gradient)


@dataclass
class Rollout:
    """G sampled paths per user of this process, scored and turned into advantages (no gradient)."""

    token_ids: list[list[int]]  # users·G completions, user-major, ending with the canonical tag
    texts: list[str]
    stop_reasons: list[StopReason]  # tag, end_of_turn or length, per path
    states: torch.Tensor  # users·G × d: h at each path's final tag token (what was scored)
    old_logprobs: torch.Tensor  # users·G × T, right-padded, as the decoder sampled them (diagnostics only)
    mask: torch.Tensor  # users·G × T, 1 on real completion tokens
    rank_part: torch.Tensor  # users·G
    sim_part: torch.Tensor  # users·G
    rewards: torch.Tensor  # users × G
    advantages: torch.Tensor  # users × G
    selected: torch.Tensor  # users × G, the best path(s) that train the rec head
    columns: torch.Tensor  # users·G: each path's target column in the global batch
    column_ids: torch.Tensor  # global batch's target ids, one column per user
    # users·G: log p(v⁺) in-batch under the rollout-time weights (h and re-encoded targets alike). The
    # first update runs on exactly those weights, so it fills this in (its ratio is 1 by construction);
    # later updates of the same rollout (num_iterations > 1) use it. Never a cached table row.
    old_item_logprobs: torch.Tensor | None = None
    # users·G × T: the token log-probs the first update took under those same weights, the token loss's old
    # values (its ratio is 1 at the first update by construction, whatever the decoder's numerics: a merged
    # bf16 copy differs from the unmerged policy in its last bits); later updates use them.
    policy_logprobs: torch.Tensor | None = None


@torch.no_grad()
def rollout(
    model: R2ecModel,
    batch: Batch,
    settings: RecPOParams,
    generator: Generators = None,
    collective: Collective | None = None,
    decoder: R2ecModel | None = None,
    reward_fn: RewardFn | None = None,
) -> Rollout:
    """Steps 1–4: sample G paths per user, score them against the item table, reward, advantage.

    ``decoder`` (a ``merged.MergedCopy``'s model, holding the policy's current weights) decodes the paths
    at plain-model speed; the policy's own log-probs are taken in the update either way. ``reward_fn``
    replaces the fused reward (its rank and similarity parts are still reported).
    """
    collective = collective or Collective()
    users, group = len(batch.prompts), settings.num_generations
    model.lm.eval()
    generation = generate_reasoning(
        decoder or model,
        batch.prompts,
        settings.max_completion_length,
        do_sample=True,
        temperature=settings.temperature,
        top_k=settings.top_k,
        generator=generator,
        group=group,
    )
    owners = torch.arange(users, device=model.device).repeat_interleave(group)
    targets = torch.tensor(batch.targets, device=model.device)
    scores = model.score(generation.final_hidden, [batch.histories[u] for u in owners.tolist()])
    rank_part = rank_reward(target_ranks(scores, targets[owners]), settings.ndcg_cutoff)
    sim_part = similarity_reward(scores, targets[owners])
    if reward_fn is None:
        rewards = fused_reward(rank_part, sim_part, settings.reward_beta, settings.reward_type)
    else:
        rewards = reward_fn(generation.token_ids, scores, targets[owners])
    rewards = rewards.view(users, group)
    advantages = group_advantages(rewards.float(), settings.advantage_type)
    old_logprobs, mask = padded([row.float() for row in generation.logprobs], model.device)
    return Rollout(
        token_ids=generation.token_ids,
        texts=generation.texts,
        stop_reasons=generation.stop_reasons,
        states=generation.final_hidden,
        old_logprobs=old_logprobs,
        mask=mask,
        rank_part=rank_part.float(),
        sim_part=sim_part.float(),
        rewards=rewards.float(),
        advantages=advantages,
        selected=best_paths(advantages, settings.relabel_topk),
        columns=owners + collective.rank * users,
        column_ids=collective.gather_values(targets),
    )


@dataclass(frozen=True)
class _Denominators:
    """Global counts every micro-batch's losses are divided by, so that their sum is the one-shot loss."""

    tokens: torch.Tensor  # completion tokens of the global batch
    token_loss: torch.Tensor  # tokens (token_mean) or paths (sequence_mean)
    selected: torch.Tensor  # best paths that train the rec head


def _micro_batch_loss(
    model: R2ecModel,
    batch: Batch,
    paths: Rollout,
    users: slice,
    target_states: torch.Tensor,
    counts: _Denominators,
    settings: RecPOParams,
    first_logprobs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of the users in ``users`` (divided by global counts), their log p(v⁺), and their summable parts.

    At a rollout's first update (``paths.policy_logprobs`` unset) the token loss's old log-probs are this
    forward's own, detached, and are written into ``first_logprobs`` for the later updates."""
    group = settings.num_generations
    rows = slice(users.start * group, users.stop * group)
    completions = paths.token_ids[rows]
    logprobs, states = policy_forward(
        model, batch.prompts[users], completions, group, settings.temperature, settings.logprob_chunk_tokens
    )
    width = logprobs.shape[1]  # this slice's longest path; the rollout pads to the whole batch's
    mask, advantages = paths.mask[rows, :width], paths.advantages[users]
    if paths.policy_logprobs is None:
        old_logprobs = logprobs.detach()
        if first_logprobs is not None:
            first_logprobs[rows, :width] = old_logprobs
    else:
        old_logprobs = paths.policy_logprobs[rows, :width]
    token_loss, clipped = clipped_token_loss(
        logprobs,
        old_logprobs,
        advantages.flatten(),
        mask,
        settings.epsilon,
        settings.epsilon_high,
        settings.loss_type,
        denominator=counts.token_loss.to(logprobs.dtype),
    )
    item_logprobs = _item_logprobs(model, batch, paths, users, states, target_states, settings)
    old_item = (paths.old_item_logprobs[rows] if paths.old_item_logprobs is not None else item_logprobs.detach()).view(
        -1, group
    )
    item_loss, item_clipped = clipped_item_loss(
        item_logprobs.view(-1, group),
        old_item,
        advantages,
        paths.selected[users],
        settings.epsilon,
        settings.epsilon_high,
        denominator=counts.selected,
    )
    kl = torch.zeros((), device=model.device)
    if settings.beta > 0:
        with torch.no_grad(), model.lm.disable_adapter():
            ref_logprobs, _ = policy_forward(
                model, batch.prompts[users], completions, group, settings.temperature, settings.logprob_chunk_tokens
            )
        kl = kl_penalty(logprobs, ref_logprobs, mask, denominator=counts.tokens.to(logprobs.dtype))
    ratios = torch.exp(item_logprobs.detach().view(-1, group) - old_item)
    ratio_sum, ratio_squares = ratio_sums(logprobs, paths.old_logprobs[rows, :width], mask)
    parts = {
        "token_loss": token_loss.detach(),
        "item_loss": item_loss.detach(),
        "kl": kl.detach(),
        "clipped": clipped,
        "item_clipped": item_clipped,
        "item_ratio_sum": (ratios * paths.selected[users]).sum(),
        "item_logprob_sum": (item_logprobs.detach().view(-1, group) * paths.selected[users]).sum(),
        "ratio_sum": ratio_sum,
        "ratio_squares": ratio_squares,
    }
    loss = settings.token_loss_weight * token_loss + settings.item_loss_weight * item_loss + settings.beta * kl
    return loss, item_logprobs.detach(), parts


def _item_logprobs(
    model: R2ecModel,
    batch: Batch,
    paths: Rollout,
    users: slice,
    states: torch.Tensor,
    target_states: torch.Tensor,
    settings: RecPOParams,
) -> torch.Tensor:
    """log p(v⁺) of each path of ``users`` (method §5.6): over the batch's targets (``in_batch``, the paper's)
    or over the whole catalog (``catalog``: the item table as memory bank, the batch's targets' fresh
    encodings carrying the gradient, each user's earlier items masked as in evaluation)."""
    group, tau = settings.num_generations, model.config.similarity_temperature
    columns = paths.columns[users.start * group : users.stop * group]
    if settings.item_softmax == "in_batch":
        return in_batch_target_logprobs(states, target_states, columns, paths.column_ids, tau)
    owners = [batch.histories[user] for user in range(users.start, users.stop) for _ in range(group)]
    return catalog_target_logprobs(
        states, target_states, paths.column_ids, model.item_table, tau, masks=owners, own=paths.column_ids[columns]
    )


def _micro_batches(users: int, size: int | None) -> list[slice]:
    size = users if size is None else min(size, users)
    return [slice(start, min(start + size, users)) for start in range(0, users, size)]


def policy_update(
    model: R2ecModel,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    paths: Rollout,
    settings: RecPOParams,
    collective: Collective | None = None,
) -> dict[str, float]:
    """Steps 5–7: clipped token loss on all paths + clipped item loss on the best ones, one optimizer step.

    The first update of a rollout runs on the rollout-time weights: its token log-probs and log p(v⁺) become
    the rollout's old values (``paths.policy_logprobs``, ``paths.old_item_logprobs``), so both ratios start at
    exactly 1 however the paths were decoded and however old the cached item table is. With ``policy_micro_batch`` the users go through forward and backward a
    micro-batch at a time. Every loss is divided by global counts, so the gradients add up to the
    one-shot gradient; the targets' encodings, which every user's in-batch softmax reads, are taken
    once without a graph, collect their gradient from every micro-batch, and are then encoded again
    with a graph and given it (the gradient-cache trick, as SFT's ``chunked_item_backward``).
    """
    collective = collective or Collective()
    users = len(batch.prompts)
    model.lm.train()
    tokens = collective.total(paths.mask.sum())
    paths_count = torch.tensor(float(len(paths.mask)), device=model.device)  # collectives need the device
    counts = _Denominators(
        tokens,
        tokens if settings.loss_type == "token_mean" else collective.total(paths_count),
        collective.total(paths.selected.sum()).float(),
    )
    slices = _micro_batches(users, settings.policy_micro_batch)
    optimizer.zero_grad(set_to_none=True)
    one_shot = len(slices) == 1
    if one_shot:
        local_targets = model.encode_shared_prefix(batch.target_prompts)
    else:
        with torch.no_grad():
            local_targets = model.encode_shared_prefix(batch.target_prompts)
        local_targets.requires_grad_(True)
    totals: dict[str, torch.Tensor] = {}
    item_logprobs, skipped = [], False
    first_logprobs = torch.zeros_like(paths.old_logprobs) if paths.policy_logprobs is None else None
    for users_slice in slices:
        loss, item_part, parts = _micro_batch_loss(
            model, batch, paths, users_slice, collective.gather(local_targets), counts, settings, first_logprobs
        )
        item_logprobs.append(item_part)
        for name, value in parts.items():
            totals[name] = totals.get(name, 0) + value
        # NaN/inf guard, decided globally so that every process runs (or skips) the same backward passes
        skipped = skipped or bool(collective.total((~torch.isfinite(loss.detach())).float()) > 0)
        if not skipped:
            loss.backward()
    if paths.old_item_logprobs is None:
        paths.old_item_logprobs = torch.cat(item_logprobs)
    if paths.policy_logprobs is None:
        paths.policy_logprobs = first_logprobs

    grad_norm = torch.tensor(float("nan"))
    if skipped:
        optimizer.zero_grad(set_to_none=True)
    else:
        if not one_shot:  # the targets' share of the gradient, one micro-batch of target prompts at a time
            for users_slice in slices:
                model.encode_shared_prefix(batch.target_prompts[users_slice]).backward(local_targets.grad[users_slice])
        parameters = [p for p in model.lm.parameters() if p.requires_grad]
        collective.sum_gradients(parameters)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        optimizer.step()
    loss = (
        settings.token_loss_weight * totals["token_loss"]
        + settings.item_loss_weight * totals["item_loss"]
        + settings.beta * totals["kl"]
    )
    selected = counts.selected.clamp(min=1.0)
    token_count = tokens.clamp(min=1.0)
    ratio_total = collective.total(totals["ratio_sum"]).item()
    return {
        "loss": collective.total(loss).item(),
        "token_loss": collective.total(totals["token_loss"]).item(),
        "item_loss": collective.total(totals["item_loss"]).item(),
        "kl": collective.total(totals["kl"]).item(),
        "clip_fraction": (collective.total(totals["clipped"]) / token_count).item(),
        "item_clip_fraction": (collective.total(totals["item_clipped"]) / selected).item(),
        "item_ratio_mean": (collective.total(totals["item_ratio_sum"]) / selected).item(),
        "item_logprob": (collective.total(totals["item_logprob_sum"]) / selected).item(),
        "ratio_mean": ratio_total / token_count.item(),
        "ratio_std": spread(ratio_total, collective.total(totals["ratio_squares"]).item(), token_count.item()),
        "grad_norm": float(grad_norm),
        "skipped": float(skipped),
    }


@torch.no_grad()
def refresh_target_rows(model: R2ecModel, batch: Batch, paths: Rollout, collective: Collective | None = None) -> None:
    """Step 8: re-encode the rows of the global batch's targets with the updated weights."""
    collective = collective or Collective()
    was_training = model.lm.training
    model.lm.eval()
    states = collective.gather_values(model.encode_shared_prefix(batch.target_prompts).float())
    model.item_table[paths.column_ids] = states
    model.lm.train(was_training)


def recpo_step(
    model: R2ecModel,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    settings: RecPOParams,
    generator: Generators = None,
    collective: Collective | None = None,
    decoding: MergedCopy | None = None,
    reward_fn: RewardFn | None = None,
) -> tuple[dict[str, float], Rollout]:
    """One rollout, ``num_iterations`` updates on it, the targets' table rows refreshed: metrics and paths.

    ``decoding``: a merged copy of the policy that decodes the rollout, refreshed after the updates;
    ``reward_fn``: a reward in place of the fused one (``rollout``).
    """
    paths = rollout(model, batch, settings, generator, collective, decoding.model if decoding else None, reward_fn)
    metrics = rollout_metrics(paths, collective)
    updates = [
        policy_update(model, optimizer, batch, paths, settings, collective) for _ in range(settings.num_iterations)
    ]
    refresh_target_rows(model, batch, paths, collective)
    if decoding is not None:
        decoding.refresh()
    metrics.update(updates[0])  # the first update's losses are those of the rollout policy
    metrics["skipped"] = sum(update["skipped"] for update in updates)
    return metrics, paths
