"""What a training checkpoint says about the run that wrote it (``model/training_state.py`` manifests)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from r2ec_pipeline.model.dual_head import R2ecModel, backbone_fingerprint
from r2ec_pipeline.run_tags import data_hash, git_commit


def machine() -> str:
    """The accelerator's name, or the CPU's, with the core count: enough to tell two machines' timings apart."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} ({torch.cuda.device_count()} GPU)"
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        name = models[0] if models else name
    return f"{name} ({torch.get_num_threads()} threads)"


def training_provenance(
    stage: str,
    model: R2ecModel,
    interactions: pd.DataFrame,
    model_params: dict[str, Any],
    prompts_params: dict[str, Any],
    stage_params: dict[str, Any],
) -> dict[str, Any]:
    """Stage, how the model is built (``dual_head``), prompt settings, data hash, backbone, commit, machine
    and parameters of a training run.

    ``stage``, ``prompts``, ``data_hash`` and ``backbone`` must match for a checkpoint to be resumed;
    ``dual_head`` and ``parameters.model`` rebuild the model anywhere (``model/shipped.py``).
    """
    return {
        "stage": stage,
        "dual_head": {**model.config.to_dict(), "fingerprint": backbone_fingerprint(model.lm)},
        "prompts": dict(prompts_params),
        "data_hash": data_hash(interactions),
        "backbone": model_params["backbone"],
        "git_commit": git_commit(Path.cwd()),
        "machine": machine(),
        "parameters": {"model": dict(model_params), stage: dict(stage_params)},
    }
