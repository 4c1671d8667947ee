"""Slow end-to-end checks on the embedded defaults (ML-100k + SmolLM2 tokenizer): `make test-slow`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow
WHEEL = "data/01_raw/recbole-1.2.1-py3-none-any.whl"


def _project_copy(target: Path) -> Path:
    """The committed project (git archive of HEAD) in ``target``, as a fresh git repo, wheel reused."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    if (PROJECT_ROOT / WHEEL).is_file():
        shutil.copy(PROJECT_ROOT / WHEEL, target / WHEEL)
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
    ):
        subprocess.run(command, cwd=target, check=True)
    return target


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _kedro(project: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "kedro", "run", *args], cwd=project, env=_env(), check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _project_copy(tmp_path_factory.mktemp("e2e") / "r2ec")


def test_movielens_leave_one_out_has_one_test_sample_per_user(project: Path):
    _kedro(project, "--pipelines", "data")
    interactions = pd.read_parquet(project / "data/03_primary/interactions.parquet")
    items = pd.read_parquet(project / "data/03_primary/items.parquet")
    test = pd.read_parquet(project / "data/05_model_input/test_samples.parquet")
    valid = pd.read_parquet(project / "data/05_model_input/valid_samples.parquet")
    assert (len(interactions), interactions["user_id"].nunique(), len(items)) == (100_000, 943, 1682)
    assert len(test) == 943 and test["user_id"].is_unique
    assert len(valid) == 943
    assert test["prompt"].str.startswith("<|im_start|>system").all()


def test_movielens_temporal_split_is_80_10_10(project: Path):
    _kedro(project, "--pipelines", "prompts", "--params", "prompts.split=temporal")
    sizes = [
        len(pd.read_parquet(project / f"data/05_model_input/{s}_samples.parquet")) for s in ("train", "valid", "test")
    ]
    total = sum(sizes)
    assert total == 100_000 - 943
    assert sizes == [round(total * 0.8), round(total * 0.9) - round(total * 0.8), total - round(total * 0.9)]


def test_dvc_repro_twice_reproduces_nothing_the_second_time(tmp_path: Path):
    """The data stages (`dvc repro prompts` = ingestion → validation → prompts): a second run is a no-op."""
    project = _project_copy(tmp_path / "r2ec")
    (project / "dvc.lock").unlink(missing_ok=True)  # rebuild from scratch, not from the committed lock
    repro = [sys.executable, "-m", "dvc", "repro", "prompts"]
    first = subprocess.run(repro, cwd=project, env=_env(), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(repro, cwd=project, env=_env(), capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Data and pipelines are up to date" in second.stdout
    assert "Running stage" not in second.stdout


def test_recpo_from_zero_shot_then_resumed_on_movielens(project: Path):
    """`kedro run --pipelines recpo` on SmolLM2 with no SFT checkpoint (zero-shot start), then resumed."""
    import json

    short = "recpo.max_steps=2,recpo.save_steps=1,recpo.eval_users=4,recpo.per_device_train_batch_size=2"
    _kedro(project, "--pipelines", "data")
    _kedro(project, "--pipelines", "recpo", "--params", short)
    report = json.loads((project / "data/08_reporting/recpo_report.json").read_text())
    assert report["steps"] == 2 and report["resumed_from_step"] == 0 and len(report["reward_mean_by_step"]) == 2
    assert {"reasoning.ndcg_at_10", "direct.ndcg_at_10"} <= set(report["before"]) & set(report["after"])
    checkpoints = project / "data/06_models/recpo_checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-1", "checkpoint-2"]

    _kedro(
        project,
        "--pipelines",
        "recpo",
        "--params",
        short.replace("max_steps=2", "max_steps=3") + ",recpo.resume_from_checkpoint=true",
    )
    resumed = json.loads((project / "data/08_reporting/recpo_report.json").read_text())
    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == 3
    assert resumed["reward_mean_by_step"][:2] == report["reward_mean_by_step"]
    assert resumed["before"] == report["before"]  # carried over from the checkpoint, not re-measured
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    samples = pd.read_csv(project / "data/08_reporting/recpo_samples.csv")
    assert sorted(samples["step"].unique()) == [1, 2, 3]
    assert samples["text"].str.contains("<answer>", regex=False).all()


def test_evaluation_registration_and_the_notebook_on_movielens(project: Path):
    """Short SFT and baselines, then `evaluation` + `registration` on SmolLM2, then the notebook's cells
    against `models:/r2ec@champion` (uses the RecPO model of the test above)."""
    import json

    _kedro(project, "--pipelines", "data")
    _kedro(project, "--pipelines", "sft", "--params", "sft.steps=1,sft.batch_size=2,sft.negatives=2")
    _kedro(project, "--pipelines", "baselines", "--params", "baselines.sasrec.max_epochs=1")
    _kedro(
        project,
        "--pipelines",
        "evaluation,registration",
        "--params",
        "evaluation.users=4,evaluation.valid_users=4,evaluation.reasoning_tokens=4,registration.reasoning_tokens=4,"
        "evaluation.shipped_checkpoint=null",
    )
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    assert metrics["users"] == {"valid": 4, "test": 4}
    assert set(metrics["test"]) == {"popularity", "sasrec", "zero_shot", "sft", "recpo"}
    exported = pd.read_parquet(project / "data/08_reporting/rankings_export.parquet")
    assert len(exported) == 4 * 8 and exported["topk_item_ids"].map(len).eq(50).all()
    registration = json.loads((project / "data/08_reporting/registration.json").read_text())
    assert registration["version"] == 1 and "champion" in registration["aliases"]

    notebook = json.loads((project / "notebooks/r2ec_champion.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    script = project / "notebooks/_notebook.py"
    script.write_text(code.replace("\nhistory.tail(10)\n", "\nprint(history.tail(10))\n"))
    env = {**_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=project / "notebooks", env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Reasoning:" in done.stdout and "r2ec version 1" in done.stdout
