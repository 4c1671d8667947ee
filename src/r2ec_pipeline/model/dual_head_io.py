"""Save and load a dual-head model as safetensors + JSON: never a pickle.

Layout of a checkpoint folder:
  r2ec_config.json           DualHeadConfig (backbone spec, τ, answer tag, backbone fingerprint)
  adapter/                   peft LoRA adapters (adapter_model.safetensors), or
  backbone/                  every weight (model.safetensors) after full fine-tuning
  item_table.safetensors     the rec head's item table H
  tokenizer/                 the tokenizer with its chat template
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from r2ec_pipeline.model.backbone import load_causal_lm
from r2ec_pipeline.model.dual_head import (
    DualHeadConfig,
    R2ecModel,
    backbone_fingerprint,
)

CONFIG_FILE = "r2ec_config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"  # peft's name for it
ITEM_TABLE_KEY = "__item_table__"  # the item table's name beside the weights in a trainable_state


class CheckpointError(ValueError):
    """A checkpoint is incomplete or does not belong to the backbone it is loaded onto."""


def trainable_state(model: R2ecModel, with_table: bool = True) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights and the item table (``ITEM_TABLE_KEY``) on the CPU.

    That is everything training changes: a snapshot to restore the selected weights from, and what a
    training checkpoint stores. ``with_table=False`` copies the weights alone.
    """
    state = {
        name: p.detach().to("cpu", copy=True).contiguous() for name, p in model.lm.named_parameters() if p.requires_grad
    }
    if with_table:
        state[ITEM_TABLE_KEY] = model.item_table.detach().float().to("cpu", copy=True).contiguous()
    return state


def restore_trainable(model: R2ecModel, state: dict[str, torch.Tensor], source: object = "snapshot") -> None:
    """Put a ``trainable_state`` back into the model (weights in place, the item table replaced if it has one)."""
    tensors = dict(state)
    table = tensors.pop(ITEM_TABLE_KEY, None)
    parameters = {name: p for name, p in model.lm.named_parameters() if p.requires_grad}
    if set(parameters) != set(tensors):
        missing, extra = sorted(set(parameters) - set(tensors)), sorted(set(tensors) - set(parameters))
        raise CheckpointError(f"{source} does not fit this model: missing {missing[:3]}, extra {extra[:3]}")
    with torch.no_grad():
        for name, parameter in parameters.items():
            parameter.copy_(tensors[name])
    if table is not None:
        model.item_table = table.to(model.device)


def stabilize_adapter_config(path: Path) -> None:
    """Rewrite peft's adapter config with its module sets sorted and its keys in order.

    peft keeps ``target_modules`` as a Python set and writes it in the set's iteration order, which string
    hashing randomises per process: the same adapters would give a different file, and a different DVC
    hash, on every run. Sorted, the checkpoint folder is byte-identical for identical weights.
    """
    config = json.loads(path.read_text())
    for key in ("target_modules", "modules_to_save", "exclude_modules"):
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_dual_head(model: R2ecModel, directory: str | os.PathLike[str]) -> Path:
    """Write the checkpoint into a staging folder, then swap it in: never a half-written checkpoint."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        config = DualHeadConfig(**{**model.config.to_dict(), "fingerprint": backbone_fingerprint(model.lm)})
        (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
        weights = "adapter" if isinstance(model.lm, PeftModel) else "backbone"
        model.lm.save_pretrained(staging / weights, safe_serialization=True)
        if weights == "adapter":
            stabilize_adapter_config(staging / weights / ADAPTER_CONFIG_FILE)
        save_file(
            {"item_table": model.item_table.detach().float().cpu().contiguous()}, staging / "item_table.safetensors"
        )
        model.tokenizer.save_pretrained(staging / "tokenizer")
        if target.exists():
            old = target.with_name(f".{target.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_dual_head(
    directory: str | os.PathLike[str], cache_root: str | os.PathLike[str], backbone: str | None = None
) -> R2ecModel:
    """Load a checkpoint; ``backbone`` (default: the one it was trained on) must match its fingerprint."""
    folder = Path(directory)
    if not (folder / CONFIG_FILE).is_file():
        raise CheckpointError(f"{folder} is not a dual-head checkpoint ({CONFIG_FILE} missing)")
    config = DualHeadConfig(**json.loads((folder / CONFIG_FILE).read_text()))
    if (folder / "backbone").is_dir():
        lm = AutoModelForCausalLM.from_pretrained(str(folder / "backbone"), local_files_only=True, dtype=torch.float32)
    else:
        lm = load_causal_lm(backbone or config.backbone, cache_root)
        found = backbone_fingerprint(lm)
        if found != config.fingerprint:
            diff = {
                k: (config.fingerprint.get(k), found.get(k)) for k in found if config.fingerprint.get(k) != found[k]
            }
            raise CheckpointError(
                f"checkpoint {folder} was trained on another backbone: (checkpoint, backbone) differ in {diff}"
            )
        lm = PeftModel.from_pretrained(lm, str(folder / "adapter"), is_trainable=False)
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    model = R2ecModel(lm, tokenizer, config)
    model.item_table = load_file(folder / "item_table.safetensors")["item_table"]
    return model
