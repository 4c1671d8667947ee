"""A learnable toy recommendation task on the tiny random backbone: each user's prompt names its target."""

from __future__ import annotations

from pathlib import Path

import torch

from r2ec_pipeline.config import AdapterParams, RecPOParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.rl.step import Batch
from r2ec_pipeline.rl.trainer import RecPOData

TITLES = ["Toy Story", "GoldenEye", "Four Rooms", "Get Shorty", "Copycat", "Babe"]
# the recpo block of the toy task: sampling from the whole vocabulary, 3 reasoning tokens; the loop's
# settings (steps, learning rate, validation, checkpoints) are set by each trainer test
SETTINGS = RecPOParams(
    num_generations=4,
    temperature=1.0,
    top_k=None,
    max_completion_length=3,
    reward_type="fused",
    reward_beta=0.05,
    ndcg_cutoff=6,
    max_steps=12,
    learning_rate=1e-5,
    eval_steps=None,
    save_steps=None,
    metric_for_best_model="reasoning.ndcg_at_10",
)


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def item_prompts() -> dict[int, str]:
    return {index + 1: chat(f"Title: {title}") + "<answer>" for index, title in enumerate(TITLES)}


def toy_model(backbone_dir: Path, cache_dir: Path, seed: int = 0, items: dict[int, str] | None = None) -> R2ecModel:
    """Tiny backbone + LoRA adapters (seeded) with the item table of ``items`` (default: the six toy titles)."""
    torch.manual_seed(seed)
    lm = attach_adapters(load_causal_lm(str(backbone_dir), cache_dir), AdapterParams(r=4, alpha=8, top_layers=None))
    model = R2ecModel(
        lm,
        load_tokenizer(str(backbone_dir), cache_dir),
        DualHeadConfig(backbone=str(backbone_dir), similarity_temperature=0.1),
    )
    items = items or item_prompts()
    model.build_item_table(list(items), list(items.values()), progress=False)
    return model


def toy_batch(users: tuple[int, ...] = (1, 2, 3)) -> Batch:
    items = item_prompts()
    return Batch(
        prompts=[chat(f"next: {TITLES[u - 1]}") for u in users],
        targets=list(users),
        histories=[[] for _ in users],
        target_prompts=[items[u] for u in users],
    )


def toy_data() -> RecPOData:
    """Six users, one per item, each named in its prompt."""
    batch = toy_batch(tuple(range(1, 7)))
    return RecPOData(
        prompts=batch.prompts, targets=batch.targets, histories=batch.histories, item_prompt=item_prompts()
    )


# --- the fit tasks: RecPO must fit a fixed handful of users it sees at every step -------------------------
FIT_ITEMS = 24
FIT_USERS = (3, 7, 11, 19)


def fit_catalog() -> dict[int, str]:
    """A catalog of ``FIT_ITEMS`` items (ranks start far from 1: a rank reward has room to rise)."""
    return {item: chat(f"Title: Item {item}") + "<answer>" for item in range(1, FIT_ITEMS + 1)}


def fit_model(backbone_dir: Path, cache_dir: Path) -> R2ecModel:
    """Tiny backbone + seeded adapters with the fit catalog's item table."""
    return toy_model(backbone_dir, cache_dir, items=fit_catalog())


def fit_batch() -> Batch:
    """The same four users at every step, each prompt naming its target."""
    items = fit_catalog()
    return Batch(
        prompts=[chat(f"next: Item {user}") for user in FIT_USERS],
        targets=list(FIT_USERS),
        histories=[[] for _ in FIT_USERS],
        target_prompts=[items[user] for user in FIT_USERS],
    )
