"""Resumable RecPO training state: ``<root>/checkpoint-<step>/``, written atomically, oldest pruned.

A checkpoint holds everything the next step depends on: the trainable weights and the item table
(``trainable.safetensors``), the optimizer and scheduler states and torch's RNG, CUDA's too where
there is one (``optimizer.pt``, tensors and plain containers only, read back with
``weights_only=True``), and the step, settings and metric history (``trainer_state.json``). The
weights and table of the best validation so far (model selection) are kept beside them
(``best.safetensors``), so a resumed run still returns the selected model. Data order and rollout
sampling are functions of (seed, step), so they need no saved state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import (
    CheckpointError,
    restore_trainable,
    trainable_state,
)

STATE_FILE = "trainer_state.json"
BEST_FILE = "best.safetensors"
_NAME = re.compile(r"^checkpoint-(\d+)$")


class ResumeError(ValueError):
    """A checkpoint is missing, incomplete, or was written under different training settings."""


class CheckpointStore:
    """The folder of training checkpoints of one RecPO run."""

    def __init__(self, root: str | os.PathLike[str], keep: int = 2) -> None:
        self.root, self.keep = Path(root), keep

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _NAME.match(p.name))]
        return [path for _, path in sorted(found) if (path / STATE_FILE).is_file()]

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save(
        self,
        model: R2ecModel,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        state: dict[str, Any],
        best: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write ``checkpoint-<state['step']>`` through a staging folder, then drop all but the newest ``keep``.

        ``best``: the ``trainable_state`` of the selected weights so far, if any.
        """
        target = self.root / f"checkpoint-{state['step']}"
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            save_file(trainable_state(model), staging / "trainable.safetensors")
            if best is not None:
                save_file(best, staging / BEST_FILE)
            rng = {"torch_rng": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng["cuda_rng"] = torch.cuda.get_rng_state_all()
            torch.save(
                {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **rng},
                staging / "optimizer.pt",
            )
            (staging / STATE_FILE).write_text(json.dumps(state, indent=1))
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for old in self.checkpoints()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def clear(self) -> int:
        """Remove every checkpoint (a fresh run must not leave stale ones to be resumed later)."""
        stale = self.checkpoints()
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        return len(stale)

    def resolve(self, resume: bool | str | None) -> Path | None:
        """``True``: the latest checkpoint here (None if there is none); a path: that one; falsy: None."""
        if not resume:
            return None
        if resume is True:
            return self.latest()
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise ResumeError(f"resume_from_checkpoint {str(path)!r} is not a RecPO checkpoint ({STATE_FILE} missing)")
        return path

    @staticmethod
    def load(path: Path, model: R2ecModel, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
        """Restore weights, item table, optimizer, scheduler and RNG in place; return the trainer state."""
        try:
            restore_trainable(model, load_file(path / "trainable.safetensors"), f"checkpoint {path}")
        except CheckpointError as error:
            raise ResumeError(str(error)) from error
        saved = torch.load(path / "optimizer.pt", weights_only=True)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if "cuda_rng" in saved and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return json.loads((path / STATE_FILE).read_text())

    @staticmethod
    def load_best(path: Path) -> dict[str, torch.Tensor] | None:
        """The selected weights and table saved with the checkpoint at ``path`` (None if nothing was selected)."""
        return load_file(path / BEST_FILE) if (path / BEST_FILE).is_file() else None
