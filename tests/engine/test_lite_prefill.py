"""V-Reason Lite ``prune_at='prefill'``: each layer pruned right after it ran in the prefill forward.

Reference for exactness: plain decoding on the full cache where, in every layer, that layer's own dropped
positions are masked out (eager attention, ``-inf`` in the layer's 4-D mask) from the first decode step.
"""

from __future__ import annotations

import functools

import lite_reference
import pytest
import torch
from lite_reference import decoder_layers, generate_masked, max_logit_diff

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.apps import testing as T
from vreason_hooks.errors import UnsupportedSettingError
from vreason_hooks.lite import PrunedLayout, pruned_count

GEN = dict(
    max_new_tokens=8, min_new_tokens=8, do_sample=False, output_logits=True, return_dict_in_generate=True
)
ATOL = 1e-5  # pruned vs masked attention differ only in summation order (observed ~1e-7)
PREFILL = dict(lite=True, prune_at="prefill", prune_scope="per_layer")


@functools.cache
def _model(name: str, layers: int = 3):
    builders = {
        "qwen2_5_vl": T.tiny_qwen2_5_vl,
        "llava_onevision": T.tiny_llava_onevision,
        "llama": T.tiny_llama,
    }
    return builders[name](attn="eager", layers=layers)


def _inputs(name: str, model, batch: int) -> dict:
    if name == "qwen2_5_vl":
        if batch == 1:
            return T.qwen_video_inputs(model, grid=8)
        return lite_reference.mixed_video_lengths(model)
    if name == "llava_onevision":
        return T.llava_video_inputs(model, frames=8, batch=batch, pad=[0, 3][:batch])
    return T.text_inputs(batch=batch, length=14, pad=[0, 5][:batch])


def _lite_run(model, inputs, config, **gen):
    """(output, session, layout) of one Lite generate; the layout is read right after the prefill."""
    captured = {}

    def grab(module, args, kwargs, output):
        captured.setdefault("layout", session.generation.layout)

    with vreason.attach(model, config) as session:
        handle = model.register_forward_hook(grab, with_kwargs=True)
        try:
            out = model.generate(**inputs, **{**GEN, **gen})
        finally:
            handle.remove()
    return out, session, captured["layout"]


def _masked_reference(model, inputs, layout: PrunedLayout):
    """Plain generate on the full cache with each layer's own dropped positions masked from the first
    decode."""
    return generate_masked(model, inputs, layout.dropped, **GEN)


# ---------------------------------------------------------------- 1. exactness against per-layer masks
@pytest.mark.parametrize("name", ["qwen2_5_vl", "llava_onevision", "llama"])
@pytest.mark.parametrize("batch", [1, 2])
def test_prefill_pruning_decodes_like_full_cache_with_each_layers_positions_masked(name, batch):
    model = _model(name)
    inputs = _inputs(name, model, batch)
    lite, session, layout = _lite_run(model, inputs, vreason.VReasonConfig(objective="none", **PREFILL))
    assert layout is not None and all(t.pruned for t in session.traces)
    # per-layer sets really differ somewhere, so a shared-mask reference would not do
    assert any(not torch.equal(layout.dropped[0][b], layout.dropped[-1][b]) for b in range(batch))
    reference = _masked_reference(model, inputs, layout)
    plain = model.generate(**inputs, **GEN)

    assert torch.equal(lite.logits[0], plain.logits[0])  # prefill used the full keys/values: plain's logits
    assert torch.equal(lite.sequences, reference.sequences)
    assert max_logit_diff(lite, reference) < ATOL
    assert max_logit_diff(lite, plain) > 1e-3  # pruning changed the decode: the check can fail


@pytest.mark.parametrize("name", ["qwen2_5_vl", "llava_onevision", "llama"])
def test_prefill_pruning_equals_post_prefill_per_layer_bit_for_bit_with_the_controller(name):
    # Same per-layer scores (prefill writes the same values either way), pruned at a different time.
    model = _model(name)
    inputs = _inputs(name, model, 2)
    settings = dict(step_interval=2, lr=1e-2, lite=True, prune_scope="per_layer")
    after, after_session, _ = _lite_run(model, inputs, vreason.VReasonConfig(**settings))
    during, session, _ = _lite_run(model, inputs, vreason.VReasonConfig(prune_at="prefill", **settings))
    assert torch.equal(after.sequences, during.sequences)
    assert all(torch.equal(a, b) for a, b in zip(after.logits, during.logits))
    assert [t.pruned for t in after_session.traces] == [t.pruned for t in session.traces]
    assert (
        session.traces[0].update_steps and session.traces[0].delta_norm == after_session.traces[0].delta_norm
    )


# ---------------------------------------------------------------- 2. ratio 0
@pytest.mark.parametrize("name", ["qwen2_5_vl", "llama"])
def test_ratio_zero_is_bit_identical_to_non_lite(name):
    model = _model(name)
    inputs = _inputs(name, model, 2)
    settings = dict(step_interval=2, lr=1e-2)
    with vreason.attach(model, vreason.VReasonConfig(**settings)) as plain_session:
        plain = model.generate(**inputs, **GEN)
    for ratio in (0.0, 0.01):  # 0.01 * n < 1 for every span here: floor drops nothing
        lite, session, layout = _lite_run(
            model, inputs, vreason.VReasonConfig(prune_ratio=ratio, **settings, **PREFILL)
        )
        assert layout is None
        assert torch.equal(lite.sequences, plain.sequences)
        assert all(torch.equal(a, b) for a, b in zip(lite.logits, plain.logits))
        assert [t.pruned for t in session.traces] == [[], []]
        assert session.traces[0].delta_norm == plain_session.traces[0].delta_norm


# ---------------------------------------------------------------- 3. lowest scores, survivors, the cache
# bound
def _layer_state(cache, index):
    keys, _ = (
        transformers_seam.layer_tensors(cache, index)
        if index < len(transformers_seam.cache_layers(cache))
        else (None, None)
    )
    return 0 if keys is None or keys.numel() == 0 else int(keys.shape[2])


@pytest.mark.parametrize("score", ["value", "key"])
@pytest.mark.parametrize("name", ["qwen2_5_vl", "llava_onevision"])
def test_each_layer_drops_its_own_lowest_scores_and_never_holds_two_full_layers(name, score):
    model = _model(name)
    inputs = _inputs(name, model, 2)
    length = inputs["input_ids"].shape[1]
    # generate's own prefill (its positions for padded rows), one token: the cache holds the prompt only
    full = transformers_seam.output_cache(
        model.generate(**inputs, max_new_tokens=1, do_sample=False, return_dict_in_generate=True)
    )
    full = [
        transformers_seam.layer_tensors(full, i) for i in range(len(transformers_seam.cache_layers(full)))
    ]
    lengths_before_layer, stored = [], {}

    def before(module, args, kwargs, index):  # entering layer `index` of the prefill
        cache = transformers_seam.forward_cache(kwargs)
        if stored.get("done") or cache is None:
            return
        lengths_before_layer.append([_layer_state(cache, i) for i in range(len(full))])

    def after_model(module, args, kwargs, output):
        if "done" not in stored:
            cache = transformers_seam.forward_cache(kwargs)
            stored.update(
                done=True, layers=[transformers_seam.layer_tensors(cache, i) for i in range(len(full))]
            )

    config = vreason.VReasonConfig(objective="none", prune_score=score, **PREFILL)
    handles = [
        layer.register_forward_pre_hook(functools.partial(before, index=i), with_kwargs=True)
        for i, layer in enumerate(decoder_layers(model))
    ]
    handles.append(model.register_forward_hook(after_model, with_kwargs=True))
    # registered before attach: `after_model` runs before the session's hook (nothing pruned after prefill)
    try:
        _, session, layout = _lite_run(model, inputs, config, max_new_tokens=2, min_new_tokens=2)
    finally:
        for h in handles:
            h.remove()
    counts = [pruned_count(0.5, len(t.span)) for t in session.traces]
    pruned_length = length - min(counts)
    # Entering layer l: layers < l already pruned, layers >= l not written yet. The fullest the stored cache
    # gets is therefore (l pruned layers) + layer l's full write.
    assert lengths_before_layer == [[pruned_length] * n + [0] * (len(full) - n) for n in range(len(full))]
    for index in range(len(full)):
        norms = full[index][1 if score == "value" else 0].double().pow(2).sum(dim=(1, 3)).sqrt()
        for b, trace in enumerate(session.traces):
            span, dropped = torch.tensor(trace.span), layout.dropped[index][b]
            kept = span[~torch.isin(span, dropped)]
            assert dropped.numel() == counts[b]
            assert norms[b, dropped].max() <= norms[b, kept].min()  # this layer's own lowest
            keep = torch.ones(length, dtype=torch.bool)
            keep[dropped] = False
            n = int(keep.sum())
            for k in (0, 1):  # survivors: the original vectors, in order, right-aligned after zero filler
                assert stored["layers"][index][k].shape[2] == pruned_length
                torch.testing.assert_close(
                    stored["layers"][index][k][b, :, -n:], full[index][k][b][:, keep], rtol=0, atol=0
                )
                assert not stored["layers"][index][k][b, :, :-n].any()
    assert (
        session.traces[1].pruned == layout.dropped[-1][1].tolist()
    )  # traces record the controlled layer's set


# ---------------------------------------------------------------- refusals and lifecycle
def test_config_requires_per_layer_scope():
    with pytest.raises(ValueError, match="prune_scope='per_layer'"):
        vreason.VReasonConfig(lite=True, prune_at="prefill")
    assert vreason.VReasonConfig().prune_at == "after_prefill"


def test_padding_inside_the_span_is_refused():
    # A masked column between span tokens: layers that drop different tokens before it would need different
    # attention masks, which one shared mask cannot give.
    model = _model("llama")
    inputs = T.text_inputs(batch=2, length=14, pad=[0, 5], seed=1)  # (seed 0: the layers happen to agree)
    inputs["attention_mask"][0, 6] = 0
    with vreason.attach(model, vreason.VReasonConfig(**PREFILL)):
        with pytest.raises(UnsupportedSettingError, match="left padding"):
            model.generate(**inputs, max_new_tokens=2, do_sample=False)


def test_paused_and_detached_sessions_leave_the_cache_alone():
    model = _model("llama")
    inputs = T.text_inputs(batch=1, length=14)
    plain = model.generate(**inputs, **GEN)
    with vreason.attach(model, vreason.VReasonConfig(**PREFILL)) as session:
        assert all(layer._forward_hooks for layer in decoder_layers(model))
        with session.paused():
            paused = model.generate(**inputs, **GEN)
    assert all(torch.equal(a, b) for a, b in zip(paused.logits, plain.logits))
    assert not any(layer._forward_hooks for layer in decoder_layers(model))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ([], dict(lite=False, prune_at="after_prefill", prune_scope="last_layer")),
        (["--lite"], dict(lite=True, prune_at="after_prefill", prune_scope="last_layer")),
        (
            ["--lite", "prefill", "--prune-ratio", "0.25"],
            dict(lite=True, prune_at="prefill", prune_scope="per_layer", prune_ratio=0.25),
        ),
        (
            ["--lite", "after_prefill", "--prune-scope", "per_layer"],
            dict(lite=True, prune_at="after_prefill", prune_scope="per_layer"),
        ),
    ],
)
def test_vreason_run_options_build_the_config(flags, expected):
    from vreason_hooks.apps.cli import _overrides, build_parser, load_config

    args = build_parser().parse_args(["run", "--model", "m", "--video", "v.mp4", "--question", "q", *flags])
    config = load_config(None, **_overrides(args))
    assert {k: getattr(config, k) for k in expected} == expected


def test_vreason_run_refuses_prefill_with_the_last_layer_scope():
    from vreason_hooks.apps.cli import CliError, _overrides, build_parser, load_config

    args = build_parser().parse_args(
        [
            "run",
            "--model",
            "m",
            "--video",
            "v",
            "--question",
            "q",
            "--lite",
            "prefill",
            "--prune-scope",
            "last_layer",
        ]
    )
    with pytest.raises(CliError, match="prune_scope='per_layer'"):
        load_config(None, **_overrides(args))


def test_sliding_window_caches_are_refused_before_any_layer_is_touched():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=T.VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        use_sliding_window=True,
        sliding_window=4,
        max_window_layers=0,
        layer_types=["sliding_attention"] * 2,
    )
    model = Qwen2ForCausalLM(config).eval()
    # The controlled (last) layer is a sliding window: refused at attach, before any layer is touched.
    with pytest.raises(vreason.UnsupportedModelError, match="controlled decoder layer 1 is sliding-window"):
        vreason.attach(model, vreason.VReasonConfig(**PREFILL))
