"""A decoding copy of the policy: LoRA merged into the backbone's weights, refreshed after each update.

Decoding one token for a few hundred rows is bound by kernel launches, not arithmetic: peft's
unmerged adapters add three kernels and a float32 cast per projection (~630 launches a token on
SmolLM2). A copy whose weights are W + (α/r)·B·A in the backbone's dtype decodes at plain-model
speed; ``refresh`` rewrites only the adapted weights from the policy's current adapters, so the copy
follows every optimizer step for the cost of one small matmul per projection.
"""

from __future__ import annotations

import copy

import torch
from peft import PeftModel
from peft.tuners.lora import LoraLayer

from r2ec_pipeline.model.dual_head import R2ecModel

PEFT_PREFIX = "base_model.model."


class MergedCopy:
    """``model`` for decoding: an ``R2ecModel`` over a merged, frozen copy of its backbone (``.model``)."""

    def __init__(self, policy: R2ecModel, dtype: torch.dtype | None = None) -> None:
        self.policy = policy
        frozen = next(p for p in policy.lm.parameters() if not p.requires_grad)
        self.dtype = dtype or frozen.dtype
        lm = copy.deepcopy(policy.lm)
        if isinstance(lm, PeftModel):
            lm = lm.merge_and_unload()
        lm.requires_grad_(False)
        lm.to(self.dtype).eval()
        self.model = R2ecModel(lm, policy.tokenizer, policy.config)
        self.model.bottom_cache_mb = 0  # its weights change with every refresh: nothing of it may be cached
        targets = dict(lm.named_modules())
        self.pairs = [
            (module, targets[name.removeprefix(PEFT_PREFIX)])
            for name, module in policy.lm.named_modules()
            if isinstance(module, LoraLayer)
        ]
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> R2ecModel:
        """Copy the policy's current merged weights into the copy (after an optimizer step); returns ``.model``."""
        for adapted, merged in self.pairs:
            weight = adapted.base_layer.weight.float()
            for name in adapted.active_adapters:
                if name in adapted.lora_A:
                    weight = weight + adapted.get_delta_weight(name).float()
            merged.weight.copy_(weight.to(merged.weight.dtype))
        self.model.item_table = self.policy.item_table
        return self.model
