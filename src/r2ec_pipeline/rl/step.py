"""One RecPO step (spec §5), top to bottom: rollout, score, reward, advantage, losses, optimizer step.

Parameter names follow TRL's GRPO where the concept is the same (num_generations, temperature,
top_k, max_completion_length, epsilon, epsilon_high, beta, loss_type); the rest are R²ec's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from r2ec_pipeline.model.dual_head import R2ecModel, position_ids
from r2ec_pipeline.model.generation import generate_reasoning
from r2ec_pipeline.model.losses import in_batch_target_logprobs
from r2ec_pipeline.model.scoring import target_ranks
from r2ec_pipeline.rl.advantages import AdvantageType, group_advantages
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
    reward_type: RewardType = "fused"
    reward_beta: float = 0.05           # β of the fused reward
    ndcg_cutoff: int = 1000             # K_r of R_rank
    advantage_type: AdvantageType = "grpo"
    relabel_topk: int = 1               # best paths per user that train the rec head


@dataclass
class Batch:
    prompts: list[str]                  # user prompts (chat-formatted, generation prompt at the end)
    targets: list[int]                  # target item ids
    histories: list[list[int]]          # items masked when ranking
    target_prompts: list[str]           # item prompts of the targets (re-encoded with gradient)


def _right_aligned(rows: Sequence[torch.Tensor], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.zeros(len(rows), width)
    mask = torch.zeros(len(rows), width)
    for index, row in enumerate(rows):
        values[index, width - len(row):] = row
        mask[index, width - len(row):] = 1.0
    return values, mask


def _policy_forward(
    model: R2ecModel, prompts: Sequence[str], completions: Sequence[list[int]], temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """With gradient: log π_θ of each completion token (right-aligned, N × T) and h at the last token."""
    prompt_ids = model.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    sequences = [p + c for p, c in zip(prompt_ids, completions, strict=True)]
    width, longest = max(map(len, sequences)), max(map(len, completions))
    pad = model.tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=model.device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=model.device)
    out = model.lm(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask),
                   output_hidden_states=True, use_cache=False, logits_to_keep=longest + 1)
    logits = out.logits[:, :-1].float() / temperature                      # predicts the last `longest` tokens
    tokens = ids[:, width - longest:]
    logprobs = F.log_softmax(logits, dim=-1).gather(2, tokens.unsqueeze(-1)).squeeze(-1)
    return logprobs, out.hidden_states[-1][:, -1]


def recpo_step(
    model: R2ecModel,
    optimizer: torch.optim.Optimizer,
    batch: Batch,
    settings: RecPOSettings,
    generator: torch.Generator | None = None,
    max_grad_norm: float = 1.0,
) -> dict[str, float]:
    """Run one RecPO update on ``batch`` and return its metrics (rewards, losses, clip fraction, ...)."""
    users, group = len(batch.prompts), settings.num_generations
    tau = model.config.similarity_temperature
    prompts = [prompt for prompt in batch.prompts for _ in range(group)]
    owners = torch.arange(users, device=model.device).repeat_interleave(group)
    targets = torch.tensor(batch.targets, device=model.device)

    # 1. rollout with the current policy (no gradient): G paths per user
    model.lm.eval()
    rollout = generate_reasoning(model, prompts, settings.max_completion_length, do_sample=True,
                                 temperature=settings.temperature, top_k=settings.top_k, generator=generator)
    # 2. score every path against the cached item table, history masked
    with torch.no_grad():
        scores = model.score(rollout.final_hidden, [batch.histories[u] for u in owners.tolist()])
        ranks = target_ranks(scores, targets[owners])
        rank_part = rank_reward(ranks, settings.ndcg_cutoff)
        sim_part = similarity_reward(scores, targets[owners])
        # 3. fused reward, 4. group-relative advantage
        rewards = fused_reward(rank_part, sim_part, settings.reward_beta, settings.reward_type).view(users, group)
        advantages = group_advantages(rewards.float(), settings.advantage_type)
        selected = best_paths(advantages, settings.relabel_topk)
        old_target_states = model.item_table[targets]
        old_item_logprobs = in_batch_target_logprobs(rollout.final_hidden, old_target_states, owners, targets, tau)

    # 5. token loss on all paths, 6. item loss on the best path(s) only
    model.lm.train()
    logprobs, states = _policy_forward(model, prompts, rollout.token_ids, settings.temperature)
    old_logprobs, mask = _right_aligned([lp.detach().cpu() for lp in rollout.logprobs], logprobs.shape[1])
    old_logprobs, mask = old_logprobs.to(logprobs.device), mask.to(logprobs.device)
    token_loss, clip_fraction = clipped_token_loss(logprobs, old_logprobs, advantages.flatten(), mask,
                                                   settings.epsilon, settings.epsilon_high, settings.loss_type)
    target_states = model.encode_shared_prefix(batch.target_prompts)
    item_logprobs = in_batch_target_logprobs(states, target_states, owners, targets, tau)
    item_loss = clipped_item_loss(item_logprobs.view(users, group), old_item_logprobs.view(users, group),
                                  advantages, selected, settings.epsilon, settings.epsilon_high)
    loss = token_loss + item_loss
    kl = torch.zeros(())
    if settings.beta > 0:
        with torch.no_grad(), model.lm.disable_adapter():
            ref_logprobs, _ = _policy_forward(model, prompts, rollout.token_ids, settings.temperature)
        kl = kl_penalty(logprobs, ref_logprobs, mask)
        loss = loss + settings.beta * kl

    # 7. one optimizer step; 8. refresh the batch targets' rows of the item table
    optimizer.zero_grad(set_to_none=True)
    skipped = not bool(torch.isfinite(loss))
    grad_norm = torch.tensor(float("nan"))
    if not skipped:
        loss.backward()
        parameters = [p for p in model.lm.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
        optimizer.step()
    with torch.no_grad():
        model.item_table[targets] = model.encode_shared_prefix(batch.target_prompts).float()
    lengths = torch.tensor([len(tokens) for tokens in rollout.token_ids], dtype=torch.float)
    return {
        "reward_mean": rewards.mean().item(), "reward_std": rewards.std().item(),
        "reward_rank": rank_part.mean().item(), "reward_sim": sim_part.mean().item(),
        "advantage_std": advantages.std().item(), "token_loss": token_loss.item(), "item_loss": item_loss.item(),
        "kl": kl.item(), "clip_fraction": clip_fraction.item(), "completion_length": lengths.mean().item(),
        "truncated_share": sum(rollout.truncated) / len(rollout.truncated), "grad_norm": float(grad_norm),
        "skipped": float(skipped),
    }
