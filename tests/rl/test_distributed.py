"""Two gloo processes on halves of a global batch give the loss and update of one process on all of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.helpers import free_port

COMPARED = [
    "train.loss",
    "train.token_loss",
    "train.item_loss",
    "train.reward_mean",
    "train.reward_std",
    "train.clip_fraction",
    "train.completion_length",
    "train.grad_norm",
]


def _run(command: list[str], out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_processes_match_one_process_on_the_same_global_batch(tiny_backbone_dir, tmp_path):
    worker = ["-m", "tests.rl.distributed_worker", str(tiny_backbone_dir)]
    single = _run([sys.executable, *worker, str(tmp_path / "one.json")], tmp_path / "one.json")
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    double = _run(
        [torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), *worker, str(tmp_path / "two.json")],
        tmp_path / "two.json",
    )
    assert (single["world_size"], double["world_size"]) == (1, 2)
    for name in COMPARED:
        one = [point["value"] for point in single["history"][name]]
        two = [point["value"] for point in double["history"][name]]
        assert len(one) == 2 and two == pytest.approx(one, rel=1e-4, abs=5e-5), name
