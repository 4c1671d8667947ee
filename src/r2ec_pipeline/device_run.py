"""`python -m r2ec_pipeline.device_run`: the project's pipelines on a machine that has no Kedro runtime or MLflow.

A lent GPU machine has torch, transformers and peft but not the project's whole stack. This runs the
same Kedro pipeline objects (``pipelines/<name>/pipeline.py``: the same nodes, wiring and order) with the
same parameters (``conf/base`` + ``conf/<env>``, ``config/profile.py``) on the data the data pipelines
validated here (the parquet files of ``data/03_primary`` and ``data/05_model_input``, carried along).
Only the IO differs: inputs are read from the catalog's file paths, outputs kept in memory and written
under ``--out`` as each node ends (models as dual-head folders, tables as parquet, reports as JSON,
training checkpoints in ``--out/<stage>_checkpoints``), with each node's seconds and peak GPU memory in
``--out/nodes.json`` and the machine, commit and profile in ``--out/run.json``
(``python -m r2ec_pipeline.serving.gpu_import`` logs it into MLflow and keeps its checkpoint). Nodes
that need what the machine does not have (the baselines, MLflow) are left out: the pipelines run up
to the outputs named by ``--outputs``.

  python -m r2ec_pipeline.device_run --env gpu --pipelines sft,recpo,evaluation --out $OUT \\
      --outputs sft_report,recpo_report,zero_shot_rankings,sft_rankings,recpo_rankings [--params k=v,...]

Needs the kedro package (its pipeline and io modules only: ``kedro``, ``more_itertools``, ``parse``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from r2ec_pipeline.config.profile import load_parameters
from r2ec_pipeline.model.backbone import backbone_folder, load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import R2ecModel
from r2ec_pipeline.model.dual_head_io import save_dual_head
from r2ec_pipeline.model.training_state import CheckpointStore
from r2ec_pipeline.pipelines.shared.provenance import machine
from r2ec_pipeline.run_tags import git_commit

logger = logging.getLogger("r2ec_pipeline.device_run")
BACKBONE_CACHE = "data/06_models/backbones"


def _parse_params(text: str) -> dict[str, Any]:
    """``a.b=1,c=x`` as ``kedro run --params`` reads it (values parsed as YAML scalars)."""
    pairs = [item.split("=", 1) for item in text.split(",") if item]
    return {key.strip(): yaml.safe_load(value) for key, value in pairs}


def _pipeline(names: list[str], outputs: list[str]) -> Any:
    """The named pipelines (their own modules only), cut to the nodes the ``outputs`` need."""
    pipelines = [
        importlib.import_module(f"r2ec_pipeline.pipelines.{name}.pipeline").create_pipeline() for name in names
    ]
    whole = sum(pipelines[1:], pipelines[0])
    return whole.to_outputs(*outputs) if outputs else whole


def _catalog_paths(conf: Path) -> dict[str, str]:
    """Dataset name → file path of every parquet dataset in the catalog (what this machine reads)."""
    entries = yaml.safe_load((conf / "base" / "catalog.yml").read_text())
    return {
        name: entry["filepath"]
        for name, entry in entries.items()
        if isinstance(entry, dict) and entry.get("type") == "pandas.ParquetDataset"
    }


class DeviceRun:
    """The in-memory catalog of one run: parameters, carried tables, the backbone, and what nodes produced."""

    def __init__(self, conf: Path, data_root: Path, out: Path, parameters: dict[str, Any]) -> None:
        self.conf, self.data_root, self.out, self.parameters = conf, data_root, out, parameters
        self.values: dict[str, Any] = {}
        self.paths = _catalog_paths(conf)
        self.nodes: dict[str, dict[str, float]] = {}

    def load(self, name: str) -> Any:
        if name in self.values:
            return self.values[name]
        if name.startswith("params:"):
            return self.parameters[name.removeprefix("params:")]
        spec, cache = self.parameters["model"]["backbone"], self.data_root / BACKBONE_CACHE
        if name == "backbone_lm":
            return load_causal_lm(spec, cache)
        if name == "backbone_tokenizer":
            return load_tokenizer(spec, cache)
        if name == "backbone_folder":
            return backbone_folder(spec, cache)
        if name.endswith("_checkpoints"):
            return CheckpointStore(self.out / name)
        if name in self.paths:
            return pd.read_parquet(self.data_root / self.paths[name])
        if name == "sft_model":  # recpo alone: the SFT model a resumed or shipped run starts from is set by params
            return None
        raise KeyError(f"{name!r}: not produced by these pipelines and not readable here (a parquet of the catalog)")

    def save(self, name: str, value: Any) -> None:
        """Keep ``value`` for later nodes and write it under ``out`` by its kind."""
        self.values[name] = value
        stem = self.out / name.split("@")[0]
        if isinstance(value, R2ecModel):
            save_dual_head(value, stem)
        elif isinstance(value, pd.DataFrame):
            value.to_parquet(stem.with_suffix(".parquet"), index=False)
        elif isinstance(value, dict) and name.endswith(("_report", "_history")):
            stem.with_suffix(".json").write_text(json.dumps(value, indent=1, default=float))

    def run(self, pipeline: Any) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for node in pipeline.nodes:  # Kedro's topological order
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            outputs = node.run({name: self.load(name) for name in node.inputs})
            for name, value in outputs.items():
                self.save(name, value)
            self.nodes[node.name] = {"seconds": time.perf_counter() - started}
            if torch.cuda.is_available():
                self.nodes[node.name]["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
            (self.out / "nodes.json").write_text(json.dumps(self.nodes, indent=1))
            logger.info("%s: %.1f s", node.name, self.nodes[node.name]["seconds"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default=None, help="the profile: conf/<env> over conf/base (e.g. gpu)")
    parser.add_argument("--pipelines", required=True, help="comma-separated: e.g. sft,recpo,evaluation")
    parser.add_argument("--outputs", default="", help="comma-separated datasets to produce (default: all outputs)")
    parser.add_argument("--params", default="", help="runtime overrides, as kedro run --params")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--conf", type=Path, default=Path("conf"))
    parser.add_argument("--data-root", type=Path, default=Path("."), help="where data/ (carried tables) lies")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parameters = load_parameters(args.conf, args.env, _parse_params(args.params))
    run = DeviceRun(args.conf, args.data_root, args.out, parameters)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parameters.json").write_text(json.dumps(parameters, indent=1))
    about = {
        "env": args.env or "base",
        "pipelines": args.pipelines,
        "machine": machine(),
        "git_commit": git_commit(Path.cwd()),
        "torch": torch.__version__,
    }
    (args.out / "run.json").write_text(json.dumps(about, indent=1))
    run.run(_pipeline(args.pipelines.split(","), [o for o in args.outputs.split(",") if o]))


if __name__ == "__main__":
    main()
