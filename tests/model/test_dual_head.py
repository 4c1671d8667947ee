"""The dual-head model on the tiny random backbone: answer-tag state, item table, generation, save/load."""

import json

import pytest
import torch

from r2ec_pipeline.config import AdapterParams
from r2ec_pipeline.model.adapters import attach_adapters
from r2ec_pipeline.model.backbone import BackboneError, load_causal_lm, load_tokenizer
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel, position_ids
from r2ec_pipeline.model.dual_head_io import (
    ADAPTER_CONFIG_FILE,
    CheckpointError,
    load_dual_head,
    save_dual_head,
    stabilize_adapter_config,
)
from tests.model.conftest import PROMPTS


def _unpadded_state(model, text):
    batch = model.tokenize([text])
    return model.last_hidden(batch["input_ids"], batch["attention_mask"])[0]


@pytest.mark.parametrize("side", ["left", "right"])
def test_answer_state_is_the_same_with_left_and_right_padding(model, side):
    texts = [PROMPTS[0] + "<answer>", PROMPTS[1] + "a much longer reasoning text here <answer>"]
    batched = model.encode(texts, padding_side=side)
    for row, text in enumerate(texts):
        torch.testing.assert_close(batched[row], _unpadded_state(model, text), atol=1e-5, rtol=1e-4)


def test_answer_state_is_read_at_the_last_token_of_the_tag(model):
    text = PROMPTS[0] + "<answer>"
    batch = model.tokenize([text])
    out = model.lm(**batch, position_ids=position_ids(batch["attention_mask"]), output_hidden_states=True)
    torch.testing.assert_close(model.encode([text])[0], out.hidden_states[-1][0, -1])
    assert model.tokenizer.decode(batch["input_ids"][0, -3:]).endswith(">")


def test_item_table_rows_follow_item_ids_and_row_zero_is_empty(model):
    table = model.build_item_table([2, 1], [PROMPTS[0] + "<answer>", PROMPTS[1] + "<answer>"], progress=False)
    assert table.shape == (3, model.lm.config.hidden_size) and torch.all(table[0] == 0)
    torch.testing.assert_close(table[2], _unpadded_state(model, PROMPTS[0] + "<answer>"), atol=1e-5, rtol=1e-4)


def test_history_items_are_never_ranked(model):
    model.build_item_table([1, 2, 3], [p + "<answer>" for p in (PROMPTS[0], PROMPTS[1], "x")], progress=False)
    scores = model.score(model.encode([PROMPTS[0] + "<answer>"]), histories=[[1, 3]])
    assert torch.isinf(scores[0, [0, 1, 3]]).all() and torch.isfinite(scores[0, 2])


def test_save_then_load_gives_identical_scores(model, tiny_backbone_dir, tmp_path):
    model.build_item_table([1, 2], [PROMPTS[0] + "<answer>", PROMPTS[1] + "<answer>"], progress=False)
    with torch.no_grad():  # move the adapters away from their zero init so the test means something
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.add_(0.05)
    before = model.score(model.encode([PROMPTS[0] + "<answer>"]))
    path = save_dual_head(model, tmp_path / "ckpt")
    assert {p.name for p in path.iterdir()} == {"r2ec_config.json", "adapter", "item_table.safetensors", "tokenizer"}
    assert not list(path.rglob("*.bin")) and not list(path.rglob("*.pt"))
    loaded = load_dual_head(path, tmp_path).eval()
    after = loaded.score(loaded.encode([PROMPTS[0] + "<answer>"]))
    torch.testing.assert_close(after, before)


def test_adapter_config_lists_modules_sorted_so_equal_weights_give_equal_files(model, tmp_path):
    """peft writes target_modules in a set's order, which string hashing changes per process (a new DVC hash
    for the same adapters on every run); the saved config is sorted and keyed in order."""
    config = json.loads((save_dual_head(model, tmp_path / "ckpt") / "adapter" / ADAPTER_CONFIG_FILE).read_text())
    assert len(config["target_modules"]) > 1 and config["target_modules"] == sorted(config["target_modules"])

    written = tmp_path / "adapter_config.json"
    written.write_text(json.dumps({"r": 8, "target_modules": ["v_proj", "q_proj", "k_proj"], "alpha": 16}))
    stabilize_adapter_config(written)
    assert written.read_text() == (
        '{\n  "alpha": 16,\n  "r": 8,\n  "target_modules": [\n    "k_proj",\n    "q_proj",\n    "v_proj"\n  ]\n}\n'
    )


def test_checkpoint_from_another_backbone_is_refused(model, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.helpers import build_tiny_backbone

    save_dual_head(model, tmp_path / "ckpt")
    other = build_tiny_backbone(tmp_path / "other")
    config = LlamaConfig.from_pretrained(other)
    config.num_hidden_layers = 3
    LlamaForCausalLM(config).save_pretrained(other)
    with pytest.raises(CheckpointError, match="trained on another backbone.*num_hidden_layers"):
        load_dual_head(tmp_path / "ckpt", tmp_path, backbone=str(other))


def test_missing_backbone_path_is_named(tmp_path):
    with pytest.raises(BackboneError, match="backbone path '/no/such/model' does not exist"):
        load_causal_lm("/no/such/model", tmp_path)


def test_shared_prefix_encoding_equals_plain_encoding(model):
    texts = [
        PROMPTS[1] + "Title: Babe<answer>",
        PROMPTS[1] + "Title: GoldenEye 1995 Action<answer>",
        PROMPTS[1] + "x<answer>",
    ]
    torch.testing.assert_close(
        model.encode_shared_prefix(texts, min_prefix=4), model.encode(texts), atol=1e-5, rtol=1e-4
    )


def test_a_prefix_run_once_serves_every_batch_and_is_left_unchanged(model):
    texts = [
        PROMPTS[1] + "Title: Babe<answer>",
        PROMPTS[1] + "Title: GoldenEye 1995 Action<answer>",
        PROMPTS[1] + "x<answer>",
    ]
    prefix = model.shared_prefix(texts, min_prefix=4)
    assert prefix is not None and len(prefix.ids) >= 4
    before = [layer.keys.clone() for layer in prefix.cache.layers]
    batches = [
        model.encode_shared_prefix(texts[:2], prefix=prefix),
        model.encode_shared_prefix(texts[2:], prefix=prefix),
    ]
    torch.testing.assert_close(torch.cat(batches), model.encode(texts), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(layer.keys, kept) for layer, kept in zip(prefix.cache.layers, before, strict=True))


def test_a_prefix_the_texts_do_not_start_with_is_not_used(model):
    prefix = model.shared_prefix([PROMPTS[0] + "a<answer>", PROMPTS[0] + "b<answer>"], min_prefix=4)
    texts = [PROMPTS[1] + "Title: Babe<answer>", PROMPTS[1] + "x<answer>"]
    torch.testing.assert_close(
        model.encode_shared_prefix(texts, min_prefix=4, prefix=prefix), model.encode(texts), atol=1e-5, rtol=1e-4
    )


def test_shared_prefix_encoding_passes_gradients_to_the_adapters(model):
    model.train()
    texts = [PROMPTS[1] + "Title: Babe<answer>", PROMPTS[1] + "Title: Copycat<answer>"]
    model.encode_shared_prefix(texts, min_prefix=4).sum().backward()
    grads = [p.grad for n, p in model.lm.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_full_finetune_saves_every_weight_and_reloads_identically(tiny_backbone_dir, tmp_path):
    lm = attach_adapters(
        load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(full_finetune=True, top_layers=None)
    )
    assert all(p.requires_grad for p in lm.parameters())
    model = R2ecModel(
        lm.eval(), load_tokenizer(str(tiny_backbone_dir), tmp_path), DualHeadConfig(backbone=str(tiny_backbone_dir))
    ).eval()
    model.build_item_table([1, 2], [PROMPTS[0] + "<answer>", PROMPTS[1] + "<answer>"], progress=False)
    path = save_dual_head(model, tmp_path / "full")
    assert (path / "backbone" / "model.safetensors").is_file() and not (path / "adapter").exists()
    loaded = load_dual_head(path, tmp_path).eval()
    state = model.encode([PROMPTS[0] + "<answer>"])
    torch.testing.assert_close(loaded.score(loaded.encode([PROMPTS[0] + "<answer>"])), model.score(state))


def test_top_layers_puts_adapters_only_on_the_top_layers(tiny_backbone_dir, tmp_path):
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(top_layers=1))
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in lm.named_parameters() if "lora_" in name}
    assert adapted == {"1"}  # the tiny backbone has layers 0 and 1
    with pytest.raises(ValueError, match="top_layers must be in 1..2"):
        attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterParams(top_layers=5))
