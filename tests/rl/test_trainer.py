"""The RecPO loop on the toy task: batch order, checkpoints, kill-and-resume, a rising reward."""

from __future__ import annotations

import numpy as np
import pytest

import r2ec_pipeline.rl.trainer as trainer_module
from r2ec_pipeline.rl.checkpointing import CheckpointStore, ResumeError
from r2ec_pipeline.rl.trainer import TrainerSettings, batch_indices, total_steps, train_recpo
from tests.rl.toy_task import SETTINGS, toy_data, toy_model

TRAINER = TrainerSettings(per_device_train_batch_size=2, max_steps=4, learning_rate=1e-2, save_steps=2, seed=0)


def _train(backbone, tmp_path, store=None, resume=None, trainer=TRAINER, evaluate=None):
    model = toy_model(backbone, tmp_path / "cache")
    return model, train_recpo(model, toy_data(), SETTINGS, trainer, evaluate=evaluate, store=store,
                              resume_from_checkpoint=resume)


def _losses(result):
    return {point["step"]: point["value"] for point in result.history["train.loss"]}


def test_each_epoch_visits_every_full_batch_once_in_a_seeded_order():
    epoch = np.concatenate([batch_indices(7, 3, step, seed=1) for step in (1, 2)])
    assert sorted(epoch.tolist()) != list(range(7)) and len(set(epoch.tolist())) == 6  # 7th sample dropped
    assert np.array_equal(batch_indices(7, 3, 3, seed=1), batch_indices(7, 3, 3, seed=1))
    assert not np.array_equal(batch_indices(7, 3, 1, seed=1), batch_indices(7, 3, 3, seed=1))  # new epoch order
    assert total_steps(7, TrainerSettings(per_device_train_batch_size=3, max_steps=None, num_train_epochs=1.5)) == 3


def test_killed_after_step_k_and_resumed_gives_the_uninterrupted_step_k_plus_1(tiny_backbone_dir, tmp_path, monkeypatch):
    _, uninterrupted = _train(tiny_backbone_dir, tmp_path / "a", CheckpointStore(tmp_path / "a" / "ckpt"))

    store = CheckpointStore(tmp_path / "b" / "ckpt")
    real_step, calls = trainer_module.recpo_step, []

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("killed during step 3")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "recpo_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_backbone_dir, tmp_path / "b", store)
    monkeypatch.setattr(trainer_module, "recpo_step", real_step)
    assert [p.name for p in store.checkpoints()] == ["checkpoint-2"]

    _, resumed = _train(tiny_backbone_dir, tmp_path / "b", store, resume=True)
    assert resumed.resumed_from == 2
    assert _losses(resumed)[3] == pytest.approx(_losses(uninterrupted)[3], abs=1e-6)
    # step 4 also depends on the optimizer's moments and the item table rows refreshed at step 3
    assert _losses(resumed) == pytest.approx(_losses(uninterrupted), abs=1e-6)  # history carried over
    assert [p.name for p in store.checkpoints()] == ["checkpoint-2", "checkpoint-4"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_resuming_under_other_settings_is_refused(tiny_backbone_dir, tmp_path):
    store = CheckpointStore(tmp_path / "ckpt")
    _train(tiny_backbone_dir, tmp_path, store, trainer=TrainerSettings(**{**TRAINER.__dict__, "max_steps": 2}))
    with pytest.raises(ResumeError, match="learning_rate"):
        _train(tiny_backbone_dir, tmp_path, store, resume=True,
               trainer=TrainerSettings(**{**TRAINER.__dict__, "learning_rate": 0.5}))
    with pytest.raises(ResumeError, match="not a RecPO checkpoint"):
        _train(tiny_backbone_dir, tmp_path, store, resume=str(tmp_path / "nowhere"))


def test_old_checkpoints_are_pruned(tiny_backbone_dir, tmp_path):
    store = CheckpointStore(tmp_path / "ckpt", keep=2)
    _train(tiny_backbone_dir, tmp_path, store, trainer=TrainerSettings(**{**TRAINER.__dict__, "max_steps": 5,
                                                                           "save_steps": 1}))
    assert [p.name for p in store.checkpoints()] == ["checkpoint-4", "checkpoint-5"]


def test_validation_runs_before_during_and_after_and_reward_rises(tiny_backbone_dir, tmp_path):
    calls = []

    def evaluate(model):
        calls.append(model.item_table.clone())
        return {"ndcg_at_10": float(len(calls))}

    trainer = TrainerSettings(per_device_train_batch_size=3, max_steps=24, learning_rate=2e-2, eval_steps=12)
    _, result = _train(tiny_backbone_dir, tmp_path, trainer=trainer, evaluate=evaluate)
    assert sorted(result.evaluations) == [0, 12, 24] and result.final_metrics == {"ndcg_at_10": 3.0}
    rewards = [point["value"] for point in result.history["train.reward_mean"]]
    assert np.mean(rewards[-6:]) > np.mean(rewards[:6]) + 0.1, rewards
    assert len(result.samples) == 24 * 3 * SETTINGS.num_generations
    assert {"step", "reward", "advantage", "best", "text"} <= set(result.samples[0])
    assert [point["step"] for point in result.history["train.learning_rate"]] == list(range(1, 25))
