"""The GPU tools on the CPU: the memory estimate by hand, and matching a GPU run's ranks with `make run`'s
baselines (the GPU run itself, `device_run` of `conf/gpu`, is tested in tests/test_kedro_session.py)."""

import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import gpu_memory  # noqa: E402
import gpu_vs_baselines  # noqa: E402

TOY = gpu_memory.Shape(
    "toy", parameters=1000, layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1, head_dim=4, vocab=100
)


def test_lora_parameter_count_by_hand():
    # q: r·(8+8), k: r·(8+4), v: r·(8+4), o: r·(8+8), gate/up/down: r·(8+16) each → r·128 per layer
    assert gpu_memory.lora_parameters(TOY, rank=4) == 4 * 128 * 2


def test_memory_parts_by_hand():
    step = gpu_memory.Step(users=2, paths=3, prompt=10, completion=5, lora_rank=4, chunk_tokens=1000)
    parts = gpu_memory.estimate(TOY, step)
    layer = 2 * (4 * 8 + (2 * 2 + 2 * 1) * 4 + 3 * 16)  # bf16: 4h + (2·heads + 2·kv)·hd + 3I = 104 values
    lora = 4 * (5 * 8 + 2 * 4 + 16 + 7 * 4)  # fp32: five casts of h, o's input (heads·hd), down's (I), 7 A outputs
    assert gpu_memory.lora_input_bytes_per_token_layer(TOY, rank=4) == lora == 368
    per_token = layer + lora
    assert parts["weights"] == 1000 * 2
    assert parts["adapters"] == 1024 * 16
    assert parts["activations"] == 2 * (2 * 10 + 2 * 3 * 5) * per_token  # layers × (prompt once + completions)
    assert parts["logits"] == 30 * 100 * 10  # 30 completion tokens fit one chunk: bf16 head + fp32 copy + log-softmax
    assert parts["kv_cache"] == 2 * 3 * 15 * 2 * 2 * 1 * 4 * 2
    chunked = gpu_memory.estimate(TOY, gpu_memory.Step(**{**step.__dict__, "chunk_tokens": 6}))
    assert chunked["logits"] == 6 * 100 * 10
    checkpointed = gpu_memory.estimate(
        TOY, gpu_memory.Step(**{**step.__dict__, "checkpointing": True, "micro_users": 1})
    )
    tokens = 1 * 3 * 15  # one user's paths, full sequences
    assert checkpointed["activations"] == 2 * tokens * 2 * 8 + tokens * per_token


def test_sft_memory_parts_by_hand():
    step = gpu_memory.SFTStep(users=3, user_tokens=5, items=10, item_tokens=2, lora_rank=4)
    parts = gpu_memory.sft_estimate(TOY, step)
    per_token = 2 * (4 * 8 + (2 * 2 + 2 * 1) * 4 + 3 * 16) + 2 * 7 * 4  # bf16 layer tensors + 7 A outputs
    assert parts["weights"] == 1000 * 2 and parts["adapters"] == 1024 * (2 + 16)  # bf16 copy + fp32 master, AdamW
    assert parts["users"] == 2 * 3 * 5 * per_token  # layers × users × tokens
    assert parts["items"] == 2 * 10 * 2 * per_token
    chunked = gpu_memory.sft_estimate(TOY, gpu_memory.SFTStep(**{**step.__dict__, "chunk_items": 4}))
    assert chunked["items"] == 2 * 4 * 2 * per_token + 2 * 10 * 8 * 4  # one chunk's graph + fp32 states and grads


def test_gpu_rankings_line_up_every_model_on_the_first_models_users():
    rows = [
        ("zero_shot", "direct", "test", 5, 50, 3),
        ("zero_shot", "direct", "test", 7, 70, 9),
        ("zero_shot", "direct", "valid", 9, 90, 4),  # another split: left out
        ("sft", "direct", "test", 7, 70, 1),
        ("sft", "direct", "test", 5, 50, 2),
    ]
    frame = pd.DataFrame(rows, columns=["model", "mode", "split", "user_id", "target_item_id", "rank"])
    users, targets, ranks = gpu_vs_baselines.gpu_ranks(frame)
    assert users.tolist() == [5, 7] and targets.tolist() == [50, 70]
    assert ranks == {"zero_shot.direct": ranks["zero_shot.direct"], "sft.direct": ranks["sft.direct"]}
    assert ranks["zero_shot.direct"].tolist() == [3, 9] and ranks["sft.direct"].tolist() == [2, 1]


def test_gpu_ranks_meet_the_baselines_by_user_id_and_refuse_another_split():
    rows = [
        (model, user, target, rank)
        for model, offset in (("popularity", 0), ("sasrec", 10))
        for user, target, rank in ((1, 11, 1 + offset), (2, 22, 2 + offset), (3, 33, 3 + offset))
    ]
    rankings = pd.DataFrame(rows, columns=["model", "user_id", "target_item_id", "rank"]).assign(
        split="test", mode="direct"
    )
    ranks = gpu_vs_baselines.baseline_ranks(rankings, np.array([3, 1]), np.array([33, 11]))
    assert ranks["popularity"].tolist() == [3, 1] and ranks["sasrec"].tolist() == [13, 11]
    with pytest.raises(ValueError, match="targets differ"):
        gpu_vs_baselines.baseline_ranks(rankings, np.array([3, 1]), np.array([33, 12]))
    with pytest.raises(ValueError, match="1 of the GPU run's users have no test ranking"):
        gpu_vs_baselines.baseline_ranks(rankings, np.array([3, 4]), np.array([33, 44]))
    # the model ranks 1 and 11 against popularity's 3 and 1: N@10 1.0 and 0.0 against 0.5 and 1.0
    table = gpu_vs_baselines.comparison_rows({"sft.direct": np.array([1, 11])}, {"popularity": ranks["popularity"]})
    cells = table[0].strip("| ").split(" | ")
    assert cells[:5] == ["sft.direct − popularity", "ndcg_at_10", "0.5000", "0.7500", "-0.2500"] and cells[6] == "2"
    assert len(table) == 3  # one row per metric
