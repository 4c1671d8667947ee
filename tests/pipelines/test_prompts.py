"""The prompts pipeline on tiny tables with the tiny tokenizer (in-memory catalog)."""

from kedro.runner import SequentialRunner

from r2ec_pipeline.pipelines.prompts.pipeline import create_pipeline
from tests.helpers import memory_catalog

OUTPUTS = ["train_samples", "valid_samples", "test_samples", "item_prompts", "prompt_summary", "prompt_metrics"]


def _run(tables, tokenizer, **params):
    interactions, items = tables
    catalog = memory_catalog(
        {
            "validated_interactions": interactions,
            "validated_items": items,
            "backbone_tokenizer": tokenizer,
            "params:prompts": params,
        },
        OUTPUTS,
    )
    SequentialRunner().run(create_pipeline(), catalog)
    return {name: catalog.load(name) for name in OUTPUTS}


def test_leave_one_out_prompts(tables, tiny_tokenizer):
    out = _run(tables, tiny_tokenizer, window_size=2)
    test, valid, train = out["test_samples"], out["valid_samples"], out["train_samples"]
    assert len(test) == 4 and test["user_id"].is_unique
    assert len(valid) == 3 and len(train) == 1
    user1 = test.set_index("user_id").loc[1]
    assert user1["target_item_id"] == 4 and list(user1["history_item_ids"]) == [2, 3]
    assert "[GoldenEye] rating 4" in user1["prompt"] and "[Four Rooms] rating 3" in user1["prompt"]
    assert "[Toy Story]" not in user1["prompt"]  # outside the window of 2
    assert user1["prompt"].index("GoldenEye") < user1["prompt"].index("Four Rooms")  # oldest first
    assert user1["prompt"].endswith("<|im_start|>assistant\n")
    assert (test["prompt_tokens"] > 0).all() and (test["history_in_prompt"] == test["history_item_ids"].map(len)).all()


def test_item_prompts_and_summary(tables, tiny_tokenizer):
    out = _run(tables, tiny_tokenizer, window_size=20)
    items = out["item_prompts"]
    assert items["item_id"].tolist() == list(range(1, 7))
    assert items["prompt"].str.endswith("<answer>").all()
    assert "Title: Babe\nYear: 1995\nGenres: Drama" in items.loc[5, "prompt"]
    summary, metrics = out["prompt_summary"], out["prompt_metrics"]
    assert {split: summary[split]["samples"] for split in ("train", "valid", "test")} == {
        "train": 1,
        "valid": 3,
        "test": 4,
    }
    assert summary["items"]["items"] == 6
    interactions = tables[0]
    users = interactions["user_id"].nunique()
    assert summary["dataset"] == {
        "users": users,
        "items": 6,
        "interactions": len(interactions),
        "density": len(interactions) / (users * 6),
        "samples": 8,
        "train": 1,
        "valid": 3,
        "test": 4,
    }  # the paper's Table 5 row
    assert metrics["test.samples"] == {"value": 4.0, "step": 0}
    assert metrics["items.item_prompt_tokens.max"]["value"] == float(items["prompt_tokens"].max())


def test_temporal_split_through_the_pipeline(tables, tiny_tokenizer):
    out = _run(tables, tiny_tokenizer, split="temporal", temporal_ratios=[0.5, 0.25, 0.25])
    sizes = [len(out[name]) for name in ("train_samples", "valid_samples", "test_samples")]
    assert sizes == [4, 2, 2]
    assert out["train_samples"]["target_timestamp"].max() <= out["valid_samples"]["target_timestamp"].min()
    assert out["valid_samples"]["target_timestamp"].max() <= out["test_samples"]["target_timestamp"].min()
