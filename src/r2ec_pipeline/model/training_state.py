"""Resumable, self-describing training checkpoints (SFT and RecPO): ``<root>/checkpoint-<step>/``.

A checkpoint holds everything the next step depends on, and says what it is:

- ``trainable.safetensors``: the trainable weights (float32), with the item table where the run's table
  is not a function of the current weights (RecPO refreshes it every ``refresh_every`` steps);
- ``best.safetensors``: the selected weights so far (model selection), without a table: the table of
  validated weights is re-encoded from them (validation encodes it first, so nothing is lost);
- ``optimizer.pt``: optimizer (and scheduler) state, torch's RNG and CUDA's where there is one, and the
  trainer's own resume state (tensors and plain containers only: read back with ``weights_only=True``);
- ``trainer_state.json``: step, settings, metric history;
- ``manifest.json``: what trained it (stage, prompt settings, data hash, commit, machine, parameters)
  and the sha256 and size of every file above, checked before a resume reads anything.

Written through a staging folder and swapped in, oldest pruned: a run stopped at any moment leaves
complete checkpoints only. A folder copied to another machine resumes there by its path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from r2ec_pipeline.model.dual_head_io import ITEM_TABLE_KEY

STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "trainable.safetensors"
BEST_FILE = "best.safetensors"
RESUME_FILE = "optimizer.pt"
MANIFEST_FILE = "manifest.json"
# what a checkpoint must have been trained under to be resumed here: a change would silently mix two runs
MUST_MATCH = ("stage", "data_hash", "prompts", "backbone")
_NAME = re.compile(r"^checkpoint-(\d+)$")


class ResumeError(ValueError):
    """A checkpoint is missing, incomplete, altered, or was written under different training settings."""


@dataclass
class Checkpoint:
    """A checkpoint read back: trainer state, weights, resume state and the selected weights (if any)."""

    path: Path
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    resume: dict[str, Any]
    best: dict[str, torch.Tensor] | None
    manifest: dict[str, Any]


def refuse_changed_settings(saved: dict[str, Any], current: dict[str, Any], resumable: set[str], path: Any) -> None:
    """A checkpoint resumes only under the settings it was written with, ``resumable`` ones aside."""
    changed = {
        key: (saved.get(key), value)
        for key, value in current.items()
        if key not in resumable and saved.get(key) != value
    }
    if changed:
        raise ResumeError(f"cannot resume from {path}: settings changed since it was written (saved, now): {changed}")


def progress_from_state(cls: Any, state: dict[str, Any]) -> Any:
    """A trainer's progress dataclass (with an ``evaluations`` field keyed by step) from its saved JSON state."""
    names = {f.name for f in fields(cls)} - {"evaluations"}
    return cls(
        **{k: v for k, v in state.items() if k in names},
        evaluations={int(k): v for k, v in state["evaluations"].items()},
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rng_state() -> dict[str, Any]:
    """torch's RNG state, and every CUDA device's where there is one."""
    state: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def verify_manifest(path: Path) -> dict[str, Any]:
    """The manifest of checkpoint ``path``, after checking every file it lists is there with its sha256."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ResumeError(f"{path} is not a training checkpoint ({MANIFEST_FILE} missing)")
    manifest = json.loads(manifest_path.read_text())
    for name, entry in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise ResumeError(f"checkpoint {path} is incomplete: {name} is missing")
        if sha256_of(file) != entry["sha256"]:
            raise ResumeError(f"checkpoint {path}: {name} differs from its manifest's sha256 (altered or truncated)")
    return manifest


class CheckpointStore:
    """The folder of training checkpoints of one run (one stage).

    ``provenance``: what the run was trained under (``stage``, ``prompts``, ``data_hash``, ``backbone``,
    ``git_commit``, ``machine``, ``parameters``), written into every manifest; a resume refuses a
    checkpoint whose ``MUST_MATCH`` entries differ.
    """

    def __init__(self, root: str | os.PathLike[str], keep: int = 2, provenance: dict[str, Any] | None = None) -> None:
        self.root, self.keep, self.provenance = Path(root), keep, dict(provenance or {})

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _NAME.match(p.name))]
        return [path for _, path in sorted(found) if (path / MANIFEST_FILE).is_file()]

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save(
        self,
        state: dict[str, Any],
        weights: dict[str, torch.Tensor],
        resume: dict[str, Any],
        best: dict[str, torch.Tensor] | None = None,
    ) -> Path:
        """Write ``checkpoint-<state['step']>`` through a staging folder, then drop all but the newest ``keep``.

        ``resume``: optimizer state and whatever else the trainer needs (RNG states are added here);
        ``best``: the selected weights so far, if any (an item table in it is not stored).
        """
        target = self.root / f"checkpoint-{state['step']}"
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            save_file({k: v.contiguous() for k, v in weights.items()}, staging / WEIGHTS_FILE)
            if best is not None:
                save_file({k: v.contiguous() for k, v in best.items() if k != ITEM_TABLE_KEY}, staging / BEST_FILE)
            torch.save({**resume, **rng_state()}, staging / RESUME_FILE)
            (staging / STATE_FILE).write_text(json.dumps(state, indent=1))
            files = {p.name: {"sha256": sha256_of(p), "bytes": p.stat().st_size} for p in sorted(staging.iterdir())}
            manifest = {**self.provenance, "step": state["step"], "files": files}
            (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.chmod(staging, 0o755)  # mkdtemp's 0700 would make a copied checkpoint unreadable to others
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
        """``True``: the latest checkpoint here (None if there is none); a path (anywhere): that one; falsy: None."""
        if not resume:
            return None
        if resume is True:
            return self.latest()
        path = Path(resume)
        if not (path / MANIFEST_FILE).is_file():
            raise ResumeError(
                f"resume_from_checkpoint {str(path)!r} is not a training checkpoint ({MANIFEST_FILE} missing)"
            )
        return path

    def read(self, path: Path) -> Checkpoint:
        """Verify and read checkpoint ``path``; refuse one trained under other ``MUST_MATCH`` settings."""
        manifest = verify_manifest(path)
        changed = {
            key: (manifest.get(key), self.provenance[key])
            for key in MUST_MATCH
            if key in self.provenance and manifest.get(key) != self.provenance[key]
        }
        if changed:
            raise ResumeError(
                f"cannot resume from {path}: it was trained under other settings (checkpoint, now): {changed}"
            )
        return Checkpoint(
            path=path,
            state=json.loads((path / STATE_FILE).read_text()),
            weights=load_file(path / WEIGHTS_FILE),
            resume=torch.load(path / RESUME_FILE, weights_only=True),
            best=load_file(path / BEST_FILE) if (path / BEST_FILE).is_file() else None,
            manifest=manifest,
        )
