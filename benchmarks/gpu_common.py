"""What the GPU scripts share: ML-100k built as the pipelines build it, stages timed and saved, a timer.

``gpu_run.py`` and ``gpu_speed.py`` run on a lent machine with torch, transformers and peft but no Kedro
or MLflow; this module needs nothing more.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from r2ec_pipeline.data.atomic_files import read_wheel_tables
from r2ec_pipeline.data.samples import mask_lists, seeded_subset
from r2ec_pipeline.model.sft_batched import synchronize
from r2ec_pipeline.pipelines.data_ingestion.nodes import canonicalize, movielens_tables
from r2ec_pipeline.pipelines.prompts.nodes import make_samples, render_item_prompts, render_user_prompts


def _json_value(value: Any) -> Any:
    """numpy numbers as floats, paths as strings."""
    return str(value) if isinstance(value, Path) else float(value)


class StageFailed(RuntimeError):
    """A stage raised: the run stops, what it measured so far stays in results.json."""


class Stages:
    """Wall time and peak GPU memory per stage; every result written to ``out/results.json`` at once."""

    def __init__(self, out: Path) -> None:
        self.out, self.results = out, {"stages": {}}
        out.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def save(self) -> None:
        (self.out / "results.json").write_text(json.dumps(self.results, indent=2, default=_json_value))

    def run(self, name: str, function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            values = function()
        except Exception as error:
            self.results["stages"][name] = {
                "error": f"{type(error).__name__}: {error}",
                "seconds": time.perf_counter() - started,
            }
            self.save()
            raise StageFailed(f"stage {name} failed: {type(error).__name__}: {error}") from error
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            values["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        values["seconds"] = time.perf_counter() - started
        self.results["stages"][name] = values
        self.save()
        print(f"[{name}] {json.dumps(values, default=float)[:700]}", flush=True)
        return values


def build_data(wheel: Path, tokenizer, window: int, users: int | None, train_samples: int | None) -> dict[str, Any]:
    """ML-100k as the data_ingestion and prompts pipelines build it (leave-one-out, window ``window``)."""
    interactions, items = canonicalize(*movielens_tables(read_wheel_tables(wheel)), 2)
    params = {"window_size": window, "split": "leave_one_out"}
    train, valid, test = render_user_prompts(make_samples(interactions, params), items, tokenizer, params)
    item_prompts = render_item_prompts(items, tokenizer, params)
    train = seeded_subset(train, train_samples, 0)
    valid, test = seeded_subset(valid, users, 0), seeded_subset(test, users, 0)
    return {
        "interactions": interactions,
        "items": items,
        "train": train,
        "valid": valid,
        "test": test,
        "item_prompt": dict(zip(item_prompts["item_id"].astype(int), item_prompts["prompt"], strict=True)),
        "histories": {
            split: mask_lists(frame, interactions, "full")
            for split, frame in (("train", train), ("valid", valid), ("test", test))
        },
    }


def timed(function: Callable[[], Any], repeats: int, warmup: int, device: torch.device) -> float:
    """Mean seconds of ``function()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    synchronize(device)
    return (time.perf_counter() - started) / repeats


def print_table(results: dict[str, Any]) -> None:
    print(f"\n# gpu_run on {results['device']} ({results['versions']}), {results['wall_seconds']:.0f} s\n")
    print("| stage | seconds | peak GPU GB | figures |\n|---|---:|---:|---|")
    for name, values in results["stages"].items():
        figures = {k: v for k, v in values.items() if k not in ("seconds", "peak_gpu_gb")}
        peak = values.get("peak_gpu_gb")
        print(
            f"| {name} | {values.get('seconds', 0.0):.1f} | {'' if peak is None else f'{peak:.2f}'} | "
            f"{json.dumps(figures, default=lambda v: round(float(v), 4))} |"
        )
    print("\n| N@10 difference (same users) | difference | 95% CI | users |\n|---|---:|---|---:|")
    for name, value in results.get("comparisons", {}).items():
        print(
            f"| {name} | {value['difference']:+.4f} | [{value['low']:+.4f}, {value['high']:+.4f}] | {value['users']} |"
        )
