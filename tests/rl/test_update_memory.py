"""The policy update's memory levers change nothing but memory: micro-batches, chunked log-probs, checkpointing."""

import copy

import pytest
import torch
import torch.nn.functional as F

from r2ec_pipeline.model.logprobs import token_logprobs
from r2ec_pipeline.rl.policy import policy_forward
from r2ec_pipeline.rl.step import policy_update, rollout
from tests.rl.toy_task import SETTINGS, toy_batch, toy_model


def _update_gradients(model, paths, settings):
    """Gradients and metrics of one update (lr 0 and no clipping: the gradient is left as computed)."""
    model = copy.deepcopy(model)
    parameters = [p for p in model.lm.parameters() if p.requires_grad]
    metrics = policy_update(model, torch.optim.SGD(parameters, lr=0.0), toy_batch(), copy.deepcopy(paths), settings)
    return {n: p.grad.clone() for n, p in model.lm.named_parameters() if p.requires_grad}, metrics


@pytest.mark.parametrize(
    ("micro_batch", "checkpointing", "softmax"),
    [(1, False, "in_batch"), (2, False, "in_batch"), (2, True, "in_batch"), (2, False, "catalog")],
)
def test_micro_batched_update_has_the_one_shot_gradient(
    tiny_backbone_dir, tmp_path, micro_batch, checkpointing, softmax
):
    model = toy_model(tiny_backbone_dir, tmp_path)
    settings = SETTINGS.model_copy(
        update={"max_grad_norm": 1e9, "relabel_topk": 2, "beta": 0.1, "item_softmax": softmax}
    )
    paths = rollout(model, toy_batch(), settings, torch.Generator().manual_seed(0))
    one_shot, expected = _update_gradients(model, paths, settings)
    micro = settings.model_copy(update={"policy_micro_batch": micro_batch})
    model.set_gradient_checkpointing(checkpointing)
    summed, metrics = _update_gradients(model, paths, micro)
    assert any(g.abs().sum() > 0 for g in one_shot.values())
    for name, grad in one_shot.items():
        torch.testing.assert_close(summed[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    for key in (
        "loss",
        "token_loss",
        "item_loss",
        "kl",
        "clip_fraction",
        "item_ratio_mean",
        "item_logprob",
        "grad_norm",
    ):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), key


def test_chunked_logprobs_equal_the_full_vocabulary_ones_with_their_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    ids = torch.randint(0, 50, (3, 7))
    expected = F.log_softmax(head(hidden).float() / 1.5, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    expected.sum().backward()
    want_hidden, want_head = hidden.grad.clone(), head.weight.grad.clone()
    hidden.grad, head.weight.grad = None, None
    chunked = token_logprobs(hidden, ids, head, 1.5, chunk_tokens=6)  # 2 positions × 3 rows per chunk
    chunked.sum().backward()
    torch.testing.assert_close(chunked, expected)
    torch.testing.assert_close(hidden.grad, want_hidden)
    torch.testing.assert_close(head.weight.grad, want_head)


def test_gradient_checkpointing_gives_the_same_logprobs_states_and_gradient(tiny_backbone_dir, tmp_path):
    """HF drops KV caches under checkpointing: the full-sequence path must give what the cached one gives."""
    model = toy_model(tiny_backbone_dir, tmp_path)
    batch = toy_batch()
    paths = rollout(model, batch, SETTINGS, torch.Generator().manual_seed(0))
    results = []
    for checkpointing in (False, True):
        current = copy.deepcopy(model)
        current.set_gradient_checkpointing(checkpointing)
        current.lm.train()
        assert current.recomputes_activations == checkpointing
        logprobs, states = policy_forward(
            current, batch.prompts, paths.token_ids, SETTINGS.num_generations, SETTINGS.temperature
        )
        items = current.encode_shared_prefix(batch.target_prompts)
        ((logprobs * paths.mask).sum() + states.sum() + items.sum()).backward()
        grads = {n: p.grad for n, p in current.lm.named_parameters() if p.requires_grad}
        results.append((logprobs * paths.mask, states, items, grads))
    (lp, st, it, grads), (lp_gc, st_gc, it_gc, grads_gc) = results
    torch.testing.assert_close(lp_gc, lp, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(st_gc, st, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(it_gc, it, atol=1e-5, rtol=1e-4)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_gc[name], grad, atol=1e-5, rtol=1e-4, msg=name)
