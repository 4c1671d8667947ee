"""The batched SFT engine: same loss and gradient as the prefix-cache engine, bucketing, master weights."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from r2ec_pipeline.config import AdapterParams, SFTParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel
from r2ec_pipeline.model.dual_head_io import trainable_state
from r2ec_pipeline.model.losses import catalog_infonce, in_batch_infonce
from r2ec_pipeline.model.sft import chunked_item_backward, train_sft
from r2ec_pipeline.model.sft_batched import (
    HistoryIndex,
    MasterWeights,
    SFTData,
    batched_loss_backward,
    full_catalog_infonce,
    length_batches,
)
from r2ec_pipeline.model.training_state import CheckpointStore, ResumeError

ITEMS = {
    1: "<|im_start|>user\nTitle: A<|im_end|>\n",
    2: "<|im_start|>user\nTitle: B Comedy<|im_end|>\n",
    3: "<|im_start|>user\nTitle: C<|im_end|>\n",
    4: "<|im_start|>user\nTitle: Toy Story 1995<|im_end|>\n",
    5: "<|im_start|>user\nTitle: E Drama<|im_end|>\n",
}
USERS = ["history: A", "history: B Comedy Drama", "history: C", "history: A B"]
TARGETS = [1, 2, 3, 4]
HISTORIES = [[2], [1, 5], [], [1, 2, 3]]


def _gradients(model):
    grads = {n: p.grad.clone() for n, p in model.lm.named_parameters() if p.requires_grad}
    model.lm.zero_grad(set_to_none=True)
    return grads


def _assert_same(a, b):
    assert any(g.abs().sum() > 0 for g in a.values())
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [None, 2])
def test_sampled_softmax_matches_the_prefix_cache_engine(model, chunk):
    model.lm.train()
    negatives = np.array([5, 2])
    columns = torch.tensor(TARGETS + negatives.tolist())
    users = model.encode_shared_prefix(model.user_texts(USERS), remember=False)
    old = chunked_item_backward(
        model,
        users,
        [ITEMS[int(i)] for i in columns],
        chunk,
        lambda u, v: in_batch_infonce(u, v, columns[:4], 0.02, columns),
    )
    expected = _gradients(model)
    data = SFTData.build(model, USERS, TARGETS, ITEMS, None)
    new = batched_loss_backward(
        model, data, np.arange(4), SFTParams(engine="batched", item_chunk_size=chunk), negatives
    )
    torch.testing.assert_close(new, old, atol=1e-6, rtol=1e-5)
    _assert_same(expected, _gradients(model))


@pytest.mark.parametrize("chunk, groups", [(None, 1), (None, 3), (2, 4)])
def test_full_softmax_equals_the_catalog_loss_and_takes_every_items_gradient(model, chunk, groups):
    """Loss: the catalog engine's on a fresh table. Gradient: that loss with every item's row encoded with
    gradient (the catalog engine passes it through the targets' rows only, by design). The same whether the
    catalog runs as one padded batch or in length groups, whole or in chunks."""
    model.lm.train()
    ids = sorted(ITEMS)
    with torch.no_grad():
        model.build_item_table(ids, [ITEMS[i] for i in ids], progress=False)
        model.lm.train()
        users = model.encode(model.user_texts(USERS))
        bank = catalog_infonce(
            users, model.encode([ITEMS[t] for t in TARGETS]), torch.tensor(TARGETS), model.item_table, 0.02, HISTORIES
        )
    users = model.encode(model.user_texts(USERS))
    items = model.encode([ITEMS[i] for i in ids])  # every row with gradient
    logits = F.normalize(users, dim=-1) @ F.normalize(items, dim=-1).T / 0.02
    column = {item: c for c, item in enumerate(ids)}
    for row, earlier in enumerate(HISTORIES):
        logits[row, [column[i] for i in earlier]] = float("-inf")
    reference = F.cross_entropy(logits, torch.tensor([column[t] for t in TARGETS]))
    reference.backward()
    expected = _gradients(model)
    data = SFTData.build(model, USERS, TARGETS, ITEMS, HISTORIES)
    new = batched_loss_backward(
        model,
        data,
        np.arange(4),
        SFTParams(engine="batched", softmax="full", item_chunk_size=chunk, catalog_groups=groups),
    )
    torch.testing.assert_close(new, bank, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new, reference.detach(), atol=1e-5, rtol=1e-5)
    _assert_same(expected, _gradients(model))


@pytest.mark.parametrize("history", [[1, 9], [0], [1, -2]])  # past the catalog, the padding id, negative
def test_history_ids_outside_the_catalog_raise_rather_than_mask_another_column(history):
    with pytest.raises(ValueError, match="unknown item ids in history"):
        HistoryIndex.of([[2], history], torch.tensor([-1, 0, 1, 2, 3, 4]))


def test_history_mask_marks_each_rows_earlier_items_but_never_lets_the_target_go():
    column_of = torch.tensor([-1, 0, 1, 2, 3, 4])
    index = HistoryIndex.of(HISTORIES, column_of)
    mask = index.mask(np.array([3, 1, 2]), 5)
    assert mask.tolist() == [[True, True, True, False, False], [True, False, False, False, True], [False] * 5]
    # the target is never excluded, even when it is among the earlier items
    loss = full_catalog_infonce(
        torch.eye(2, 3),
        torch.eye(3),
        torch.tensor([0, 1]),
        1.0,
        torch.tensor([[True, True, False], [False, True, False]]),
    )
    by_hand = -np.mean([np.log(np.e / (np.e + 1)), np.log(np.e / (np.e + 2))])
    assert loss.item() == pytest.approx(by_hand, abs=1e-6)


def test_length_batches_visit_every_sample_exactly_once_per_epoch_by_similar_length():
    lengths = np.random.default_rng(1).integers(5, 200, size=1003)
    batches = length_batches(lengths, 64, np.random.default_rng(0))
    visited = np.concatenate(batches)
    assert sorted(visited.tolist()) == list(range(1003)) and len(batches) == 16
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < np.ptp(lengths) / 4  # bucketed: a batch's lengths are close
    again = length_batches(lengths, 64, np.random.default_rng(1))
    assert [b.tolist() for b in again] != [b.tolist() for b in batches]  # a new order each epoch


def test_master_weights_update_in_float32_and_compute_in_bfloat16():
    weight = torch.nn.Parameter(torch.ones(4))
    masters = MasterWeights([weight], torch.bfloat16)
    assert weight.dtype == torch.bfloat16 and masters.masters[0].dtype == torch.float32
    optimizer = torch.optim.SGD(masters.masters, lr=1e-4)
    for _ in range(3):  # 1 − 1e-4 rounds back to 1 in bfloat16; the masters keep it
        (weight.float() * 1.0).sum().backward()
        masters.step(optimizer, max_grad_norm=100.0)
    assert torch.allclose(masters.masters[0], torch.full((4,), 1 - 3e-4))
    assert weight.grad is None and torch.equal(weight, torch.ones(4, dtype=torch.bfloat16))
    masters.release()
    assert weight.dtype == torch.float32 and torch.allclose(weight, torch.full((4,), 1 - 3e-4))


def test_batched_engine_trains_whole_epochs_and_keeps_the_best_validated_weights(model):
    values = iter([0.1, 0.5, 0.2, 0.3])
    settings = SFTParams(
        engine="batched",
        softmax="full",
        batch_size=3,
        epochs=2,
        eval_every=2,
        learning_rate=1e-2,
        adapter_dtype="bfloat16",
    )
    result = train_sft(model, USERS, TARGETS, ITEMS, lambda m: {"ndcg_at_10": next(values)}, settings, HISTORIES)
    assert result.steps_run == 4 and result.best_step == 2  # 2 epochs of ceil(4 / 3) batches
    assert [p["step"] for p in result.history["train.loss"]] == [1, 2, 3, 4]
    assert {p.dtype for n, p in model.lm.named_parameters() if p.requires_grad} == {torch.float32}


def test_batched_engine_refuses_gradient_checkpointing_with_shared_prefixes(model):
    settings = SFTParams(engine="batched", softmax="full", batch_size=3, steps=1, share_prefix=["items"])
    model.set_gradient_checkpointing(True)
    try:
        with pytest.raises(ValueError, match=r"model\.gradient_checkpointing.*sft\.share_prefix"):
            train_sft(model, USERS, TARGETS, ITEMS, None, settings, HISTORIES)
    finally:
        model.set_gradient_checkpointing(False)


def test_full_softmax_needs_the_batched_engine():
    with pytest.raises(ValueError, match="engine"):
        SFTParams(softmax="full")
    with pytest.raises(ValueError, match="engine"):
        SFTParams(softmax="catalog", engine="batched")


def test_a_shared_prefix_runs_once_and_gives_the_full_passes_states_and_gradients(model):
    from r2ec_pipeline.model.sft_batched import TokenTable, encode_rows

    texts = [
        f"<|im_start|>user\nHere is a user's history of rated items, oldest first.\n{tail}<|im_end|>\n"
        for tail in ("A", "B Comedy Drama", "Toy Story 1995", "C")
    ]
    table = TokenTable.of(model, texts)
    assert len(table.prefix) >= 8 and table.lengths.min() >= 1
    model.lm.train()
    rows = np.array([2, 0, 3])
    shared = encode_rows(model, table, rows)
    (shared**2).sum().backward()
    expected_grads = _gradients(model)
    full = model.encode([texts[i] for i in rows])
    (full**2).sum().backward()
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-4)
    _assert_same(_gradients(model), expected_grads)
    plain = TokenTable.of(model, texts, share_prefix=False)
    assert plain.prefix == [] and torch.allclose(encode_rows(model, plain, rows), full, atol=1e-5)


def test_the_catalog_in_length_groups_gives_one_passs_states_and_gradients(model):
    from r2ec_pipeline.model.sft_batched import TokenTable, encode_catalog, encode_rows, length_groups

    texts = [ITEMS[i] for i in sorted(ITEMS)]
    table = TokenTable.of(model, texts)
    runs = length_groups(table.lengths, 2)
    assert sorted(np.concatenate(runs).tolist()) == list(range(len(texts)))
    assert all(table.lengths[a].max() <= table.lengths[b].min() for a, b in zip(runs, runs[1:], strict=False))
    model.lm.train()
    one = encode_rows(model, table, np.arange(len(texts)))
    (one**2).sum().backward()
    expected = _gradients(model)
    grouped = encode_catalog(model, table, groups=2)
    (grouped**2).sum().backward()
    torch.testing.assert_close(grouped, one, atol=1e-5, rtol=1e-4)
    _assert_same(expected, _gradients(model))


@pytest.mark.parametrize("share_prefix", [[], ["items"], ["users"]])
def test_full_softmax_loss_and_gradient_do_not_depend_on_which_prefixes_are_shared(model, share_prefix):
    users = [f"<|im_start|>user\nHere is a user's history of rated items, oldest first.\n{h}" for h in USERS]
    model.lm.train()
    settings = SFTParams(engine="batched", softmax="full", item_chunk_size=None)
    both = SFTData.build(model, users, TARGETS, ITEMS, HISTORIES)
    loss = batched_loss_backward(model, both, np.arange(4), settings)
    expected = _gradients(model)
    some = SFTData.build(model, users, TARGETS, ITEMS, HISTORIES, share_prefix)
    assert bool(both.users.prefix) and bool(both.items.prefix)
    assert bool(some.users.prefix) == ("users" in share_prefix) and bool(some.items.prefix) == ("items" in share_prefix)
    torch.testing.assert_close(batched_loss_backward(model, some, np.arange(4), settings), loss, atol=1e-5, rtol=1e-5)
    _assert_same(expected, _gradients(model))


def _fresh_model(tiny_backbone_dir, cache):
    torch.manual_seed(0)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), cache), AdapterParams(r=2, alpha=4, top_layers=None))
    tokenizer = load_tokenizer(str(tiny_backbone_dir), cache)
    return R2ecModel(lm.eval(), tokenizer, DualHeadConfig(backbone=str(tiny_backbone_dir))).eval()


@pytest.mark.parametrize(("softmax", "dtype"), [("full", "bfloat16"), ("sampled", "float32")])
def test_two_steps_saved_then_two_more_resumed_elsewhere_equal_four_steps_straight(
    tiny_backbone_dir, tmp_path, softmax, dtype
):
    """Masters, AdamW moments, the batch order mid-epoch (3 batches an epoch) and the negatives' generator
    travel in the checkpoint: losses and final weights as one uninterrupted run's (1e-6)."""
    values = [0.1, 0.2, 0.3, 0.4]  # the last step validates best: its weights are returned
    settings = SFTParams(
        engine="batched",
        softmax=softmax,
        batch_size=2,
        negatives=2,
        steps=4,
        eval_every=2,
        learning_rate=1e-2,
        adapter_dtype=dtype,
        item_chunk_size=None,
        save_steps=2,
    )
    scores = iter(values)
    straight_model = _fresh_model(tiny_backbone_dir, tmp_path / "a")
    straight = train_sft(
        straight_model,
        USERS,
        TARGETS,
        ITEMS,
        lambda m: {"ndcg_at_10": next(scores)},
        settings,
        HISTORIES,
        CheckpointStore(tmp_path / "a" / "ckpt"),
    )

    scores = iter(values)
    first = CheckpointStore(tmp_path / "b" / "ckpt")
    two = settings.model_copy(update={"steps": 2})
    train_sft(
        _fresh_model(tiny_backbone_dir, tmp_path / "b"),
        USERS,
        TARGETS,
        ITEMS,
        lambda m: {"ndcg_at_10": next(scores)},
        two,
        HISTORIES,
        first,
    )
    moved = tmp_path / "elsewhere" / "checkpoint-2"
    shutil.copytree(first.latest(), moved)
    shutil.rmtree(tmp_path / "b")
    model = _fresh_model(tiny_backbone_dir, tmp_path / "c")
    resumed = train_sft(
        model,
        USERS,
        TARGETS,
        ITEMS,
        lambda m: {"ndcg_at_10": next(scores)},
        settings.model_copy(update={"resume_from_checkpoint": str(moved)}),
        HISTORIES,
        CheckpointStore(tmp_path / "c" / "ckpt"),
    )
    losses = [p["value"] for p in resumed.history["train.loss"]]
    assert losses == pytest.approx([p["value"] for p in straight.history["train.loss"]], abs=1e-6)
    assert resumed.best_step == straight.best_step == 4 and resumed.steps_run == 4
    # the selected (step 4) weights; the table is the validation's, which this stand-in does not encode
    ours, theirs = trainable_state(model, with_table=False), trainable_state(straight_model, with_table=False)
    assert max((ours[name] - theirs[name]).abs().max().item() for name in ours) < 1e-6


def test_a_time_budget_stops_sft_with_a_checkpoint_the_next_run_finishes(tiny_backbone_dir, tmp_path):
    settings = SFTParams(engine="batched", softmax="full", batch_size=2, steps=4, learning_rate=1e-2, save_steps=1)
    straight_model = _fresh_model(tiny_backbone_dir, tmp_path / "a")
    train_sft(straight_model, USERS, TARGETS, ITEMS, None, settings, HISTORIES)
    store = CheckpointStore(tmp_path / "ckpt")
    budget = settings.model_copy(update={"max_seconds": 1e-9})  # read at each save: out of time after step 1
    stopped = train_sft(
        _fresh_model(tiny_backbone_dir, tmp_path / "b"), USERS, TARGETS, ITEMS, None, budget, HISTORIES, store
    )
    assert stopped.steps_run == 1 and [p.name for p in store.checkpoints()] == ["checkpoint-1"]
    model = _fresh_model(tiny_backbone_dir, tmp_path / "c")
    finished = train_sft(
        model,
        USERS,
        TARGETS,
        ITEMS,
        None,
        settings.model_copy(update={"resume_from_checkpoint": True}),
        HISTORIES,
        store,
    )
    assert finished.steps_run == 4
    ours, theirs = trainable_state(model), trainable_state(straight_model)
    assert max((ours[name] - theirs[name]).abs().max().item() for name in ours) < 1e-6  # table encoded at the end


def test_resuming_sft_under_another_batch_size_or_engine_is_refused(tiny_backbone_dir, tmp_path):
    settings = SFTParams(engine="batched", softmax="full", batch_size=2, steps=2, save_steps=1)
    store = CheckpointStore(tmp_path / "ckpt")
    train_sft(_fresh_model(tiny_backbone_dir, tmp_path / "a"), USERS, TARGETS, ITEMS, None, settings, HISTORIES, store)
    with pytest.raises(ResumeError, match="batch_size"):
        again = settings.model_copy(update={"batch_size": 3, "resume_from_checkpoint": True})
        train_sft(_fresh_model(tiny_backbone_dir, tmp_path / "b"), USERS, TARGETS, ITEMS, None, again, HISTORIES, store)
    with pytest.raises(ValueError, match="need sft.engine: batched"):
        SFTParams(engine="prefix_cache", save_steps=2)


def test_samples_run_counts_each_steps_rows_the_short_last_batch_included(model):
    """4 samples in batches of 3: an epoch is a batch of 3 and one of 1, so two epochs run 4 steps and
    8 rows, not steps × batch_size (12)."""
    settings = SFTParams(engine="batched", softmax="full", batch_size=3, epochs=2, learning_rate=1e-2)
    result = train_sft(model, USERS, TARGETS, ITEMS, None, settings, HISTORIES)
    assert result.steps_run == 4 and result.samples_run == 8
    assert result.samples_per_second == pytest.approx(8 / (result.seconds_per_step * 4))
