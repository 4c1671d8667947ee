"""One RecPO step (spec §5), top to bottom: rollout, score, reward, advantage, losses, optimizer step.

Parameter names follow TRL's GRPO where the concept is the same (num_generations, temperature,
top_k, max_completion_length, epsilon, epsilon_high, beta, loss_type, num_iterations); the rest are
R²ec's own. A batch may be one process's slice of a global batch (``Collective``): losses are then
divided by global counts and gradients summed, so the update equals the single-process one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from r2ec_pipeline.model.dual_head import R2ecModel, position_ids
from r2ec_pipeline.model.generation import STOP_REASONS, Generators, StopReason, generate_reasoning
from r2ec_pipeline.model.losses import in_batch_target_logprobs
from r2ec_pipeline.model.scoring import target_ranks
from r2ec_pipeline.rl.advantages import AdvantageType, group_advantages
from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.losses import LossType, best_paths, clipped_item_loss, clipped_token_loss, kl_penalty
from r2ec_pipeline.rl.rewards import RewardType, fused_reward, rank_reward, similarity_reward


@dataclass(frozen=True)
class RecPOSettings:
    num_generations: int = 4            # G paths per user (§5.1)
    temperature: float = 1.5            # rollout sampling temperature
    top_k: int | None = 200
    max_completion_length: int = 32     # reasoning tokens before <answer> is appended (512 on GPU)
    epsilon: float = 0.2                # ε_low
    epsilon_high: float = 0.28          # ε_high
    beta: float = 0.0                   # KL weight to the reference policy (adapters disabled)
    loss_type: LossType = "token_mean"
    num_iterations: int = 1             # policy updates per rollout (reusing its stored log-probs)
    reward_type: RewardType = "fused"
    reward_beta: float = 0.05           # β of the fused reward
    ndcg_cutoff: int = 1000             # K_r of R_rank
    advantage_type: AdvantageType = "grpo"
    relabel_topk: int = 1               # best paths per user that train the rec head
    max_grad_norm: float = 1.0


@dataclass
class Batch:
    prompts: list[str]                  # user prompts (chat-formatted, generation prompt at the end)
    targets: list[int]                  # target item ids
    histories: list[list[int]]          # items masked when ranking
    target_prompts: list[str]           # item prompts of the targets (re-encoded with gradient)


@dataclass
class Rollout:
    """G sampled paths per user of this process, scored and turned into advantages (no gradient)."""

    token_ids: list[list[int]]          # users·G completions, user-major, ending with the canonical tag
    texts: list[str]
    stop_reasons: list[StopReason]      # tag, end_of_turn or length, per path
    states: torch.Tensor                # users·G × d: h at each path's final tag token (what was scored)
    old_logprobs: torch.Tensor          # users·G × T, right-padded, under the rollout policy
    mask: torch.Tensor                  # users·G × T, 1 on real completion tokens
    rank_part: torch.Tensor             # users·G
    sim_part: torch.Tensor              # users·G
    rewards: torch.Tensor               # users × G
    advantages: torch.Tensor            # users × G
    selected: torch.Tensor              # users × G, the best path(s) that train the rec head
    columns: torch.Tensor               # users·G: each path's target column in the global batch
    column_ids: torch.Tensor            # global batch's target ids, one column per user
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
        values[index, :len(row)] = torch.as_tensor(row, dtype=values.dtype, device=device)
        mask[index, :len(row)] = 1.0
    return values, mask


def policy_forward(
    model: R2ecModel, prompts: Sequence[str], completions: Sequence[list[int]], group: int, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(token) of every completion token (right-padded, N × T) and h at each completion's last token.

    Each prompt is run once and its KV cache repeated for its ``group`` completions; gradients flow
    through the shared prompt as well. Completions are user-major: row i belongs to prompt i // group.
    """
    batch = model.tokenize(prompts, padding_side="left")
    prompt_mask = batch["attention_mask"]
    out = model.lm(input_ids=batch["input_ids"], attention_mask=prompt_mask, position_ids=position_ids(prompt_mask),
                   use_cache=True, logits_to_keep=1)
    cache = out.cache
    cache.batch_repeat_interleave(group)
    first_logits = out.logits[:, -1:].repeat_interleave(group, dim=0)
    ids, completion_mask = _padded(completions, model.device, value=model.tokenizer.pad_token_id)
    ids, completion_mask = ids.long(), completion_mask.long()
    mask = torch.cat([prompt_mask.repeat_interleave(group, dim=0), completion_mask], dim=1)
    starts = prompt_mask.sum(dim=1).repeat_interleave(group).view(-1, 1)
    positions = starts + torch.arange(ids.shape[1], device=model.device).view(1, -1)
    out = model.lm(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                   output_hidden_states=True)
    logits = torch.cat([first_logits, out.logits[:, :-1]], dim=1).float() / temperature
    logprobs = F.log_softmax(logits, dim=-1).gather(2, ids.unsqueeze(-1)).squeeze(-1)
    rows = torch.arange(len(completions), device=model.device)
    return logprobs, out.hidden_states[-1][rows, completion_mask.sum(dim=1) - 1]


@torch.no_grad()
def rollout(
    model: R2ecModel, batch: Batch, settings: RecPOSettings, generator: Generators = None,
    collective: Collective | None = None,
) -> Rollout:
    """Steps 1–4: sample G paths per user, score them against the item table, reward, advantage."""
    collective = collective or Collective()
    users, group = len(batch.prompts), settings.num_generations
    model.lm.eval()
    generation = generate_reasoning(model, batch.prompts, settings.max_completion_length, do_sample=True,
                                    temperature=settings.temperature, top_k=settings.top_k,
                                    generator=generator, group=group)
    owners = torch.arange(users, device=model.device).repeat_interleave(group)
    targets = torch.tensor(batch.targets, device=model.device)
    scores = model.score(generation.final_hidden, [batch.histories[u] for u in owners.tolist()])
    rank_part = rank_reward(target_ranks(scores, targets[owners]), settings.ndcg_cutoff)
    sim_part = similarity_reward(scores, targets[owners])
    rewards = fused_reward(rank_part, sim_part, settings.reward_beta, settings.reward_type).view(users, group)
    advantages = group_advantages(rewards.float(), settings.advantage_type)
    old_logprobs, mask = _padded([row.float() for row in generation.logprobs], model.device)
    return Rollout(
        token_ids=generation.token_ids, texts=generation.texts, stop_reasons=generation.stop_reasons,
        states=generation.final_hidden, old_logprobs=old_logprobs, mask=mask,
        rank_part=rank_part.float(), sim_part=sim_part.float(), rewards=rewards.float(), advantages=advantages,
        selected=best_paths(advantages, settings.relabel_topk), columns=owners + collective.rank * users,
        column_ids=collective.gather_values(targets),
    )


def policy_update(
    model: R2ecModel, optimizer: torch.optim.Optimizer, batch: Batch, paths: Rollout, settings: RecPOSettings,
    collective: Collective | None = None,
) -> dict[str, float]:
    """Steps 5–7: clipped token loss on all paths + clipped item loss on the best ones, one optimizer step.

    The first update of a rollout runs on the rollout-time weights: its log p(v⁺) becomes the rollout's
    old value (``paths.old_item_logprobs``), so the item ratio starts at exactly 1 however old the
    cached item table is.
    """
    collective = collective or Collective()
    group, tau = settings.num_generations, model.config.similarity_temperature
    model.lm.train()
    logprobs, states = policy_forward(model, batch.prompts, paths.token_ids, group, settings.temperature)
    tokens = collective.total(paths.mask.sum())
    paths_count = torch.tensor(float(len(paths.mask)), device=model.device)  # collectives need the device
    token_count = tokens if settings.loss_type == "token_mean" else collective.total(paths_count)
    token_loss, clipped = clipped_token_loss(logprobs, paths.old_logprobs, paths.advantages.flatten(), paths.mask,
                                             settings.epsilon, settings.epsilon_high, settings.loss_type,
                                             denominator=token_count.to(logprobs.dtype))
    target_states = collective.gather(model.encode_shared_prefix(batch.target_prompts))
    item_logprobs = in_batch_target_logprobs(states, target_states, paths.columns, paths.column_ids, tau)
    if paths.old_item_logprobs is None:
        paths.old_item_logprobs = item_logprobs.detach()
    users = len(batch.prompts)
    selected_count = collective.total(paths.selected.sum()).float()
    item_loss, item_clipped = clipped_item_loss(
        item_logprobs.view(users, group), paths.old_item_logprobs.view(users, group), paths.advantages,
        paths.selected, settings.epsilon, settings.epsilon_high, denominator=selected_count,
    )
    item_ratios = torch.exp(item_logprobs.detach() - paths.old_item_logprobs).view(users, group)
    loss = token_loss + item_loss
    kl = torch.zeros((), device=model.device)
    if settings.beta > 0:
        with torch.no_grad(), model.lm.disable_adapter():
            ref_logprobs, _ = policy_forward(model, batch.prompts, paths.token_ids, group, settings.temperature)
        kl = kl_penalty(logprobs, ref_logprobs, paths.mask, denominator=tokens.to(logprobs.dtype))
        loss = loss + settings.beta * kl

    # NaN/inf guard, decided globally so that every process skips (or steps) together
    optimizer.zero_grad(set_to_none=True)
    skipped = bool(collective.total((~torch.isfinite(loss.detach())).float()) > 0)
    grad_norm = torch.tensor(float("nan"))
    if not skipped:
        loss.backward()
        parameters = [p for p in model.lm.parameters() if p.requires_grad]
        collective.sum_gradients(parameters)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        optimizer.step()
    return {
        "loss": collective.total(loss.detach()).item(), "token_loss": collective.total(token_loss.detach()).item(),
        "item_loss": collective.total(item_loss.detach()).item(), "kl": collective.total(kl.detach()).item(),
        "clip_fraction": (collective.total(clipped) / tokens.clamp(min=1.0)).item(),
        "item_clip_fraction": (collective.total(item_clipped) / selected_count.clamp(min=1.0)).item(),
        "item_ratio_mean": (collective.total((item_ratios * paths.selected).sum()) / selected_count.clamp(min=1.0)).item(),
        "grad_norm": float(grad_norm), "skipped": float(skipped),
    }


def rollout_metrics(paths: Rollout, collective: Collective | None = None) -> dict[str, float]:
    """Reward, advantage and completion statistics of the global batch."""
    collective = collective or Collective()
    rewards = collective.gather_values(paths.rewards.flatten())
    lengths = collective.gather_values(paths.mask.sum(dim=1))
    reasons = collective.gather_values(torch.tensor([STOP_REASONS.index(r) for r in paths.stop_reasons],
                                                    device=lengths.device))
    return {
        "reward_mean": rewards.mean().item(), "reward_std": rewards.std().item(),
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
    settings: RecPOSettings,
    generator: Generators = None,
    collective: Collective | None = None,
) -> tuple[dict[str, float], Rollout]:
    """One rollout, ``num_iterations`` updates on it, the targets' table rows refreshed: metrics and paths."""
    paths = rollout(model, batch, settings, generator, collective)
    metrics = rollout_metrics(paths, collective)
    updates = [policy_update(model, optimizer, batch, paths, settings, collective)
               for _ in range(settings.num_iterations)]
    refresh_target_rows(model, batch, paths, collective)
    metrics.update(updates[0])  # the first update's losses are those of the rollout policy
    metrics["skipped"] = sum(update["skipped"] for update in updates)
    return metrics, paths
