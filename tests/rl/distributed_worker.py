"""Run two RecPO steps on the toy task under 1 or N processes and write rank 0's history as JSON.

Usage: ``python -m tests.rl.distributed_worker BACKBONE OUT`` or
``torchrun --nproc_per_node 2 -m tests.rl.distributed_worker BACKBONE OUT``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from accelerate import PartialState

from r2ec_pipeline.rl.distributed import Collective
from r2ec_pipeline.rl.trainer import train_recpo
from tests.rl.toy_task import SETTINGS, toy_data, toy_model

GLOBAL_BATCH = 4


def main(backbone: str, out: str) -> None:
    PartialState(cpu=True)  # joins the gloo process group when launched by torchrun
    torch.set_num_threads(1)
    collective = Collective()
    with tempfile.TemporaryDirectory() as cache:
        model = toy_model(Path(backbone), Path(cache))
        settings = SETTINGS.model_copy(
            update={
                "per_device_train_batch_size": GLOBAL_BATCH // collective.world_size,
                "max_steps": 2,
                "learning_rate": 1e-2,
            }
        )
        result = train_recpo(model, toy_data(), settings, collective=collective)
    if collective.is_main:
        Path(out).write_text(json.dumps({"world_size": collective.world_size, "history": result.history}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
