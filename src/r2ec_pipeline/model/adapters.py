"""LoRA adapters through peft (method §3 defaults: r=4, alpha=128, dropout 0, all projections)."""

from __future__ import annotations

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from r2ec_pipeline.config import AdapterParams


def attach_adapters(lm: PreTrainedModel, settings: AdapterParams) -> PreTrainedModel | PeftModel:
    """Wrap ``lm`` with fresh LoRA adapters, or leave every weight trainable for full fine-tuning."""
    if settings.full_finetune:
        lm.requires_grad_(True)
        return lm
    layers = None
    if settings.top_layers is not None:
        depth = lm.config.num_hidden_layers
        if not 1 <= settings.top_layers <= depth:
            raise ValueError(f"top_layers must be in 1..{depth} for this backbone, got {settings.top_layers}")
        layers = list(range(depth - settings.top_layers, depth))
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(lm, config)


def enable_training(lm: PreTrainedModel | PeftModel) -> int:
    """Make the trainable part trainable again after loading (peft loads adapters frozen): LoRA weights
    only, or every weight of a fully fine-tuned model. Returns the number of trainable parameters."""
    if isinstance(lm, PeftModel):
        for name, parameter in lm.named_parameters():
            parameter.requires_grad_("lora_" in name)
    else:
        lm.requires_grad_(True)
    return sum(p.numel() for p in lm.parameters() if p.requires_grad)
