"""`dvc repro` on the tiny model: a changed RecPO parameter invalidates exactly RecPO and what follows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from r2ec_pipeline.config.profile import nested_keys
from tests.conftest import FIXTURES
from tests.kedro_project import TINY_TRAINING
from tests.test_end_to_end import WHEEL, _env, _project_copy

pytestmark = pytest.mark.slow


def _tiny_conf(project: Path, backbone: Path) -> None:
    """The copy's conf/base parameter files rewritten with the tiny overrides (so `dvc exp run -S` edits
    what Kedro reads), conf/local/globals.yml pointing at the tiny backbone and the Amazon fixture."""
    (project / "conf/local").mkdir(exist_ok=True)
    globals_ = {
        "backbone": str(backbone),
        "amazon_dir": str(FIXTURES / "amazon"),
        "amazon_category": "Tiny_Instruments",
    }
    (project / "conf/local/globals.yml").write_text(yaml.safe_dump(globals_))
    params = dict(OmegaConfigLoader(str(project / "conf"), base_env="base", default_run_env="local")["parameters"])
    overrides = nested_keys(
        {"data_ingestion.source": "amazon_2023", "data_ingestion.amazon.min_items": 3, **TINY_TRAINING}
    )

    def merge(base: dict, extra: dict) -> dict:
        return {**base, **{k: merge(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in extra.items()}}

    for block, values in merge(params, overrides).items():
        (project / f"conf/base/parameters_{block}.yml").write_text(yaml.safe_dump({block: values}))
    for command in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"],
    ):
        subprocess.run(command, cwd=project, check=True)


def _dvc(project: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_a_changed_recpo_parameter_reruns_only_recpo_and_evaluation(tmp_path: Path, tiny_backbone_dir: Path):
    project = _project_copy(tmp_path / "r2ec")
    _tiny_conf(project, tiny_backbone_dir)
    (project / WHEEL).parent.mkdir(parents=True, exist_ok=True)
    (project / WHEEL).touch(exist_ok=True)  # a declared out of data_ingestion; never read with source amazon_2023
    (project / "dvc.lock").unlink()
    _dvc(project, "repro")
    assert "Data and pipelines are up to date" in _dvc(project, "status")

    recpo_params = project / "conf/base/parameters_recpo.yml"
    assert "reward_beta: 0.05" in recpo_params.read_text()
    recpo_params.write_text(recpo_params.read_text().replace("reward_beta: 0.05", "reward_beta: 0.2"))
    status = _dvc(project, "status")
    changed = {
        line.rstrip(":").strip()
        for line in status.splitlines()
        if line and not line.startswith("\t") and line.rstrip().endswith(":")
    }
    assert changed == {"recpo"}, status  # only RecPO reads recpo.reward_beta
    rerun = _dvc(project, "repro")
    ran = {line.split("'")[1] for line in rerun.splitlines() if line.startswith("Running stage")}
    assert ran == {"recpo", "evaluation"}, rerun
    assert "Data and pipelines are up to date" in _dvc(project, "status")


def test_dvc_push_pull_restores_a_clean_clone_and_an_ablation_is_one_experiment(
    tmp_path: Path, tiny_backbone_dir: Path
):
    """After `dvc repro`: `dvc push` + a clean clone's `dvc pull` restore data and models byte for byte;
    `dvc exp run -S …recpo.reward_type=rank_only` reruns RecPO + evaluation and records metrics.json."""
    import json

    project = _project_copy(tmp_path / "r2ec")
    _tiny_conf(project, tiny_backbone_dir)
    (project / WHEEL).parent.mkdir(parents=True, exist_ok=True)
    (project / WHEEL).touch(exist_ok=True)
    (project / "dvc.lock").unlink()
    _dvc(project, "repro")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], cwd=project, check=True
    )
    # dvc push to the (here temporary) local remote, then a clean clone restores data and models with dvc pull
    remote = tmp_path / "remote"
    _dvc(project, "remote", "modify", "--local", "local", "url", str(remote))
    _dvc(project, "push")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    _dvc(clone, "remote", "modify", "--local", "local", "url", str(remote))
    _dvc(clone, "pull")
    for path in (
        "data/08_reporting/metrics.json",
        "data/06_models/recpo/item_table.safetensors",
        "data/06_models/sft/adapter/adapter_model.safetensors",
        "data/05_model_input/test_samples.parquet",
    ):
        assert (clone / path).read_bytes() == (project / path).read_bytes(), path
    assert "Data and pipelines are up to date" in _dvc(clone, "status")

    out = _dvc(
        project, "exp", "run", "-n", "rank-only", "-S", "conf/base/parameters_recpo.yml:recpo.reward_type=rank_only"
    )
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"recpo", "evaluation"}, out
    shown = json.loads(_dvc(project, "exp", "show", "--json"))
    found = json.dumps(shown)
    assert "rank-only" in found and "rank_only" in found and "ndcg_at_10" in found
