"""`python -m r2ec_pipeline.checkpoints`: keep a training checkpoint in the repository, or list the kept ones.

  ship <checkpoint folder> <name>   verify it (every file's sha256), copy it to checkpoints/<name>
  list                              what checkpoints/ holds: stage, step, commit, machine, size

A shipped checkpoint is the training checkpoint as written (``model/training_state.py``): it resumes
by ``sft.resume_from_checkpoint`` / ``recpo.resume_from_checkpoint`` and is evaluated and registered by
``evaluation.shipped_checkpoint``. Plain files, no Kedro or MLflow: it runs where a GPU run ended.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from r2ec_pipeline.model.training_state import ResumeError, verify_manifest

SHIPPED = Path("checkpoints")


def ship(source: Path, name: str, root: Path = SHIPPED) -> Path:
    """Copy a verified checkpoint folder to ``root/name`` through a staging folder; refuse to overwrite."""
    verify_manifest(source)
    target = root / name
    if target.exists():
        raise FileExistsError(f"{target} exists: a shipped checkpoint is never overwritten (choose another name)")
    staging = root / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    verify_manifest(staging)
    staging.rename(target)
    return target


def describe(folder: Path) -> str:
    """One line: name, stage and step, commit, machine, megabytes."""
    manifest = verify_manifest(folder)
    megabytes = sum(entry["bytes"] for entry in manifest["files"].values()) / 1e6
    commit = str(manifest.get("git_commit", "?"))[:12]
    return (
        f"{folder.name}: {manifest.get('stage')} step {manifest.get('step')}, commit {commit}, "
        f"{manifest.get('machine')}, {megabytes:.1f} MB"
    )


def main(argv: list[str]) -> int:
    if argv[:1] == ["ship"] and len(argv) == 3:
        target = ship(Path(argv[1]), argv[2])
        print(f"shipped {describe(target)}\nadd it to {SHIPPED / 'README.md'} with the command that made it")
        return 0
    if argv == ["list"]:
        for folder in sorted(p for p in SHIPPED.iterdir() if p.is_dir() and not p.name.startswith(".")):
            print(describe(folder))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (ResumeError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
