"""What the CPU benchmarks share: the project's paths, a stopwatch, the model they time, their table.

(``gpu_common.py`` is the GPU scripts' counterpart: it needs nothing beyond torch, transformers and peft.)
Each script puts its own folder on ``sys.path`` by being run as ``python benchmarks/<name>.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel

ROOT = Path(__file__).resolve().parents[1]  # the project
CACHE = ROOT / "data/06_models/backbones"  # where `make run` unpacked the backbones
T = TypeVar("T")


def timed_call(function: Callable[[], T]) -> tuple[float, T]:
    """(seconds ``function()`` took, its result)."""
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def trained_like_model(backbone: str, seed: int = 0) -> R2ecModel:
    """The CPU profile's adapters (top 8 layers) with ``lora_B`` drawn from N(0, 0.01²) (seeded, moved off
    zero as after training), in eval mode: the model the CPU benchmarks time."""
    torch.manual_seed(seed)
    lm = attach_adapters(load_causal_lm(backbone, CACHE), AdapterParams(top_layers=8)).eval()
    with torch.no_grad():
        for name, parameter in lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.01)
    return R2ecModel(lm, load_tokenizer(backbone, CACHE), DualHeadConfig(backbone=backbone)).eval()


def print_measures(rows: list[tuple[str, str]]) -> None:
    """Print ``rows`` as a two-column markdown table, the measure column padded to its widest entry."""
    width = max(len(name) for name, _ in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
