"""train_sft's selection loop: validation schedule, early stopping, kept weights (tiny random backbone)."""

import torch

from r2ec_pipeline.config import SFTParams as SFTSettings
from r2ec_pipeline.model.dual_head_io import trainable_state
from r2ec_pipeline.model.sft import train_sft

ITEMS = {
    1: "<|im_start|>user\nTitle: A<|im_end|>\n",
    2: "<|im_start|>user\nTitle: B<|im_end|>\n",
    3: "<|im_start|>user\nTitle: C<|im_end|>\n",
    4: "<|im_start|>user\nTitle: D<|im_end|>\n",
}
USERS = ["history: A", "history: B", "history: C", "history: A B"]


def _scripted(values):
    """A validation that returns the given N@10 values in turn, and the model's weights at each call."""
    calls, states = iter(values), []

    def evaluate(model):
        states.append({k: v.clone() for k, v in trainable_state(model).items() if "lora" in k})
        return {"ndcg_at_10": next(calls)}

    return evaluate, states


def test_early_stopping_stops_after_patience_validations_and_keeps_the_best(model):
    # validations at steps 0, 2, 4, 6: 0.1, 0.3 (best), 0.2, 0.25 → two without a better value: stop at step 6
    evaluate, states = _scripted([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    settings = SFTSettings(
        steps=20, batch_size=2, negatives=2, eval_every=2, early_stopping_patience=2, learning_rate=1e-2
    )
    result = train_sft(model, USERS, [1, 2, 3, 4], ITEMS, evaluate, settings)
    assert result.steps_run == 6 and result.best_step == 2 and len(states) == 4
    assert [p["step"] for p in result.history["train.loss"]] == [1, 2, 3, 4, 5, 6]
    assert result.best_metrics == {"ndcg_at_10": 0.3}
    kept = {k: v for k, v in trainable_state(model).items() if "lora" in k}
    assert all(torch.equal(kept[k], states[1][k]) for k in kept)  # the weights validated at step 2


def test_without_patience_every_step_runs(model):
    evaluate, _ = _scripted([0.1, 0.0, 0.0, 0.0])
    result = train_sft(
        model,
        USERS,
        [1, 2, 3, 4],
        ITEMS,
        evaluate,
        SFTSettings(steps=5, batch_size=2, negatives=2, eval_every=2, learning_rate=1e-2),
    )
    assert result.steps_run == 5 and result.best_step == 0


def test_chunked_item_backward_gives_the_one_pass_gradient(model):
    """The gradient-cache path (items re-encoded in chunks of 3) sums to the one-graph gradient."""
    from r2ec_pipeline.model.losses import in_batch_infonce
    from r2ec_pipeline.model.sft import chunked_item_backward

    model.lm.train()
    items = [ITEMS[i] for i in (1, 2, 3, 4, 2, 1, 3)]
    ids = torch.tensor([1, 2, 3, 4, 2, 1, 3])
    gradients, losses = [], []
    for chunk in (None, 3):
        model.lm.zero_grad(set_to_none=True)
        users = model.encode_shared_prefix(model.user_texts(USERS), remember=False)
        losses.append(
            chunked_item_backward(model, users, items, chunk, lambda u, v: in_batch_infonce(u, v, ids[:4], 0.1, ids))
        )
        gradients.append({n: p.grad.clone() for n, p in model.lm.named_parameters() if p.requires_grad})
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    assert any(g.abs().sum() > 0 for g in gradients[0].values())
    for name, one_pass in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], one_pass, atol=1e-5, rtol=1e-4)


def test_a_time_budget_stops_training_after_the_step_that_spends_it(model):
    result = train_sft(
        model, USERS, [1, 2, 3, 4], ITEMS, None, SFTSettings(steps=50, batch_size=2, negatives=2, max_seconds=1e-9)
    )
    assert result.steps_run == 1 and [p["step"] for p in result.history["train.loss"]] == [1]
    assert result.best_step == 1 and model.num_items == 4  # the item table is built for the weights kept
