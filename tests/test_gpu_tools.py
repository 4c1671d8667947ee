"""The GPU tools on the CPU: the memory estimate by hand, gpu_run.py end to end on a tiny budget, and
matching its ranks with `make run`'s baselines."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import gpu_memory  # noqa: E402
import gpu_run  # noqa: E402
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


@pytest.mark.slow
def test_gpu_run_goes_end_to_end_on_the_cpu_with_a_tiny_budget(tiny_backbone_dir, tmp_path):
    wheel = PROJECT_ROOT / "data/01_raw/recbole-1.2.1-py3-none-any.whl"
    if not wheel.is_file():
        pytest.skip("needs the recbole wheel that `make run` fetches")
    env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT / 'src'}:{PROJECT_ROOT}", "TQDM_DISABLE": "1"}
    command = [
        sys.executable,
        str(PROJECT_ROOT / "benchmarks/gpu_run.py"),
        "--wheel",
        str(wheel),
        "--backbone",
        str(tiny_backbone_dir),
        "--cache",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path),
        "--users",
        "8",
        "--train-samples",
        "40",
        "--sft-batch",
        "16",
        "--sft-epochs",
        "0.5",
        "--validations",
        "1",
        "--batch",
        "8",
        "--recpo-users",
        "2",
        "--recpo-tokens",
        "4",
        "--reasoning-tokens",
        "4",
        "--recpo-eval-every",
        "1",
        "--recpo-max-steps",
        "1",
        "--wall-budget",
        "100000",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["stages"]) == ["data", "zero_shot_test", "sft", "sft_test", "recpo", "recpo_test"]
    assert results["stages"]["sft"]["steps"] == 2 and results["stages"]["sft"]["epochs"] == 0.8  # 2 of 3 batches
    assert results["stages"]["recpo"]["steps"] == 1
    assert set(results["comparisons"]) == {
        "sft.direct - zero_shot.direct",
        "recpo.direct - sft.direct",
        "recpo.reasoning - sft.reasoning",
        "recpo.reasoning - recpo.direct",
        "sft.reasoning - sft.direct",
    }
    assert "| N@10 difference" in done.stdout
    rankings = pd.read_parquet(tmp_path / "rankings.parquet")
    assert len(rankings) == 3 * 2 * 8 and rankings["topk_item_ids"].map(len).eq(50).all()
    assert {"sft.tar", "recpo.tar"} <= {path.name for path in tmp_path.iterdir()}
    # and into MLflow: a run of r2ec-gpu with the test metrics, and a registered version of r2ec
    import mlflow

    from r2ec_pipeline.gpu_import import import_run

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    report = import_run(tmp_path, wheel, str(tiny_backbone_dir), tmp_path / "cache")
    run = mlflow.search_runs(experiment_names=["r2ec-gpu"]).iloc[0]
    assert run["metrics.eval.test.recpo.reasoning.users"] == 8 and run["tags.gpu"] == "cpu"
    assert report["version"] == 1 and "champion" in report["aliases"]  # no champion yet in a fresh store


def test_a_failing_stage_stops_gpu_run_with_status_1_and_keeps_its_error(tiny_backbone_dir, tmp_path):
    status = gpu_run.main(
        [
            "--wheel",
            str(tmp_path / "missing.whl"),
            "--backbone",
            str(tiny_backbone_dir),
            "--cache",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert status == 1 and "missing.whl" in results["stages"]["data"]["error"]


def test_gpu_rankings_line_up_every_model_on_the_first_models_users():
    rows = [
        ("zero_shot", "direct", 5, 50, 3),
        ("zero_shot", "direct", 7, 70, 9),
        ("sft", "direct", 7, 70, 1),
        ("sft", "direct", 5, 50, 2),
    ]
    frame = pd.DataFrame(rows, columns=["model", "mode", "internal_user_id", "internal_target_id", "rank"])
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
