"""One RecPO step (method §5), top to bottom: rollout, score, reward, advantage, losses, optimizer step.

Its settings are the recpo parameter block (``config.RecPOParams``): names follow TRL's GRPO where
the concept is the same (num_generations, temperature, top_k, max_completion_length, epsilon,
epsilon_high, beta, loss_type, num_iterations); the rest are R²ec's own. A batch may be one process's slice of a global batch (``Collective``): losses are then
divided by global counts and gradients summed, so the update equals the single-process one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from r2ec_pipeline.config import RecPOParams
from r2ec_pipeline.model.dual_head import R2ecModel, position_ids
from r2ec_pipeline.model.generation import (
    STOP_REASONS,
    Generators,
    StopReason,
    generate_reasoning,
)
from r2ec_pipeline.model.hf_compat import cache_of, with_cache
from r2ec_pipeline.model.logprobs import token_logprobs
from r2ec_pipeline.model.losses import in_batch_target_logprobs
from r2ec_pipeline.model.merged import MergedCopy
from r2ec_pipeline.model.scoring import target_ranks
from r2ec_pipeline.rl.advantages import group_advantages
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.losses import (
    best_paths,
    clipped_item_loss,
    clipped_token_loss,
    kl_penalty,
)
from r2ec_pipeline.rl.rewards import fused_reward, rank_reward, similarity_reward


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
    old_logprobs: torch.Tensor  # users·G × T, right-padded, under the rollout policy
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


def _padded(
    rows: Sequence[torch.Tensor | list[int]], device: torch.device, value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad rows to one width on ``device``; returns (values, mask)."""
    width = max(len(row) for row in rows)
    values = torch.full((len(rows), width), value, device=device)
    mask = torch.zeros(len(rows), width, device=device)
    for index, row in enumerate(rows):
        values[index, : len(row)] = torch.as_tensor(row, dtype=values.dtype, device=device)
        mask[index, : len(row)] = 1.0
    return values, mask


def _cached_prompt_states(
    model: R2ecModel, prompts: Sequence[str], ids: torch.Tensor, completion_mask: torch.Tensor, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each prompt run once, its KV cache repeated for its ``group`` completions (gradients flow through it)."""
    batch = model.tokenize(prompts, padding_side="left")
    prompt_mask = batch["attention_mask"]
    out = model.decoder(
        input_ids=batch["input_ids"], attention_mask=prompt_mask, position_ids=position_ids(prompt_mask), use_cache=True
    )
    cache = cache_of(out)
    cache.batch_repeat_interleave(group)
    last_prompt = out.last_hidden_state[:, -1].repeat_interleave(group, dim=0)  # left padding: the last column
    mask = torch.cat([prompt_mask.repeat_interleave(group, dim=0), completion_mask], dim=1)
    starts = prompt_mask.sum(dim=1).repeat_interleave(group).view(-1, 1)
    positions = starts + torch.arange(ids.shape[1], device=model.device).view(1, -1)
    out = model.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, **with_cache(cache), use_cache=True)
    return out.last_hidden_state, last_prompt


def _full_sequence_states(
    model: R2ecModel, prompts: Sequence[str], ids: torch.Tensor, completion_mask: torch.Tensor, group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + completion as one sequence per path: what gradient checkpointing needs (it drops caches)."""
    batch = model.tokenize(prompts, padding_side="left")
    prompt_ids = batch["input_ids"].repeat_interleave(group, dim=0)
    mask = torch.cat([batch["attention_mask"].repeat_interleave(group, dim=0), completion_mask], dim=1)
    out = model.decoder(
        input_ids=torch.cat([prompt_ids, ids], dim=1),
        attention_mask=mask,
        position_ids=position_ids(mask),
        use_cache=False,
    )
    width = prompt_ids.shape[1]
    return out.last_hidden_state[:, width:], out.last_hidden_state[:, width - 1]


def policy_forward(
    model: R2ecModel,
    prompts: Sequence[str],
    completions: Sequence[list[int]],
    group: int,
    temperature: float,
    chunk_tokens: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token) of every completion token (right-padded, N × T, float32) and h at each completion's last token.

    Completions are user-major: row i belongs to prompt i // group. The prompt is shared across a
    user's paths through its KV cache, except under gradient checkpointing (full sequences then).
    Log-probs come from the hidden states ``chunk_tokens`` positions at a time (``token_logprobs``).
    """
    ids, completion_mask = _padded(completions, model.device, value=model.tokenizer.pad_token_id)
    ids, completion_mask = ids.long(), completion_mask.long()
    states_of = _full_sequence_states if model.recomputes_activations else _cached_prompt_states
    hidden, last_prompt = states_of(model, prompts, ids, completion_mask, group)
    predicting = torch.cat([last_prompt.unsqueeze(1), hidden[:, :-1]], dim=1)  # state j predicts token j
    logprobs = token_logprobs(predicting, ids, model.lm.get_output_embeddings(), temperature, chunk_tokens)
    rows = torch.arange(len(completions), device=model.device)
    return logprobs, hidden[rows, completion_mask.sum(dim=1) - 1]


@torch.no_grad()
def rollout(
    model: R2ecModel,
    batch: Batch,
    settings: RecPOParams,
    generator: Generators = None,
    collective: Collective | None = None,
    decoder: R2ecModel | None = None,
) -> Rollout:
    """Steps 1–4: sample G paths per user, score them against the item table, reward, advantage.

    ``decoder`` (a ``merged.MergedCopy``'s model, holding the policy's current weights) decodes the paths
    at plain-model speed; the policy's own log-probs are taken in the update either way.
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
    rewards = fused_reward(rank_part, sim_part, settings.reward_beta, settings.reward_type).view(users, group)
    advantages = group_advantages(rewards.float(), settings.advantage_type)
    old_logprobs, mask = _padded([row.float() for row in generation.logprobs], model.device)
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
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of the users in ``users`` (divided by global counts), their log p(v⁺), and their summable parts."""
    group, tau = settings.num_generations, model.config.similarity_temperature
    rows = slice(users.start * group, users.stop * group)
    completions = paths.token_ids[rows]
    logprobs, states = policy_forward(
        model, batch.prompts[users], completions, group, settings.temperature, settings.logprob_chunk_tokens
    )
    width = logprobs.shape[1]  # this slice's longest path; the rollout pads to the whole batch's
    mask, advantages = paths.mask[rows, :width], paths.advantages[users]
    token_loss, clipped = clipped_token_loss(
        logprobs,
        paths.old_logprobs[rows, :width],
        advantages.flatten(),
        mask,
        settings.epsilon,
        settings.epsilon_high,
        settings.loss_type,
        denominator=counts.token_loss.to(logprobs.dtype),
    )
    item_logprobs = in_batch_target_logprobs(states, target_states, paths.columns[rows], paths.column_ids, tau)
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
    parts = {
        "token_loss": token_loss.detach(),
        "item_loss": item_loss.detach(),
        "kl": kl.detach(),
        "clipped": clipped,
        "item_clipped": item_clipped,
        "item_ratio_sum": (ratios * paths.selected[users]).sum(),
    }
    return token_loss + item_loss + settings.beta * kl, item_logprobs.detach(), parts


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

    The first update of a rollout runs on the rollout-time weights: its log p(v⁺) becomes the rollout's
    old value (``paths.old_item_logprobs``), so the item ratio starts at exactly 1 however old the
    cached item table is. With ``policy_micro_batch`` the users go through forward and backward a
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
    for users_slice in slices:
        loss, item_part, parts = _micro_batch_loss(
            model, batch, paths, users_slice, collective.gather(local_targets), counts, settings
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
    loss = totals["token_loss"] + totals["item_loss"] + settings.beta * totals["kl"]
    selected = counts.selected.clamp(min=1.0)
    return {
        "loss": collective.total(loss).item(),
        "token_loss": collective.total(totals["token_loss"]).item(),
        "item_loss": collective.total(totals["item_loss"]).item(),
        "kl": collective.total(totals["kl"]).item(),
        "clip_fraction": (collective.total(totals["clipped"]) / tokens.clamp(min=1.0)).item(),
        "item_clip_fraction": (collective.total(totals["item_clipped"]) / selected).item(),
        "item_ratio_mean": (collective.total(totals["item_ratio_sum"]) / selected).item(),
        "grad_norm": float(grad_norm),
        "skipped": float(skipped),
    }


def rollout_metrics(paths: Rollout, collective: Collective | None = None) -> dict[str, float]:
    """Reward, advantage and completion statistics of the global batch."""
    collective = collective or Collective()
    rewards = collective.gather_values(paths.rewards.flatten())
    lengths = collective.gather_values(paths.mask.sum(dim=1))
    reasons = collective.gather_values(
        torch.tensor([STOP_REASONS.index(r) for r in paths.stop_reasons], device=lengths.device)
    )
    return {
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        "reward_rank": collective.gather_values(paths.rank_part).mean().item(),
        "reward_sim": collective.gather_values(paths.sim_part).mean().item(),
        "advantage_std": collective.gather_values(paths.advantages.flatten()).std().item(),
        "completion_length": lengths.float().mean().item(),
        **{f"stop_{reason}_share": (reasons == code).float().mean().item() for code, reason in enumerate(STOP_REASONS)},
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
) -> tuple[dict[str, float], Rollout]:
    """One rollout, ``num_iterations`` updates on it, the targets' table rows refreshed: metrics and paths.

    ``decoding``: a merged copy of the policy that decodes the rollout, refreshed after the updates.
    """
    paths = rollout(model, batch, settings, generator, collective, decoding.model if decoding else None)
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
