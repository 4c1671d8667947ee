"""Catalog updates on the tiny model: new items registered without retraining, the old rows bit for bit,
the new items served and ranked like trained ones, bad rows registering nothing."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from kedro.io import DataCatalog
from kedro.runner import SequentialRunner
from mlflow import MlflowClient
from safetensors.torch import load_file

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.data.prompting import item_prompt_table
from r2ec_pipeline.data.validation import DataValidationError
from r2ec_pipeline.datasets.mlflow_runs import (
    RegisteredModelDataset,
    RegisteredVersionDataset,
)
from r2ec_pipeline.datasets.reports import SiteDataset
from r2ec_pipeline.items.rows import (
    CatalogUpdateError,
    match_catalog,
    plan_update,
    read_item_rows,
)
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.model.dual_head_io import save_dual_head
from r2ec_pipeline.pipelines.catalog_update.pipeline import create_pipeline
from tests.helpers import KeptDataset
from tests.serving.conftest import ITEMS, log_and_register

PROMPTS = {"item_instruction": "Describe this film.", "max_item_prompt_tokens": 128}
REQUEST = {"history_item_ids": ["B01", "B02"], "k": 2}


def _item_rows(model: R2ecModel, items: pd.DataFrame) -> pd.DataFrame:
    return item_prompt_table(
        items, model.tokenizer, PROMPTS["item_instruction"], model.config.answer_tag, PROMPTS["max_item_prompt_tokens"]
    )


@pytest.fixture
def champion(mlflow_store, tiny_backbone_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with its item table rendered as the update renders items, registered as champion."""
    torch.manual_seed(0)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(r=2, alpha=4, top_layers=None))
    model = R2ecModel(
        lm.eval(), load_tokenizer(str(tiny_backbone_dir), tmp_path), DualHeadConfig(backbone=str(tiny_backbone_dir))
    )
    rows = _item_rows(model, ITEMS)
    model.build_item_table(rows["item_id"].tolist(), rows["prompt"].tolist(), progress=False)
    checkpoint = save_dual_head(model, tmp_path / "champion")
    assert log_and_register(checkpoint, tiny_backbone_dir, 0.1)["promoted"]
    return checkpoint


def _update(tmp_path: Path, tiny_backbone_dir: Path, new_items: pd.DataFrame, allow_updates: bool = False) -> dict:
    catalog = DataCatalog(
        {
            "new_items": KeptDataset(new_items),
            "catalog_update_source": RegisteredVersionDataset("models:/r2ec@champion", str(tmp_path / "source")),
            "catalog_update_validation": KeptDataset(),
            "catalog_update_data_docs": SiteDataset(str(tmp_path / "docs")),
            "updated_model": RegisteredModelDataset(str(tmp_path / "registration.json")),
            "catalog_update_report": KeptDataset(),
            "params:catalog_update": KeptDataset({"allow_updates": allow_updates}),
            "params:data_validation": KeptDataset({}),
            "params:prompts": KeptDataset(PROMPTS),
            "params:model": KeptDataset({"backbone": str(tiny_backbone_dir)}),
            "params:registration": KeptDataset({}),
        }
    )
    with mlflow.start_run():
        SequentialRunner().run(create_pipeline(), catalog)
    return {"report": catalog.load("catalog_update_report"), "registration": catalog.load("updated_model")}


def _table(version: int, tmp_path: Path) -> torch.Tensor:
    local = Path(mlflow.artifacts.download_artifacts(f"models:/r2ec/{version}", dst_path=str(tmp_path / f"v{version}")))
    return load_file(next(local.rglob("item_table.safetensors")))["item_table"]


def test_new_items_are_registered_as_a_challenger_and_the_old_rows_stay_bit_for_bit(
    champion, tiny_backbone_dir, tmp_path
):
    new = pd.DataFrame(
        {"raw_item_id": ["B05", "B06"], "title": ["Space Opera", "Quiet Drama"], "genres": ["Sci-Fi", None]}
    )
    result = _update(tmp_path, tiny_backbone_dir, new)
    report, registration = result["report"], result["registration"]
    assert report["added"] == ["B05", "B06"] and report["updated"] == []
    assert (report["items_before"], report["items_after"]) == (4, 6)
    assert registration["version"] == 2 and registration["aliases"] == ["challenger"]  # champion stays
    assert "not promoted" in registration["promotion"]
    tags = MlflowClient().get_model_version("r2ec", "2").tags
    assert tags["catalog_update.source"] == "r2ec version 1" and tags["dataset"] == "fixture"
    old, updated = _table(1, tmp_path), _table(2, tmp_path)
    assert updated.shape[0] == old.shape[0] + 2
    assert torch.equal(updated[: old.shape[0]], old)  # every trained row untouched
    assert updated[5:].abs().sum(dim=1).gt(0).all()  # the new rows are encoded


def test_a_new_item_with_the_text_of_the_best_trained_item_is_ranked_as_that_item(
    champion, tiny_backbone_dir, tmp_path
):
    """No retraining: a new item is encoded as the trained ones were, so an item whose text equals the one
    the model ranks first for this user is ranked beside it, above every other trained item."""
    before = mlflow.pyfunc.load_model("models:/r2ec@champion").predict(pd.DataFrame([{**REQUEST, "k": 1}]))
    best = ITEMS.set_index("raw_item_id").loc[before["item_ids"][0][0]]
    twin = pd.DataFrame({"raw_item_id": ["B99"], "title": [best["title"]]})
    _update(tmp_path, tiny_backbone_dir, twin)
    served = mlflow.pyfunc.load_model("models:/r2ec/2")
    after = served.predict(pd.DataFrame([REQUEST])).iloc[0]
    assert set(after["item_ids"]) == {before["item_ids"][0][0], "B99"}
    assert after["scores"][0] == pytest.approx(after["scores"][1], abs=1e-3)
    assert served.predict(pd.DataFrame([{"history_item_ids": ["B99"], "k": 1}])).iloc[0]["item_ids"]  # accepted


def test_bad_rows_stop_the_update_with_the_gx_report_and_register_nothing(champion, tiny_backbone_dir, tmp_path):
    bad = pd.DataFrame({"raw_item_id": ["B05", "B05", "B01"], "title": ["New", " ", "Toy Story again"]})
    with pytest.raises(DataValidationError) as error:
        _update(tmp_path, tiny_backbone_dir, bad)
    for rule in ("raw_item_id_unique", "title_not_empty", "raw_item_id_not_in_catalog"):
        assert rule in str(error.value)
    assert (tmp_path / "docs/index.html").is_file()  # the Data Docs of the failed validation
    assert [int(v.version) for v in MlflowClient().search_model_versions("name='r2ec'")] == [1]


def test_an_update_of_an_existing_item_re_encodes_that_row_only(champion, tiny_backbone_dir, tmp_path):
    result = _update(
        tmp_path,
        tiny_backbone_dir,
        pd.DataFrame({"raw_item_id": ["B02"], "title": ["Drama, renamed"]}),
        allow_updates=True,
    )
    assert result["report"]["updated"] == ["B02"] and result["report"]["added"] == []
    old, updated = _table(1, tmp_path), _table(2, tmp_path)
    changed = [row for row in range(old.shape[0]) if not torch.equal(old[row], updated[row])]
    assert changed == [2]  # item 2 (B02) only


def test_rows_are_read_from_files_and_planned_after_the_catalogs_largest_id(tmp_path):
    path = tmp_path / "new.csv"
    pd.DataFrame({"raw_item_id": ["7", "B02"], "title": ["Seven", "Drama One, recut"]}).to_csv(path, index=False)
    rows = read_item_rows(path)
    assert rows["raw_item_id"].tolist() == ["7", "B02"]  # ids stay strings
    plan = plan_update(ITEMS, match_catalog(rows, ITEMS))
    assert plan.added == [5] and plan.updated == [2]
    assert plan.catalog["title"].tolist() == ["Toy Story", "Drama One, recut", "Comedy Two", "Action Three", "Seven"]
    amazon = tmp_path / "meta.jsonl"
    amazon.write_text('{"parent_asin": "B0X", "title": "<b>Guitar</b> strings", "description": ["Bright.", "Long."]}\n')
    assert read_item_rows(amazon)[["raw_item_id", "title", "description"]].values.tolist() == [
        ["B0X", "Guitar strings", "Bright. Long."]
    ]
    (tmp_path / "bad.csv").write_text("name\nx\n")
    with pytest.raises(CatalogUpdateError, match=r"missing column\(s\) \['raw_item_id', 'title'\]"):
        read_item_rows(tmp_path / "bad.csv")
