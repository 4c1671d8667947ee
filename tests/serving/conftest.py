"""A tiny R²ec model (random 2-layer Llama, 4 items) logged and registered in a temporary MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.datasets.mlflow_runs import RegisteredModelDataset
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.model.dual_head_io import save_dual_head
from r2ec_pipeline.serving.pyfunc import ServingSettings
from r2ec_pipeline.serving.registry import Registration

ITEMS = pd.DataFrame(
    {
        "item_id": [1, 2, 3, 4],
        "raw_item_id": ["B01", "B02", "B03", "B04"],
        "title": ["Toy Story", "Drama One", "Comedy Two", "Action Three"],
    }
)
SETTINGS = ServingSettings(
    user_instruction="Here is a user's history of rated items, oldest first.",
    window_size=20,
    max_user_prompt_tokens=512,
    reasoning_tokens=3,
    default_k=2,
    max_k=3,
)
EXAMPLE = pd.DataFrame([{"history_item_ids": ["B01"], "history_ratings": [4.0], "history_timestamps": [10], "k": 2}])


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("R2EC_BACKBONE_CACHE", str(tmp_path / "backbone-cache"))  # served backbones, per test
    monkeypatch.chdir(tmp_path)  # artifacts land in ./mlruns of the temporary folder
    mlflow.set_tracking_uri(uri)  # the registry follows the tracking URI (set_registry_uri would outlive the test)
    yield uri
    mlflow.end_run()


@pytest.fixture
def tiny_checkpoint(tiny_backbone_dir: Path, tmp_path: Path) -> Path:
    torch.manual_seed(0)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(r=2, alpha=4, top_layers=None))
    model = R2ecModel(
        lm.eval(), load_tokenizer(str(tiny_backbone_dir), tmp_path), DualHeadConfig(backbone=str(tiny_backbone_dir))
    )
    prompts = [
        f"<|im_start|>user\nTitle: {title}<|im_end|>\n<|im_start|>assistant\n<answer>" for title in ITEMS["title"]
    ]
    model.build_item_table(ITEMS["item_id"].tolist(), prompts, progress=False)
    return save_dual_head(model, tmp_path / "checkpoint")


BASIS = {"dataset": "fixture", "data_hash": "abc", "promotion_users": "valid: 32 users, seed 0"}
RUN_TAGS = {"profile": "base", "git_commit": "0123abc", "evaluation_users": "test: all", "unrelated": "x"}


def log_and_register(
    checkpoint: Path, backbone: Path, value: float | None, tags: dict[str, str] | None = None
) -> dict[str, object]:
    """One registration as the pipeline does it: the registration dataset saves it inside a run that
    ``RunTagsHooks`` has tagged; returns the report the dataset wrote."""
    with mlflow.start_run():
        mlflow.set_tags(RUN_TAGS)
        dataset = RegisteredModelDataset(str(Path.cwd() / "registration.json"))
        dataset.save(
            Registration(
                checkpoint=checkpoint,
                backbone=backbone,
                items=ITEMS,
                settings=SETTINGS,
                input_example=EXAMPLE,
                model_name="r2ec",
                metric="valid.recpo.reasoning.ndcg_at_10",
                value=value,
                tags=BASIS if tags is None else tags,
            )
        )
        return dataset.load()
