"""The dual-head model on the tiny random backbone: answer-tag state, item table, generation, save/load."""

import pytest
import torch
import torch.nn.functional as F

from r2ec_pipeline.model.adapters import AdapterSettings, attach_adapters
from r2ec_pipeline.model.backbone import BackboneError, load_causal_lm, load_tokenizer
from r2ec_pipeline.model.checkpoint import CheckpointError, load_dual_head, save_dual_head
from r2ec_pipeline.model.dual_head import DualHeadConfig, R2ecModel, position_ids
from r2ec_pipeline.model.generation import generate_reasoning

PROMPTS = ["<|im_start|>user\nHere is a user's history<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\nTitle: Toy Story 1995<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture
def model(tiny_backbone_dir, tmp_path):
    torch.manual_seed(0)
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterSettings(r=2, alpha=4))
    tokenizer = load_tokenizer(str(tiny_backbone_dir), tmp_path)
    return R2ecModel(lm.eval(), tokenizer, DualHeadConfig(backbone=str(tiny_backbone_dir))).eval()


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


def test_generation_stops_at_the_tag_and_logprobs_match_teacher_forcing(model):
    result = generate_reasoning(model, PROMPTS, max_new_tokens=12, do_sample=True, temperature=1.5, top_k=50,
                                generator=torch.Generator().manual_seed(0))
    for row, prompt in enumerate(PROMPTS):
        tokens = result.token_ids[row]
        assert result.texts[row].endswith("<answer>") or "<answer>" in result.texts[row][-12:]
        assert len(result.logprobs[row]) == len(tokens)
        full = model.tokenize([prompt])["input_ids"][0].tolist() + tokens
        ids = torch.tensor([full])
        logits = model.lm(input_ids=ids).logits[0, -len(tokens) - 1:-1].float() / 1.5
        expected = F.log_softmax(logits, dim=-1).gather(1, torch.tensor(tokens).view(-1, 1)).squeeze(1)
        torch.testing.assert_close(result.logprobs[row], expected, atol=1e-4, rtol=1e-4)
        # the final hidden state is the user state of prompt + reasoning: no second forward needed
        hidden = model.lm(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
        torch.testing.assert_close(result.final_hidden[row], hidden, atol=1e-4, rtol=1e-3)


def test_grouped_generation_equals_repeated_prompts_and_rows_ignore_their_batch(model):
    def streams(seeds):
        return [torch.Generator().manual_seed(seed) for seed in seeds]

    kwargs = dict(max_new_tokens=6, do_sample=True, temperature=1.5, top_k=50)
    grouped = generate_reasoning(model, PROMPTS, group=2, generator=streams([1, 2, 3, 4]), **kwargs)
    repeated = generate_reasoning(model, [p for p in PROMPTS for _ in range(2)], generator=streams([1, 2, 3, 4]),
                                  **kwargs)
    alone = generate_reasoning(model, PROMPTS[1:], group=2, generator=streams([3, 4]), **kwargs)
    assert grouped.token_ids == repeated.token_ids and grouped.token_ids[2:] == alone.token_ids
    for got, expected in zip(grouped.logprobs[2:], alone.logprobs, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grouped.final_hidden, repeated.final_hidden, atol=1e-4, rtol=1e-3)


def test_generation_appends_the_tag_at_the_length_cap(model):
    result = generate_reasoning(model, PROMPTS[:1], max_new_tokens=3)
    tag_ids = model.tokenizer("<answer>", add_special_tokens=False)["input_ids"]
    if result.truncated[0]:
        assert result.token_ids[0][-len(tag_ids):] == tag_ids and len(result.token_ids[0]) == 3 + len(tag_ids)
    assert result.texts[0].endswith("<answer>")


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


def test_checkpoint_from_another_backbone_is_refused(model, tmp_path):
    from tests.helpers import build_tiny_backbone
    from transformers import LlamaConfig, LlamaForCausalLM

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


class ScriptedLM(torch.nn.Module):
    """The tiny LM with its next-token logits pushed towards a fixed script, one token per call."""

    def __init__(self, inner, script):
        super().__init__()
        self.inner, self.script, self.calls, self.config = inner, script, 0, inner.config

    def forward(self, **kwargs):
        out = self.inner(**kwargs)
        if self.calls < len(self.script):
            out.logits[:, -1, self.script[self.calls]] += 1e4
        self.calls += 1
        return out


def test_generation_stops_right_after_the_tag_it_produced(model):
    encode = lambda text: model.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    script = encode("step by step") + encode(" <answer>") + encode(" and more text")
    model.lm = ScriptedLM(model.lm, script)
    result = generate_reasoning(model, PROMPTS[:1], max_new_tokens=50)
    expected = encode("step by step") + encode(" <answer>")
    assert result.token_ids[0] == expected and not result.truncated[0]
    assert result.texts[0] == "step by step <answer>"
    ids = torch.tensor([model.tokenize(PROMPTS[:1])["input_ids"][0].tolist() + expected])
    hidden = model.lm.inner(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
    torch.testing.assert_close(result.final_hidden[0], hidden, atol=1e-4, rtol=1e-3)


def test_shared_prefix_encoding_equals_plain_encoding(model):
    texts = [PROMPTS[1] + "Title: Babe<answer>", PROMPTS[1] + "Title: GoldenEye 1995 Action<answer>",
             PROMPTS[1] + "x<answer>"]
    torch.testing.assert_close(model.encode_shared_prefix(texts, min_prefix=4), model.encode(texts), atol=1e-5, rtol=1e-4)


def test_shared_prefix_encoding_passes_gradients_to_the_adapters(model):
    model.train()
    texts = [PROMPTS[1] + "Title: Babe<answer>", PROMPTS[1] + "Title: Copycat<answer>"]
    model.encode_shared_prefix(texts, min_prefix=4).sum().backward()
    grads = [p.grad for n, p in model.lm.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_full_finetune_saves_every_weight_and_reloads_identically(tiny_backbone_dir, tmp_path):
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterSettings(full_finetune=True))
    assert all(p.requires_grad for p in lm.parameters())
    model = R2ecModel(lm.eval(), load_tokenizer(str(tiny_backbone_dir), tmp_path),
                      DualHeadConfig(backbone=str(tiny_backbone_dir))).eval()
    model.build_item_table([1, 2], [PROMPTS[0] + "<answer>", PROMPTS[1] + "<answer>"], progress=False)
    path = save_dual_head(model, tmp_path / "full")
    assert (path / "backbone" / "model.safetensors").is_file() and not (path / "adapter").exists()
    loaded = load_dual_head(path, tmp_path).eval()
    state = model.encode([PROMPTS[0] + "<answer>"])
    torch.testing.assert_close(loaded.score(loaded.encode([PROMPTS[0] + "<answer>"])), model.score(state))


def test_top_layers_puts_adapters_only_on_the_top_layers(tiny_backbone_dir, tmp_path):
    lm = attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterSettings(top_layers=1))
    adapted = {name.split(".layers.")[1].split(".")[0] for name, _ in lm.named_parameters() if "lora_" in name}
    assert adapted == {"1"}  # the tiny backbone has layers 0 and 1
    with pytest.raises(ValueError, match="top_layers must be in 1..2"):
        attach_adapters(load_causal_lm(str(tiny_backbone_dir), tmp_path), AdapterSettings(top_layers=5))


def test_direct_state_read_off_the_prompt_cache_equals_encoding_prompt_plus_tag(model):
    with torch.no_grad():  # non-zero adapters, so the adapter path is part of the comparison
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    plain = generate_reasoning(model, PROMPTS, max_new_tokens=5)
    both = generate_reasoning(model, PROMPTS, max_new_tokens=5, direct=True)
    expected = model.encode(model.user_texts(PROMPTS))
    torch.testing.assert_close(both.direct_hidden, expected, atol=1e-4, rtol=1e-3)
    assert both.token_ids == plain.token_ids  # the tag was cropped off the cache before generating
    torch.testing.assert_close(both.final_hidden, plain.final_hidden, atol=1e-4, rtol=1e-3)
