"""The model the benchmarks time: the CPU profile's adapters (top 8 layers), moved off zero as after training."""

from __future__ import annotations

from pathlib import Path

import torch

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel

CACHE = Path(__file__).resolve().parents[1] / "data/06_models/backbones"


def trained_like_model(backbone: str, seed: int = 0) -> R2ecModel:
    """Backbone + LoRA on the top 8 layers with ``lora_B`` drawn from N(0, 0.01²) (seeded), in eval mode."""
    torch.manual_seed(seed)
    lm = attach_adapters(load_causal_lm(backbone, CACHE), AdapterParams(top_layers=8)).eval()
    with torch.no_grad():
        for name, parameter in lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.01)
    return R2ecModel(lm, load_tokenizer(backbone, CACHE), DualHeadConfig(backbone=backbone)).eval()
