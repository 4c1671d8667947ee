"""The zero-shot dual-head model from the model parameters, and where (device, precision) a model runs.

Shared by the sft, recpo and evaluation stages.
"""

from __future__ import annotations

import os

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.config import ModelParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: this process's CUDA device (``LOCAL_RANK`` under torchrun/accelerate) if CUDA is there, else CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("model.device is 'cuda' but torch sees no CUDA device (set model.device: auto or cpu)")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA (half the memory and bandwidth, tensor cores), float32 on the CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def place_model(
    model: R2ecModel, device: torch.device, dtype: torch.dtype, gradient_checkpointing: bool = False
) -> R2ecModel:
    """Move ``model`` to ``device``; frozen weights in ``dtype``, trainable ones (LoRA) kept in float32.

    peft casts the adapters' input to their dtype and their output back to the layer's, so a bfloat16
    backbone carries float32 adapters whose optimizer state and updates keep full precision. The item
    table stays float32 (the rec head's cosine/τ and softmax are float32 whatever the backbone's dtype).
    """
    model.lm.to(device)
    for parameter in model.lm.parameters():
        wanted = torch.float32 if parameter.requires_grad else dtype
        if parameter.dtype != wanted:
            parameter.data = parameter.data.to(wanted)
    for name, buffer in model.lm.named_buffers():
        if buffer.is_floating_point() and "inv_freq" not in name:  # rotary frequencies stay float32
            buffer.data = buffer.data.to(dtype)
    model.item_table = model.item_table.to(device, torch.float32)
    model.set_gradient_checkpointing(gradient_checkpointing)
    return model


def place_for(model: R2ecModel, config: ModelParams) -> R2ecModel:
    """``place_model`` with the ``model`` block's device, dtype and gradient checkpointing."""
    device = resolve_device(config.device)
    return place_model(model, device, resolve_dtype(config.dtype, device), config.gradient_checkpointing)


def build_dual_head(
    backbone_lm: PreTrainedModel, backbone_tokenizer: PreTrainedTokenizerBase, config: ModelParams, answer_tag: str
) -> R2ecModel:
    """Backbone + fresh adapters (or full fine-tuning) + tokenizer: the zero-shot R²ec model, placed.

    ``answer_tag`` is the prompts' (``prompts.answer_tag``): the tag the item prompts end with is the one
    generation forces and the user state is read at.
    """
    torch.manual_seed(config.seed)  # LoRA's A matrices are random: seed them, or reruns differ
    lm = attach_adapters(backbone_lm, config.adapters)
    head = DualHeadConfig(
        backbone=config.backbone,
        answer_tag=answer_tag,
        similarity_temperature=config.similarity_temperature,
        history_mask=config.history_mask,
    )
    return place_for(R2ecModel(lm, backbone_tokenizer, head), config)
