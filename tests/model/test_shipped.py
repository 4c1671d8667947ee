"""A model rebuilt from a training checkpoint folder on another machine equals the model the run returned."""

from __future__ import annotations

import shutil

import pytest
import torch

from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import backbone_fingerprint
from r2ec_pipeline.model.dual_head_io import CheckpointError, trainable_state
from r2ec_pipeline.model.shipped import build_from_checkpoint, mismatch, read_shipped
from r2ec_pipeline.model.training_state import CheckpointStore, ResumeError
from r2ec_pipeline.rl.trainer import train_recpo
from tests.rl.toy_task import SETTINGS, item_prompts, toy_data, toy_model

PROMPTS = {"window_size": 5}


def _shipped_run(backbone, tmp_path):
    """Six RecPO steps validated every two (scripted: step 2 best), checkpoints with a full manifest."""
    model = toy_model(backbone, tmp_path / "cache")
    values = iter([0.1, 0.5, 0.3, 0.2])
    store = CheckpointStore(
        tmp_path / "ckpt",
        provenance={
            "stage": "recpo",
            "data_hash": "abc",
            "prompts": PROMPTS,
            "dual_head": {**model.config.to_dict(), "fingerprint": backbone_fingerprint(model.lm)},
            "parameters": {"model": {"adapters": {"r": 4, "alpha": 8, "top_layers": None}}},
        },
    )
    settings = SETTINGS.model_copy(
        update={
            "per_device_train_batch_size": 2,
            "max_steps": 6,
            "eval_steps": 2,
            "save_steps": 2,
            "learning_rate": 1e-2,
        }
    )
    result = train_recpo(model, toy_data(), settings, lambda m: {"reasoning.ndcg_at_10": next(values)}, store)
    assert result.selected_step == 2
    return model, store.latest()


def test_a_shipped_checkpoint_rebuilds_the_selected_model_on_a_fresh_backbone(tiny_backbone_dir, tmp_path):
    trained, latest = _shipped_run(tiny_backbone_dir, tmp_path)
    shipped = tmp_path / "repository" / "checkpoints" / "toy-run"
    shutil.copytree(latest, shipped)
    checkpoint = read_shipped(shipped)
    assert checkpoint.selected == "best" and checkpoint.manifest["step"] == 6
    lm = load_causal_lm(str(tiny_backbone_dir), tmp_path / "other-cache")
    rebuilt = build_from_checkpoint(checkpoint, lm, load_tokenizer(str(tiny_backbone_dir), tmp_path / "other-cache"))
    items = item_prompts()
    rebuilt.build_item_table(list(items), list(items.values()), progress=False)
    ours, theirs = trainable_state(rebuilt), trainable_state(trained)
    assert ours.keys() == theirs.keys()
    for name in ours:  # the selected (step 2) weights, and the table they encode
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-6, rtol=0)
    assert rebuilt.config.similarity_temperature == trained.config.similarity_temperature


def test_a_shipped_checkpoint_names_what_it_was_not_trained_on(tiny_backbone_dir, tmp_path):
    _, latest = _shipped_run(tiny_backbone_dir, tmp_path)
    checkpoint = read_shipped(latest)
    assert mismatch(checkpoint, "abc", PROMPTS) is None
    assert "data hash 'abc'" in mismatch(checkpoint, "other", PROMPTS)
    assert "prompt settings" in mismatch(checkpoint, "abc", {"window_size": 10})


def test_an_altered_or_foreign_checkpoint_is_refused(tiny_backbone_dir, tmp_path):
    _, latest = _shipped_run(tiny_backbone_dir, tmp_path)
    checkpoint = read_shipped(latest)
    other = dict(
        checkpoint.manifest["dual_head"],
        fingerprint={**checkpoint.manifest["dual_head"]["fingerprint"], "hidden_size": 1},
    )
    foreign = type(checkpoint)(checkpoint.path, {**checkpoint.manifest, "dual_head": other}, checkpoint.weights)
    lm = load_causal_lm(str(tiny_backbone_dir), tmp_path / "cache")
    with pytest.raises(CheckpointError, match="trained on another backbone"):
        build_from_checkpoint(foreign, lm, load_tokenizer(str(tiny_backbone_dir), tmp_path / "cache"))
    with (latest / "best.safetensors").open("ab") as handle:
        handle.write(b"x")
    with pytest.raises(ResumeError, match="best.safetensors differs from its manifest"):
        read_shipped(latest)
