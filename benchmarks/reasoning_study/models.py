"""The study's models: the real SmolLM2-135M-Instruct, or a tiny random Llama for tests."""

from __future__ import annotations

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def char_tokenizer():
    """A character-level tokenizer with SmolLM2's ChatML turn markers, built in memory for tests.

    Loading the real tokenizer means parsing a 100 MB GGUF file (over a minute on a busy 2-core machine);
    the pipeline under test (chat template, left padding, EOS handling, decoding) is the same with this one.
    """
    import string

    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(string.printable)) + ["<unk>"])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def load_model(name: str):
    """``(model, tokenizer)``; ``'tiny'`` is a random 2-layer Llama on :func:`char_tokenizer`, so that the
    whole pipeline (chat template, batching, extraction, scoring) runs as in the study, in seconds."""
    if name == "smollm2":
        from vreason_hooks.apps.assets import load_smollm2

        return load_smollm2()
    from vreason_hooks.apps import testing

    tokenizer = char_tokenizer()
    model = testing.tiny_llama(vocab=len(tokenizer))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model, tokenizer
