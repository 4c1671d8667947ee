"""One RecPO step on the tiny random backbone: parameters move, and reward rises on a learnable task."""

import pytest
import torch

from r2ec_pipeline.model.adapters import AdapterSettings, attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.rl.step import Batch, RecPOSettings, recpo_step

TITLES = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Babe"]


def _chat(text):
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def _model(tiny_backbone_dir, tmp_path, seed=0):
    torch.manual_seed(seed)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterSettings(r=4, alpha=8))
    model = R2ecModel(lm, load_tokenizer(str(tiny_backbone_dir), tmp_path),
                      DualHeadConfig(backbone=str(tiny_backbone_dir), similarity_temperature=0.1))
    items = [_chat(f"Title: {title}") + "<answer>" for title in TITLES]
    model.build_item_table(list(range(1, 7)), items, progress=False)
    return model, items


def _batch(items, users=(1, 2, 3)):
    """A learnable task: each user's prompt names its target item."""
    return Batch(prompts=[_chat(f"next: {TITLES[u - 1]}") for u in users], targets=list(users),
                 histories=[[] for _ in users], target_prompts=[items[u - 1] for u in users])


SETTINGS = RecPOSettings(num_generations=4, temperature=1.0, top_k=None, max_completion_length=3,
                         reward_type="fused", reward_beta=0.05, ndcg_cutoff=6)


def test_parameters_change_after_one_step(tiny_backbone_dir, tmp_path):
    model, items = _model(tiny_backbone_dir, tmp_path)
    before = {n: p.detach().clone() for n, p in model.lm.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=1e-2)
    metrics = recpo_step(model, optimizer, _batch(items), SETTINGS, torch.Generator().manual_seed(0))
    changed = [n for n, p in model.lm.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed and metrics["skipped"] == 0.0
    assert set(metrics) >= {"reward_mean", "reward_std", "token_loss", "item_loss", "clip_fraction",
                            "completion_length", "truncated_share", "advantage_std"}
    assert 0.0 <= metrics["reward_mean"] <= 1.0


def test_mean_reward_rises_on_a_learnable_task(tiny_backbone_dir, tmp_path):
    model, items = _model(tiny_backbone_dir, tmp_path)
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=2e-2)
    generator = torch.Generator().manual_seed(0)
    rewards = [recpo_step(model, optimizer, _batch(items), SETTINGS, generator)["reward_mean"] for _ in range(12)]
    before_training, last = rewards[0], sum(rewards[-3:]) / 3  # step 0's reward is measured before its update
    assert last > before_training + 0.15, rewards


def test_one_path_per_user_is_refused_by_grpo(tiny_backbone_dir, tmp_path):
    model, items = _model(tiny_backbone_dir, tmp_path)
    optimizer = torch.optim.AdamW([p for p in model.lm.parameters() if p.requires_grad], lr=1e-2)
    with pytest.raises(ValueError, match="at least 2 paths per user"):
        recpo_step(model, optimizer, _batch(items), RecPOSettings(num_generations=1, max_completion_length=2))
