"""Does reasoning finish? Share of paths that write the answer tag (or end the turn) by each budget, and
validation N@10 in reasoning mode at each budget, for the zero-shot and the SFT model (a table).

On ``--users`` seeded validation users (the evaluation's own seeded subset), each model writes one
greedy path and one sampled path (RecPO's rollout sampling: ``recpo.temperature``, ``recpo.top_k``) per
user with the largest budget. A path that stops by the tag or end of turn within b tokens is the same
path under any budget ≥ b, so one generation gives the finished share at every budget. N@10 at budget b
reads h after the path cut at b tokens and closed by the tag (the product's closing rule), encoded in one
forward pass: the same text a generation capped at b ends with.

Needs ``make run``'s outputs (SFT checkpoint, prompts stage's tables, converted backbone).

Remedies are rows of their own (``--label``): ``--modes sampled --temperature 1.0 --top-k 50`` samples
more conservatively; ``--instruction "..."`` replaces the prompts' user instruction (``prompts.user_instruction``)
in every rendered prompt. Each run merges its rows into the results file under ``<label>``.

Usage: .venv/bin/python benchmarks/reasoning_budget.py [--users 100] [--budgets 32,64,128,256]
       [--temperature 1.5] [--top-k 200] [--models zero_shot,sft] [--modes greedy,sampled] [--batch 16]
       [--instruction TEXT] [--label NAME]
       .venv/bin/python benchmarks/reasoning_budget.py --table   (every recorded row, no run)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
from _common import CACHE, ROOT  # benchmarks/_common.py (the script's folder is on sys.path)
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from r2ec_pipeline.config import parse_block
from r2ec_pipeline.data.samples import mask_lists, seeded_subset
from r2ec_pipeline.metrics import per_sample
from r2ec_pipeline.model.backbone import load_causal_lm
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.factory import build_dual_head
from r2ec_pipeline.model.generation import closing_ids, generate_reasoning, partial_tag_length
from r2ec_pipeline.model.scoring import target_ranks
from r2ec_pipeline.run_tags import git_commit

RESULTS = ROOT / "docs/results/reasoning_budget.json"


def finished_lengths(reasoning: Sequence[list[int]], reasons: Sequence[str]) -> list[float]:
    """Reasoning tokens before each path stopped by itself (tag or end of turn); inf for a path cut at the cap."""
    return [len(path) if reason != "length" else float("inf") for path, reason in zip(reasoning, reasons, strict=True)]


def capped_states(model: R2ecModel, prompts: Sequence[str], paths: Sequence[list[int]], budget: int) -> torch.Tensor:
    """h after each path cut at ``budget`` reasoning tokens and closed by the canonical tag (one forward pass)."""
    tag_ids = model.tokenizer(model.config.answer_tag, add_special_tokens=False)["input_ids"]
    texts = []
    for prompt, path in zip(prompts, paths, strict=True):
        kept = path[:budget]
        text = model.tokenizer.decode(kept)
        ids = closing_ids(model.tokenizer, kept, len(text) - partial_tag_length(text, model.config.answer_tag), tag_ids)
        texts.append(prompt + model.tokenizer.decode(ids))
    with torch.no_grad():
        return model.encode_shared_prefix(texts)


def ndcg_at_10(model: R2ecModel, states: torch.Tensor, targets: Sequence[int], masks) -> float:
    scores = model.score(states, masks)
    ranks = target_ranks(scores, torch.tensor(targets, device=scores.device)).cpu().numpy()
    return float(per_sample(ranks, "ndcg_at_10").mean())


def study(model: R2ecModel, prompts, targets, masks, budgets, temperature, top_k, batch, modes) -> dict:
    """Finished shares and N@10 per budget, for each of ``modes`` (greedy, sampled), for one model."""
    tag_length = len(model.tokenizer(model.config.answer_tag, add_special_tokens=False)["input_ids"])
    top = max(budgets)
    result = {}
    for mode, sampling in (
        ("greedy", {}),
        ("sampled", {"do_sample": True, "temperature": temperature, "top_k": top_k}),
    ):
        if mode not in modes:
            continue
        started, paths, reasons, texts = time.perf_counter(), [], [], []
        generator = torch.Generator().manual_seed(0)
        for start in range(0, len(prompts), batch):
            chunk = prompts[start : start + batch]
            extra = {"generator": generator} if sampling else {}
            generation = generate_reasoning(model, chunk, top, logprobs=False, **sampling, **extra)
            # the tag's canonical ids end every path; the reasoning is what comes before them
            paths += [path[:-tag_length] if len(path) >= tag_length else [] for path in generation.token_ids]
            reasons += generation.stop_reasons
            texts += generation.texts
        lengths = finished_lengths(paths, reasons)
        rows = {}
        for budget in budgets:
            states = torch.cat(
                [
                    capped_states(model, prompts[s : s + batch], paths[s : s + batch], budget)
                    for s in range(0, len(prompts), batch)
                ]
            )
            rows[str(budget)] = {
                "finished_share": float(np.mean([length <= budget for length in lengths])),
                "tag_share": float(
                    np.mean([r == "tag" and n <= budget for r, n in zip(reasons, lengths, strict=True)])
                ),
                "ndcg_at_10": ndcg_at_10(model, states, targets, masks),
            }
        result[mode] = {
            "budgets": rows,
            "seconds": round(time.perf_counter() - started, 1),
            "examples": texts[:3],
        }
        print(mode, json.dumps(rows), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--budgets", default="32,64,128,256")
    parser.add_argument("--temperature", type=float, default=None, help="sampled paths (default: recpo.temperature)")
    parser.add_argument("--top-k", type=int, default=None, help="sampled paths (default: recpo.top_k)")
    parser.add_argument("--models", default="zero_shot,sft")
    parser.add_argument("--modes", default="greedy,sampled")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--instruction", default=None, help="replaces prompts.user_instruction in every prompt")
    parser.add_argument("--label", default=None, help="results key prefix (default: the model's name)")
    parser.add_argument("--table", action="store_true", help="print every recorded row and exit")
    args = parser.parse_args()
    if args.table:
        print_table(json.loads(RESULTS.read_text()))
        return
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    budgets = [int(b) for b in args.budgets.split(",")]
    bootstrap_project(ROOT)
    with KedroSession.create(project_path=ROOT) as session:
        context = session.load_context()
        catalog, params = context.catalog, context.params
        valid = catalog.load("valid_samples")
        interactions = catalog.load("validated_interactions")
        items = catalog.load("item_prompts")
        sft = catalog.load("sft_model") if "sft" in args.models else None
    model_config, recpo = parse_block("model", params["model"]), parse_block("recpo", params["recpo"])
    temperature = args.temperature or recpo.temperature
    top_k = args.top_k or recpo.top_k
    chosen = seeded_subset(valid, args.users, parse_block("evaluation", params["evaluation"]).seed)
    prompts, targets = chosen["prompt"].tolist(), chosen["target_item_id"].astype(int).tolist()
    if args.instruction:
        prompts = replace_instruction(
            prompts, parse_block("prompts", params["prompts"]).user_instruction, args.instruction
        )
    masks = mask_lists(chosen, interactions, model_config.history_mask)
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"models": {}}
    commit = git_commit(ROOT)  # the code the rows come from (+dirty: uncommitted changes)
    for name in args.models.split(","):
        if name == "sft":
            model = sft
        else:
            lm = load_causal_lm(model_config.backbone, CACHE)
            model = build_dual_head(
                lm,
                catalog.load("backbone_tokenizer"),
                model_config,
                parse_block("prompts", params["prompts"]).answer_tag,
            )
            model.build_item_table(items["item_id"].astype(int).tolist(), items["prompt"].tolist(), progress=False)
        model.lm.eval()
        label = f"{args.label}:{name}" if args.label else name
        print(f"== {label}", flush=True)
        report["models"][label] = {
            "users": len(prompts),
            "temperature": temperature,
            "top_k": top_k,
            "instruction": args.instruction,
            "commit": commit,
            **study(model, prompts, targets, masks, budgets, temperature, top_k, args.batch, args.modes.split(",")),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print_table(report)


def replace_instruction(prompts: Sequence[str], old: str, new: str) -> list[str]:
    """The prompts with their user instruction replaced; raises if a prompt does not contain it."""
    missing = sum(old not in prompt for prompt in prompts)
    if missing:
        raise ValueError(f"{missing} of {len(prompts)} prompts do not contain prompts.user_instruction {old[:40]!r}...")
    return [prompt.replace(old, new) for prompt in prompts]


def print_table(report: dict) -> None:
    print(
        "| model | users | paths (temperature, top-k) | budget | finished by the budget | of which by the tag | N@10 (reasoning) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    for label, run in report["models"].items():
        for mode in ("greedy", "sampled"):
            if mode not in run:
                continue
            sampling = f"sampled ({run['temperature']}, {run['top_k']})" if mode == "sampled" else "greedy"
            for budget, row in run[mode]["budgets"].items():
                print(
                    f"| {label} | {run['users']} | {sampling} | {budget} | {row['finished_share']:.2f} | "
                    f"{row['tag_share']:.2f} | {row['ndcg_at_10']:.4f} |"
                )


if __name__ == "__main__":
    main()
