"""RecPO's math (method §5) as pure PyTorch functions: rewards, group advantages, clipped losses."""

from r2ec_pipeline.rl.advantages import group_advantages
from r2ec_pipeline.rl.losses import (
    best_paths,
    clipped_item_loss,
    clipped_token_loss,
    kl_penalty,
)
from r2ec_pipeline.rl.rewards import fused_reward, rank_reward, similarity_reward

__all__ = [
    "best_paths",
    "clipped_item_loss",
    "clipped_token_loss",
    "fused_reward",
    "group_advantages",
    "kl_penalty",
    "rank_reward",
    "similarity_reward",
]
