"""Does RecPO fit a fixed set of training users? The fit check's run and its paired tables.

Runs the product's own profile, ``kedro run --env fit --pipeline recpo`` (``conf/fit``: RecPO from the
SFT checkpoint on the last training sample of 16 seeded users, visited again and again; MLflow-tracked
like every run), with ``--params`` for a variant, then measures:

- the mean training reward per step with the signal diagnostics (method §5.9);
- per user, the mean reward of its paths over its visits in the first quarter of the steps against the
  last quarter (paired bootstrap 95% CI over the users): does the reward leave its noise?
- the same users ranked before (the SFT checkpoint) and after (the last RecPO weights, whole item table
  re-encoded) in both modes: R_rank = NDCG@1000 of the target (the reward's rank part) and MRR, paired CIs.

Each variant's figures go to ``docs/results/fit/<name>.json``; ``--table`` prints every recorded variant
side by side. Needs ``make run``'s outputs (the SFT checkpoint and the prompts stage's tables).

Usage: .venv/bin/python benchmarks/recpo_fit.py --name paper [--params "recpo.item_softmax=catalog,..."]
       .venv/bin/python benchmarks/recpo_fit.py --table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import ROOT, print_measures  # benchmarks/_common.py (the script's folder is on sys.path)
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from sft_fit import with_overrides  # Kedro's --params syntax applied to loaded parameters

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import fixed_users_last_samples, mask_lists
from r2ec_pipeline.metrics import paired_bootstrap, per_sample
from r2ec_pipeline.model.evaluation import rank_both_modes
from r2ec_pipeline.pipelines.shared.recpo import CURVES
from r2ec_pipeline.run_tags import git_commit

RESULTS = ROOT / "docs/results/fit"
REPORT = ROOT / "data/08_reporting/fit"


def run_profile(params: str) -> float:
    """``kedro run --env fit --pipeline recpo [--params ...]`` as a user types it; its wall seconds."""
    command = [str(ROOT / ".venv/bin/kedro"), "run", "--env", "fit", "--pipeline", "recpo"]
    command += ["--params", params] if params else []
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True)
    return time.perf_counter() - started


def user_rewards(samples: pd.DataFrame, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user, the mean reward of its paths over its visits in the first and in the last quarter of the steps."""
    quarter = max(steps // 4, 1)
    early = samples[samples["step"] <= quarter].groupby("user_id")["reward"].mean()
    late = samples[samples["step"] > steps - quarter].groupby("user_id")["reward"].mean()
    both = pd.concat([early, late], axis=1, join="inner", keys=["early", "late"])
    return both["early"].to_numpy(), both["late"].to_numpy()


def fixed_user_ranks(params_text: str) -> dict[str, dict[str, np.ndarray]]:
    """The fixed users' target ranks, ``{model: {mode: ranks}}``, before (SFT) and
    after (the fit run's RecPO): parameters and data from one Kedro session of the fit environment."""
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT, env="fit") as session:
        context = session.load_context()
        params = with_overrides(context.params, params_text)
        catalog = context.catalog
        train = catalog.load("train_samples")
        interactions = catalog.load("validated_interactions")
        models = {"sft": catalog.load("sft_model"), "recpo": catalog.load("recpo_model@model")}
    model_config = parse_block("model", params["model"])
    recpo = parse_block("recpo", params["recpo"])
    fixed = fixed_users_last_samples(train, recpo.train_users, recpo.seed)
    prompts, targets = fixed["prompt"].tolist(), fixed["target_item_id"].astype(int).tolist()
    masks = mask_lists(fixed, interactions, model_config.history_mask)
    ranks = {}
    for name, model in models.items():
        rankings, _ = rank_both_modes(
            model, prompts, targets, masks, recpo.max_completion_length, model_config.encode_batch_size
        )
        ranks[name] = {mode: ranking.ranks.astype(int) for mode, ranking in rankings.items()}
    return ranks


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return paired_bootstrap(a, b, resamples=2000, seed=0)


def measure(name: str, params_text: str, run: bool = True) -> dict[str, Any]:
    seconds = run_profile(params_text) if run else float("nan")
    report = json.loads((REPORT / "recpo_report.json").read_text())
    samples = pd.read_csv(REPORT / "recpo_samples.csv", lineterminator="\n")  # texts may hold a bare \r
    early, late = user_rewards(samples, report["steps"])
    ranks = fixed_user_ranks(params_text)
    result = {
        "name": name,
        "params": params_text,
        "steps": report["steps"],
        "users": len(early),
        "wall_seconds": round(seconds, 1),
        # wall seconds of the run per step (start-up and table refreshes included); timings live in MLflow
        "seconds_per_step": round(seconds / report["steps"], 1) if run else None,
        "curves": {curve: report["curves"].get(curve, []) for curve in CURVES},
        "reward_first_vs_last_quarter": {
            "first": float(early.mean()),
            "last": float(late.mean()),
            **paired(late, early),
        },
        "ranks": {model: {mode: values.tolist() for mode, values in modes.items()} for model, modes in ranks.items()},
        "rank_reward_after_minus_before": {
            mode: paired(_ndcg1000(ranks["recpo"][mode]), _ndcg1000(ranks["sft"][mode])) for mode in ranks["sft"]
        },
        "mrr_after_minus_before": {
            mode: paired(per_sample(ranks["recpo"][mode], "mrr"), per_sample(ranks["sft"][mode], "mrr"))
            for mode in ranks["sft"]
        },
        "commit": git_commit(ROOT),
        "threads": torch.get_num_threads(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def _ndcg1000(ranks: np.ndarray) -> np.ndarray:
    return per_sample(ranks, "ndcg_at_1000")


def _ci(value: dict[str, float], digits: int = 4) -> str:
    return f"{value['difference']:+.{digits}f} [{value['low']:+.{digits}f}, {value['high']:+.{digits}f}]"


def print_run(result: dict[str, Any]) -> None:
    curves = result["curves"]
    print(f"\n## {result['name']} ({result['params'] or 'conf/fit as it is'})\n")
    header = ["step", *CURVES]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for index in range(len(curves["reward_mean"])):
        cells = [str(index + 1)] + [f"{curves[c][index]:.4f}" if index < len(curves[c]) else "" for c in CURVES]
        print("| " + " | ".join(cells) + " |")
    reward = result["reward_first_vs_last_quarter"]
    rows = [
        (
            "users × steps",
            f"{result['users']} × {result['steps']} ({result['seconds_per_step'] or float('nan'):.1f} s a step)",
        ),
        ("reward, first → last quarter", f"{reward['first']:.4f} → {reward['last']:.4f}"),
        ("reward last − first quarter (paired 95% CI)", _ci(reward)),
    ]
    for mode, value in result["rank_reward_after_minus_before"].items():
        before = np.median(result["ranks"]["sft"][mode])
        after = np.median(result["ranks"]["recpo"][mode])
        rows.append((f"{mode}: median rank SFT → RecPO", f"{before:.0f} → {after:.0f}"))
        rows.append((f"{mode}: R_rank after − before", _ci(value)))
        rows.append((f"{mode}: MRR after − before", _ci(result["mrr_after_minus_before"][mode])))
    print()
    print_measures(rows)


def print_table() -> None:
    """Every recorded variant on one line: the reward's rise and the ranks' change, with their CIs."""
    print(
        "| variant | params | reward first → last quarter | last − first (95% CI) | "
        "R_rank after − before, direct | reasoning | s/step |"
    )
    print("|---|---|---|---|---|---|---|")
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        reward, ranks = r["reward_first_vs_last_quarter"], r["rank_reward_after_minus_before"]
        print(
            f"| {r['name']} | `{r['params'] or '-'}` | {reward['first']:.4f} → {reward['last']:.4f} | {_ci(reward)} | "
            f"{_ci(ranks['direct'])} | {_ci(ranks['reasoning'])} | {r['seconds_per_step'] or float('nan'):.1f} |"
        )


def plot_curves(target: Path) -> None:
    """Every recorded variant's reward (mean of each pass over the users), item log p(v⁺) and KL to the start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("reward_mean", "training reward (mean of each pass)"),
        ("item_logprob", "item loss's log p(v⁺)"),
        ("kl_to_start", "KL to the starting policy"),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    for path in sorted(RESULTS.glob("*.json")):
        result = json.loads(path.read_text())
        for axis, (curve, title) in zip(axes, panels, strict=True):
            values = np.asarray(result["curves"].get(curve) or [np.nan])
            passes = values[: len(values) // 4 * 4].reshape(-1, 4).mean(axis=1) if curve == "reward_mean" else values
            steps = np.arange(1, len(passes) + 1) * (4 if curve == "reward_mean" else 1)
            axis.plot(steps, passes, label=result["name"])
            axis.set_title(title)
            axis.set_xlabel("step")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", help="the variant's name (its results file)")
    parser.add_argument("--params", default="", help="Kedro --params for the variant: block.key=value,...")
    parser.add_argument(
        "--table", action="store_true", help="print every recorded variant, draw docs/img/recpo_fit_curves.png, exit"
    )
    parser.add_argument(
        "--measured-run",
        action="store_true",
        help="measure the fit run already on disk (same --params) instead of running it",
    )
    args = parser.parse_args()
    if args.table:
        print_table()
        plot_curves(ROOT / "docs/img/recpo_fit_curves.png")
        return
    if not args.name:
        sys.exit("--name is required (or --table)")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    print_run(measure(args.name, args.params, run=not args.measured_run))


if __name__ == "__main__":
    main()
