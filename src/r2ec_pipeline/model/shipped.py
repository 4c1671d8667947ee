"""A dual-head model from a training checkpoint folder on any machine (``model/training_state.py``).

The repository keeps the checkpoints of the runs its docs report (``checkpoints/``); each is a
training checkpoint whose manifest says how the model was built (``dual_head``: backbone, answer tag,
τ, fingerprint; ``parameters.model.adapters``), which prompts and data trained it, and the sha256 of
every file. A model is rebuilt from the backbone, the adapters' selected weights (``best.safetensors``,
else the last ones) and an item table encoded from the catalog here: the table is a function of the
weights, so it is not shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel, backbone_fingerprint
from r2ec_pipeline.model.dual_head_io import ITEM_TABLE_KEY, CheckpointError, restore_trainable
from r2ec_pipeline.model.training_state import BEST_FILE, WEIGHTS_FILE, verify_manifest


@dataclass(frozen=True)
class ShippedCheckpoint:
    """A verified checkpoint folder: its manifest and the weights a model is built from."""

    path: Path
    manifest: dict[str, Any]
    weights: dict[str, torch.Tensor]  # the selected weights (the last ones without a selection), no table

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def selected(self) -> str:
        """Which weights: the selection's (``best``) or the last step's."""
        return "best" if (self.path / BEST_FILE).is_file() else "last"


def read_shipped(path: str | Path) -> ShippedCheckpoint:
    """Verify every file against the manifest and read the weights; a clear error for anything else."""
    folder = Path(path)
    manifest = verify_manifest(folder)
    if "dual_head" not in manifest or "model" not in manifest.get("parameters", {}):
        raise CheckpointError(
            f"{folder}: its manifest does not say how the model was built (dual_head, parameters.model)"
        )
    file = folder / (BEST_FILE if (folder / BEST_FILE).is_file() else WEIGHTS_FILE)
    weights = {name: tensor for name, tensor in load_file(file).items() if name != ITEM_TABLE_KEY}
    return ShippedCheckpoint(folder, manifest, weights)


def mismatch(checkpoint: ShippedCheckpoint, data_hash: str, prompts: dict[str, Any]) -> str | None:
    """Why the checkpoint cannot be evaluated on this run's data and prompts (None if it can)."""
    problems = []
    if checkpoint.manifest.get("data_hash") != data_hash:
        problems.append(f"data hash {checkpoint.manifest.get('data_hash')!r} vs this run's {data_hash!r}")
    if checkpoint.manifest.get("prompts") != dict(prompts):
        problems.append(f"prompt settings {checkpoint.manifest.get('prompts')} vs this run's {dict(prompts)}")
    return "; ".join(problems) or None


def build_from_checkpoint(
    checkpoint: ShippedCheckpoint, lm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> R2ecModel:
    """The backbone ``lm`` with the checkpoint's adapters and weights (no item table yet, CPU, float32)."""
    head = DualHeadConfig(**checkpoint.manifest["dual_head"])
    found = backbone_fingerprint(lm)
    if head.fingerprint and head.fingerprint != found:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} was trained on another backbone: {head.fingerprint} vs {found}"
        )
    adapters = AdapterParams(**checkpoint.manifest["parameters"]["model"].get("adapters", {}))
    model = R2ecModel(attach_adapters(lm, adapters), tokenizer, head)
    restore_trainable(model, checkpoint.weights, f"checkpoint {checkpoint.path}")
    return model
