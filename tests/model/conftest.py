"""The dual-head model on the tiny random backbone, with LoRA adapters, for the model tests."""

import pytest
import torch

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel

PROMPTS = [
    "<|im_start|>user\nHere is a user's history<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nTitle: Toy Story 1995<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.fixture
def model(tiny_backbone_dir, tmp_path):
    torch.manual_seed(0)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(r=2, alpha=4, top_layers=None))
    tokenizer = load_tokenizer(str(tiny_backbone_dir), tmp_path)
    return R2ecModel(lm.eval(), tokenizer, DualHeadConfig(backbone=str(tiny_backbone_dir))).eval()
