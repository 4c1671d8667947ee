"""The zero-shot dual-head model from the model parameters: shared by the sft, recpo and evaluation stages."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.model.adapters import AdapterSettings, attach_adapters
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel


def build_dual_head(
    backbone_lm: PreTrainedModel, backbone_tokenizer: PreTrainedTokenizerBase, model_params: dict[str, Any]
) -> R2ecModel:
    """Backbone + fresh adapters (or full fine-tuning) + tokenizer: the zero-shot R²ec model."""
    config = parse_block("model", model_params)
    torch.manual_seed(config.seed)  # LoRA's A matrices are random: seed them, or reruns differ
    lm = attach_adapters(backbone_lm, AdapterSettings(**config.adapters.model_dump()))
    head = DualHeadConfig(
        backbone=config.backbone, similarity_temperature=config.similarity_temperature,
        history_mask=config.history_mask,
    )
    return R2ecModel(lm, backbone_tokenizer, head)
