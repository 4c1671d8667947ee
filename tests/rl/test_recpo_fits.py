"""RecPO fits a fixed handful of users on the tiny backbone, each loss alone (method §5.5, §5.6).

A GRPO loop that cannot raise the reward of the same few prompts it sees at every step is broken. Each
test trains one loss alone on a reward that only that loss can raise, and asserts the reward climbs
close to its maximum within a stated number of steps; the ``broken`` cases rerun the same loop with the
loss's sign, its advantage or its mask broken and assert that it then does not, so the tests are shown
to catch exactly those defects.

The tiny backbone's logits span well under one nat (32-dim hidden states under RMSNorm against tied
embeddings of std 0.02), so at temperature 1 no token can win the top-k; the token task samples at
temperature 0.1, where they span several nats, as a real backbone's do at 1.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

import r2ec_pipeline.rl.step as step_module
from r2ec_pipeline.model.dual_head import position_ids
from r2ec_pipeline.rl.step import recpo_step
from tests.rl.toy_task import FIT_ITEMS, SETTINGS, fit_batch, fit_model

TOKEN_STEPS, ITEM_STEPS = 15, 12
TOKEN_SETTINGS = SETTINGS.model_copy(
    update={
        "item_loss_weight": 0.0,
        "temperature": 0.1,
        "top_k": 20,
        "num_generations": 8,
        "max_completion_length": 3,
        "kl_to_start": False,
    }
)
ITEM_SETTINGS = SETTINGS.model_copy(
    update={"token_loss_weight": 0.0, "reward_type": "rank_only", "ndcg_cutoff": FIT_ITEMS, "kl_to_start": False}
)


def _visible_token(model) -> int:
    """The most likely first reasoning token over the fit users, among those with visible text (a path's
    trailing whitespace is cut, so a whitespace token could never be kept)."""
    batch = model.tokenize(fit_batch().prompts, padding_side="left")
    with torch.no_grad():
        logits = model.lm(**batch, position_ids=position_ids(batch["attention_mask"])).logits[:, -1]
    ranked = logits.softmax(dim=-1).mean(dim=0).argsort(descending=True).tolist()
    return next(token for token in ranked if model.tokenizer.decode([token]).strip().isalnum())


def _rewards(model, settings, steps: int, lr: float, reward_fn=None) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=lr)
    generator, batch = torch.Generator().manual_seed(0), fit_batch()
    return [
        recpo_step(model, optimizer, batch, settings, generator, reward_fn=reward_fn)[0]["reward_mean"]
        for _ in range(steps)
    ]


def _writes(token: int) -> Callable[[list[list[int]], torch.Tensor, torch.Tensor], torch.Tensor]:
    """Reward: the share of a path's reasoning tokens (the forced tag excluded) that are ``token``."""
    budget = TOKEN_SETTINGS.max_completion_length
    return lambda paths, scores, targets: torch.tensor([sum(t == token for t in p[:budget]) / budget for p in paths])


def _broken(monkeypatch: pytest.MonkeyPatch, defect: str, loss: str) -> None:
    """Break one piece of the step the way a bug would: the losses' sign, the advantages (all zero), or the
    loss's mask (the token loss's completion mask reads padding; the item loss selects no best path)."""
    if defect == "sign":
        clipped = step_module.clipped_token_loss, step_module.clipped_item_loss
        monkeypatch.setattr(step_module, "clipped_token_loss", lambda *a, **k: _negated(clipped[0](*a, **k)))
        monkeypatch.setattr(step_module, "clipped_item_loss", lambda *a, **k: _negated(clipped[1](*a, **k)))
    elif defect == "advantage":
        monkeypatch.setattr(step_module, "group_advantages", lambda rewards, kind: torch.zeros_like(rewards))
    elif defect == "mask" and loss == "token":
        padded = step_module.padded
        monkeypatch.setattr(
            step_module, "padded", lambda rows, device, value=0.0: _shifted(padded(rows, device, value))
        )
    elif defect == "mask" and loss == "item":
        monkeypatch.setattr(step_module, "best_paths", lambda advantages, topk: torch.zeros_like(advantages).bool())


def _negated(result: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return -result[0], result[1]


def _shifted(result: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask moved onto the padding after each row (a row's real tokens unmasked)."""
    values, mask = result
    return values, (1 - mask) * (mask.sum(dim=1, keepdim=True) < mask.shape[1])


@pytest.mark.parametrize("defect", [None, "sign", "advantage", "mask"])
def test_the_token_loss_alone_learns_to_write_a_rewarded_token(tiny_backbone_dir, tmp_path, monkeypatch, defect):
    model = fit_model(tiny_backbone_dir, tmp_path)
    reward = _writes(_visible_token(model))
    if defect:
        _broken(monkeypatch, defect, "token")
    rewards = _rewards(model, TOKEN_SETTINGS, TOKEN_STEPS, lr=3e-3, reward_fn=reward)
    first, last = rewards[0], sum(rewards[-5:]) / 5  # step 1's reward is measured before its update
    if defect is None:
        assert first < 0.2 and last > 0.6, rewards
    else:
        assert last < 0.3, rewards


@pytest.mark.parametrize("softmax", ["in_batch", "catalog"])
@pytest.mark.parametrize("defect", [None, "sign", "advantage", "mask"])
def test_the_item_loss_alone_raises_the_targets_rank_reward(tiny_backbone_dir, tmp_path, monkeypatch, softmax, defect):
    model = fit_model(tiny_backbone_dir, tmp_path)
    if defect:
        _broken(monkeypatch, defect, "item")
    settings = ITEM_SETTINGS.model_copy(update={"item_softmax": softmax})
    rewards = _rewards(model, settings, ITEM_STEPS, lr=1e-2)
    first, last = rewards[0], sum(rewards[-5:]) / 5
    if defect is None:
        assert first < 0.6 and last > 0.75, rewards
    else:
        assert last < 0.7, rewards
