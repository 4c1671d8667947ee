"""The sft pipeline on the tiny random backbone and a tiny prompt set (in-memory catalog)."""

import torch
from kedro.runner import SequentialRunner

from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.training_state import CheckpointStore
from r2ec_pipeline.pipelines.prompts.pipeline import create_pipeline as prompts_pipeline
from r2ec_pipeline.pipelines.sft.pipeline import create_pipeline as sft_pipeline
from tests.helpers import memory_catalog

MODEL = {"similarity_temperature": 0.1, "adapters": {"r": 2, "alpha": 4, "top_layers": 1}, "encode_batch_size": 4}
SFT = {"steps": 3, "batch_size": 2, "negatives": 2, "eval_every": 2, "eval_users": 2, "learning_rate": 1e-2}


def _prompts(tables, tokenizer):
    interactions, items = tables
    outputs = ["train_samples", "valid_samples", "test_samples", "item_prompts"]
    catalog = memory_catalog(
        {
            "validated_interactions": interactions,
            "validated_items": items,
            "backbone_tokenizer": tokenizer,
            "params:prompts": {"window_size": 3, "split": "temporal", "temporal_ratios": [0.5, 0.25, 0.25]},
        },
        outputs + ["prompt_summary", "prompt_metrics"],
    )
    SequentialRunner().run(prompts_pipeline(), catalog)
    return {name: catalog.load(name) for name in outputs}


def test_sft_trains_the_adapters_and_reports_zero_shot_and_sft(tables, tiny_backbone_dir, tmp_path):
    torch.manual_seed(0)
    data = _prompts(tables, load_tokenizer(str(tiny_backbone_dir), tmp_path))
    lm = load_causal_lm(str(tiny_backbone_dir), tmp_path)
    catalog = memory_catalog(
        {
            "backbone_lm": lm,
            "backbone_tokenizer": load_tokenizer(str(tiny_backbone_dir), tmp_path),
            "params:model": {**MODEL, "backbone": str(tiny_backbone_dir)},
            "params:prompts": {},
            "params:sft": SFT,
            "validated_interactions": tables[0],
            "sft_checkpoints": CheckpointStore(tmp_path / "sft_checkpoints"),
            **{k: v for k, v in data.items() if k != "test_samples"},
        },
        ["sft_model", "sft_history", "sft_report", "zero_shot_model", "sft_eval_samples"],
    )
    SequentialRunner().run(sft_pipeline(), catalog)
    report, history, model = catalog.load("sft_report"), catalog.load("sft_history"), catalog.load("sft_model")
    assert report["eval_users"] == 2 and report["train_samples"] == len(data["train_samples"])
    assert set(report["zero_shot"]["valid"]) >= {"hit_at_10", "ndcg_at_10", "mrr"}
    assert [e["step"] for e in history["valid.ndcg_at_10"]] == [0, 2, 3]
    assert [e["step"] for e in history["train.loss"]] == [1, 2, 3]
    assert report["sft"]["valid"]["ndcg_at_10"] == max(e["value"] for e in history["valid.ndcg_at_10"])
    assert all(e["value"] > 0 for e in history["train.loss"] + history["train.grad_norm"])
    moved = any(p.abs().sum() > 0 for n, p in model.lm.named_parameters() if "lora_B" in n)
    assert moved == (report["sft"]["best_step"] > 0)  # kept weights: trained ones only if they validated better
    assert model.num_items == len(data["item_prompts"])


def test_catalog_softmax_trains_against_every_item_and_reports_its_curve(tables, tiny_backbone_dir, tmp_path):
    torch.manual_seed(0)
    data = _prompts(tables, load_tokenizer(str(tiny_backbone_dir), tmp_path))
    catalog = memory_catalog(
        {
            "backbone_lm": load_causal_lm(str(tiny_backbone_dir), tmp_path),
            "backbone_tokenizer": load_tokenizer(str(tiny_backbone_dir), tmp_path),
            "params:model": {**MODEL, "backbone": str(tiny_backbone_dir)},
            "params:prompts": {},
            "params:sft": {**SFT, "softmax": "catalog", "table_refresh_every": 2, "negatives": 0},
            "validated_interactions": tables[0],
            "sft_checkpoints": CheckpointStore(tmp_path / "sft_checkpoints"),
            **{k: v for k, v in data.items() if k != "test_samples"},
        },
        ["sft_model", "sft_history", "sft_report", "zero_shot_model", "sft_eval_samples"],
    )
    SequentialRunner().run(sft_pipeline(), catalog)
    report, history = catalog.load("sft_report"), catalog.load("sft_history")
    chance = torch.log(torch.tensor(float(len(data["item_prompts"])))).item()
    losses = [e["value"] for e in history["train.loss"]]
    assert len(losses) == 3 and all(0 < value < chance + 5 for value in losses)
    assert list(report["validation_by_step"]) == ["0", "2", "3"]
    assert report["loss_by_step"] == losses
