"""The GPU tools on the CPU: the memory estimate's arithmetic by hand, and gpu_run.py end to end on a tiny budget."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import gpu_memory  # noqa: E402

TOY = gpu_memory.Shape("toy", parameters=1000, layers=2, hidden=8, intermediate=16, heads=2, kv_heads=1,
                       head_dim=4, vocab=100)


def test_lora_parameter_count_by_hand():
    # q: r·(8+8), k: r·(8+4), v: r·(8+4), o: r·(8+8), gate/up/down: r·(8+16) each → r·128 per layer
    assert gpu_memory.lora_parameters(TOY, rank=4) == 4 * 128 * 2


def test_memory_parts_by_hand():
    step = gpu_memory.Step(users=2, paths=3, prompt=10, completion=5, lora_rank=4, chunk_tokens=1000)
    parts = gpu_memory.estimate(TOY, step)
    per_token = 2 * (4 * 8 + (2 * 2 + 2 * 1) * 4 + 3 * 16)  # bf16: 4h + (2·heads + 2·kv)·hd + 3I = 104 values
    assert parts["weights"] == 1000 * 2
    assert parts["adapters"] == 1024 * 16
    assert parts["activations"] == 2 * (2 * 10 + 2 * 3 * 5) * per_token  # layers × (prompt once + completions)
    assert parts["logits"] == 30 * 100 * 10  # 30 completion tokens fit one chunk: bf16 head + fp32 copy + log-softmax
    assert parts["kv_cache"] == 2 * 3 * 15 * 2 * 2 * 1 * 4 * 2
    chunked = gpu_memory.estimate(TOY, gpu_memory.Step(**{**step.__dict__, "chunk_tokens": 6}))
    assert chunked["logits"] == 6 * 100 * 10
    checkpointed = gpu_memory.estimate(TOY, gpu_memory.Step(**{**step.__dict__, "checkpointing": True,
                                                               "micro_users": 1}))
    tokens = 1 * 3 * 15  # one user's paths, full sequences
    assert checkpointed["activations"] == 2 * tokens * 2 * 8 + tokens * per_token


@pytest.mark.slow
def test_gpu_run_goes_end_to_end_on_the_cpu_with_a_tiny_budget(tiny_backbone_dir, tmp_path):
    wheel = PROJECT_ROOT / "data/01_raw/recbole-1.2.1-py3-none-any.whl"
    if not wheel.is_file():
        pytest.skip("needs the recbole wheel that `make run` fetches")
    env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT / 'src'}:{PROJECT_ROOT}", "TQDM_DISABLE": "1"}
    command = [sys.executable, str(PROJECT_ROOT / "benchmarks/gpu_run.py"), "--wheel", str(wheel),
               "--backbone", str(tiny_backbone_dir), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path),
               "--sft-seconds", "2", "--recpo-seconds", "2", "--reasoning-tokens", "4", "--users", "8",
               "--batch", "8", "--latency-users", "1", "--memory-tokens", "4"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    failed = {name: stage["error"] for name, stage in results["stages"].items() if "error" in stage}
    assert not failed and set(results["stages"]) == {"data", "zero_shot_eval", "sft", "generation_vs_hf", "latency",
                                                     "sft_eval", "recpo", "recpo_eval", "memory_paper_step"}
    assert results["stages"]["recpo_eval"]["reasoning"]["users"] == 8
    assert set(results["comparisons"]) == {"sft.direct - zero_shot.direct", "recpo.direct - sft.direct",
                                           "recpo.reasoning - sft.reasoning", "recpo.reasoning - recpo.direct"}
    assert "| N@10 difference" in done.stdout and (tmp_path / "ranks.npz").is_file()
