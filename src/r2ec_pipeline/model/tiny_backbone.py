"""A tiny local tokenizer with a chat template and a tiny random Llama: no downloads, no Kedro.

The tokenizer is a byte-level BPE trained in milliseconds on a few lines; the model has SmolLM2's
architecture (Llama) at toy size, so every code path of the real backbone runs in the tests and in the
checks that only need a model's shape (``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "Here is a user's history of rated items, oldest first. Analyse the user's preferences step by step,",
    "then recommend the next item the user will interact with inside <answer> and </answer>.",
    "Summarise the following item inside <answer> and </answer>. Title: Year: Genres: Description:",
    "- 3d 4.0h ago: [Toy Story] rating 4 Action, Comedy, Drama 1995 0123456789",
]


def build_tiny_tokenizer(target: Path, vocab_size: int = 300) -> Path:
    """Train a byte-level BPE tokenizer with ChatML special tokens and save it as a HF folder."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
    )
    wrapped.chat_template = CHATML_TEMPLATE
    wrapped.save_pretrained(target)
    return target


def build_tiny_backbone(target: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama with the tiny tokenizer, saved as a local HF checkpoint."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    build_tiny_tokenizer(target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    return target
