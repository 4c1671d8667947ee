"""RecPO's starting policy: the SFT checkpoint, or (none) the backbone loaded from its folder only then."""

from pathlib import Path

from r2ec_pipeline.model.backbone import load_tokenizer
from r2ec_pipeline.pipelines.shared.recpo import start_policy

MODEL = {"similarity_temperature": 0.1, "adapters": {"r": 2, "alpha": 4, "top_layers": 1}}


def test_without_sft_the_policy_is_built_from_the_backbone_folder(tiny_backbone_dir: Path, tmp_path: Path):
    tokenizer = load_tokenizer(str(tiny_backbone_dir), tmp_path)
    model = start_policy(
        None,
        tiny_backbone_dir,
        tokenizer,
        {**MODEL, "backbone": str(tiny_backbone_dir)},
        {"answer_tag": "<rec>"},
        {"similarity_temperature": 0.05},
    )
    assert model.config.similarity_temperature == 0.05
    assert model.config.answer_tag == "<rec>"  # the prompts' tag, not a default of its own
    assert any(p.requires_grad for p in model.lm.parameters())
    assert sum(p.requires_grad for n, p in model.lm.named_parameters() if "lora" in n) > 0


def test_an_sft_checkpoint_trained_with_another_answer_tag_is_refused(tiny_backbone_dir: Path, tmp_path: Path):
    import pytest

    from r2ec_pipeline.config import ConfigError

    tokenizer = load_tokenizer(str(tiny_backbone_dir), tmp_path)
    model_params = {**MODEL, "backbone": str(tiny_backbone_dir)}
    sft = start_policy(None, tiny_backbone_dir, tokenizer, model_params, {"answer_tag": "<rec>"}, {})
    with pytest.raises(ConfigError, match="answer_tag '<rec>' but parameter 'prompts.answer_tag' is '<answer>'"):
        start_policy(sft, tiny_backbone_dir, tokenizer, model_params, {"answer_tag": "<answer>"}, {})
