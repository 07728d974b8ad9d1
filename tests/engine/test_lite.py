"""V-Reason Lite: exact decoding on a pruned cache, the pruned set, the cache shapes, refusals."""

from __future__ import annotations

import functools

import lite_reference
import pytest
import torch
from lite_reference import generate_masked, max_logit_diff

import vreason_hooks as vreason
from vreason_hooks import adapters, transformers_seam
from vreason_hooks.apps import testing as T
from vreason_hooks.errors import UnsupportedSettingError
from vreason_hooks.lite import PrunedLayout, pruned_count, token_scores

GEN = dict(
    max_new_tokens=10, min_new_tokens=10, do_sample=False, output_logits=True, return_dict_in_generate=True
)
ATOL = 1e-5  # pruned vs masked attention differ only in summation order (observed ~1e-7)


@functools.cache
def _model(name: str):
    builders = {
        "qwen2_5_vl": T.tiny_qwen2_5_vl,
        "llava_onevision": T.tiny_llava_onevision,
        "llama": T.tiny_llama,
    }
    return builders[name]()


def _inputs(name: str, model, batch: int) -> dict:
    if name == "qwen2_5_vl":
        return T.qwen_video_inputs(model, grid=8) if batch == 1 else lite_reference.mixed_video_lengths(model)
    if name == "llava_onevision":
        return T.llava_video_inputs(model, frames=8, batch=batch, pad=[0, 3][:batch])
    return T.text_inputs(batch=batch, length=14, pad=[0, 5][:batch])  # prompt spans of 14 and 9 tokens


def _mask_out(dropped: list[list[int]]):
    """Reference: a pre-hook that removes ``dropped[b]`` from attention (full cache) from the first decode
    step."""

    def hook(module, args, kwargs):
        cache = transformers_seam.forward_cache(kwargs)
        if cache is None or transformers_seam.cache_length(cache) == 0:
            return None
        ids = kwargs["input_ids"]
        mask = kwargs.get("attention_mask")
        total = transformers_seam.cache_length(cache) + ids.shape[1]
        mask = torch.ones(ids.shape[0], total, dtype=torch.long) if mask is None else mask.clone()
        for b, positions in enumerate(dropped):
            mask[b, positions] = 0
        return args, dict(kwargs, attention_mask=mask)

    return hook


def _generate(model, inputs, config, dropped=None):
    with vreason.attach(model, config) as session:
        handle = model.register_forward_pre_hook(_mask_out(dropped), with_kwargs=True) if dropped else None
        try:
            out = model.generate(**inputs, **GEN)
        finally:
            if handle is not None:
                handle.remove()
    return out, session


# ---------------------------------------------------------------- 1. exactness against a masked full cache
def _lite_matches_masked_reference(model, inputs, objective: str):
    """Lite against the full cache with the dropped positions masked: same tokens, logits within ATOL, and
    different from the unmasked full cache (so the check can fail). Returns (lite session, reference
    session)."""
    settings = dict(objective=objective, step_interval=2, lr=1e-2)
    lite, session = _generate(model, inputs, vreason.VReasonConfig(lite=True, **settings))
    dropped = [t.pruned for t in session.traces]
    assert all(dropped)
    reference, ref_session = _generate(model, inputs, vreason.VReasonConfig(**settings), dropped)
    unmasked, _ = _generate(model, inputs, vreason.VReasonConfig(**settings))
    assert torch.equal(lite.sequences, reference.sequences)
    assert max_logit_diff(lite, reference) < ATOL
    assert max_logit_diff(lite, unmasked) > 1e-3  # pruning really changed the computation: the check can fail
    return session, ref_session


@pytest.mark.parametrize("name", ["qwen2_5_vl", "llava_onevision", "llama"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("objective", ["none", "switch"])
def test_pruned_cache_decodes_like_full_cache_with_pruned_positions_masked(name, batch, objective):
    model = _model(name)
    session, ref_session = _lite_matches_masked_reference(model, _inputs(name, model, batch), objective)
    if objective == "switch":  # the controller ran on the pruned cache and took the same steps
        assert (
            session.traces[0].update_steps
            and session.traces[0].update_steps == ref_session.traces[0].update_steps
        )
        assert session.traces[0].delta_norm == pytest.approx(
            ref_session.traces[0].delta_norm, rel=1e-4, abs=1e-6
        )


@pytest.mark.parametrize("name", sorted(T.FAMILIES))
def test_every_family_decodes_a_pruned_cache_like_the_masked_reference(name):
    """The matrix's ragged batch of every family (rows left-padded differently) under Lite with the controller
    on: same tokens and logits as the full cache with the dropped positions masked."""
    build, make_inputs = T.FAMILIES[name]
    model = build()
    session, ref_session = _lite_matches_masked_reference(
        model, make_inputs(model, batch=2, pad=[0, 3]), "switch"
    )
    assert session.traces[0].update_steps == ref_session.traces[0].update_steps
    assert session.traces[1].delta_norm == pytest.approx(ref_session.traces[1].delta_norm, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", sorted(T.FAMILIES))
def test_decode_positions_follow_the_spec(name):
    """Without position_ids a decode step gets what the model computes itself: the spec's [positions]."""
    build, make_inputs = T.FAMILIES[name]
    model = build()
    spec = adapters.find_adapter(model)
    inputs = make_inputs(model, batch=2, pad=[0, 3])
    model(**inputs, use_cache=True)  # prefill: an M-RoPE model keeps its per-row offsets now
    positions = spec.decode_positions(model, 20, 1, 2, "cpu")
    if spec.positions.kind == "plain":
        assert positions.tolist() == [[20], [20]]
    else:
        deltas = transformers_seam.model_attribute(model, spec.positions.rope_deltas)
        assert positions.shape == (spec.positions.rows, 2, 1)
        assert torch.equal(positions[:, :, 0], (20 + deltas.flatten()).expand(spec.positions.rows, 2))
        assert deltas.ne(0).all(), "a video prompt shifts M-RoPE positions: the check can fail"


def test_per_layer_scope_decodes_like_per_layer_masks():
    # Reference: eager attention, each layer's 4-D mask gets -inf at that layer's own dropped positions.
    model = T.tiny_llama(attn="eager", layers=3)
    inputs = T.text_inputs(batch=2, length=14, pad=[0, 5])
    config = vreason.VReasonConfig(lite=True, objective="none", prune_scope="per_layer")
    captured = {}

    def capture(module, args, kwargs, output):
        if "layout" not in captured:
            captured["layout"] = session.generation.layout

    with vreason.attach(model, config) as session:
        handle = model.register_forward_hook(capture, with_kwargs=True)
        lite = model.generate(**inputs, **GEN)
        handle.remove()
    layout: PrunedLayout = captured["layout"]
    assert any(not torch.equal(layout.dropped[0][b], layout.dropped[2][b]) for b in range(2))

    reference = generate_masked(model, inputs, layout.dropped, **GEN)
    assert torch.equal(lite.sequences, reference.sequences)
    assert max_logit_diff(lite, reference) < ATOL


def test_positions_are_filled_in_when_the_caller_passes_none():
    # A hand-written decode loop without position_ids: the pruned model must use the unpruned positions.
    model = _model("llama")
    inputs = T.text_inputs(batch=1, length=14)
    token = torch.tensor([[7]])
    with vreason.attach(model, vreason.VReasonConfig(lite=True, objective="none")) as session:
        out = model(**inputs, use_cache=True)
        dropped = session.traces[0].pruned
        cache = transformers_seam.output_cache(out)
        lite = [
            model(input_ids=token, **transformers_seam.cache_kwargs(model, cache)).logits for _ in range(3)
        ]
    out = model(**inputs, use_cache=True)
    cache, mask = transformers_seam.output_cache(out), torch.ones(1, 14, dtype=torch.long)
    mask[0, dropped] = 0
    reference = []
    for _ in range(3):
        mask = torch.cat([mask, torch.ones(1, 1, dtype=torch.long)], dim=1)
        reference.append(
            model(input_ids=token, attention_mask=mask, **transformers_seam.cache_kwargs(model, cache)).logits
        )
    for a, b in zip(lite, reference):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- 2. ratio 0, cache lengths, memory
@pytest.mark.parametrize("name", ["qwen2_5_vl", "llama"])
def test_ratio_zero_is_bit_identical_to_non_lite(name):
    model = _model(name)
    inputs = _inputs(name, model, 2)
    settings = dict(step_interval=2, lr=1e-2)
    plain, plain_session = _generate(model, inputs, vreason.VReasonConfig(**settings))
    for ratio in (0.0, 0.01):  # 0.01 * n < 1 for every span here: floor drops nothing
        lite, session = _generate(
            model, inputs, vreason.VReasonConfig(lite=True, prune_ratio=ratio, **settings)
        )
        assert torch.equal(lite.sequences, plain.sequences)
        assert all(torch.equal(a, b) for a, b in zip(lite.logits, plain.logits))
        assert [t.pruned for t in session.traces] == [[], []]
        assert session.traces[0].delta_norm == plain_session.traces[0].delta_norm


def _prefill_cache_shapes(model, inputs, config):
    """Per layer, (keys, values) as they are right after the session pruned them at prefill."""
    seen = {}

    def after(module, args, kwargs, output):
        if not seen:
            cache = transformers_seam.forward_cache(kwargs)
            seen["layers"] = [
                transformers_seam.layer_tensors(cache, i)
                for i in range(len(transformers_seam.cache_layers(cache)))
            ]

    with vreason.attach(model, config) as session:
        handle = model.register_forward_hook(after, with_kwargs=True)
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
        handle.remove()
    return seen["layers"], session


@pytest.mark.parametrize("name", ["qwen2_5_vl", "llava_onevision", "llama"])
@pytest.mark.parametrize("ratio", [0.5, 0.25, 0.9])
def test_every_layer_shrinks_by_the_pruned_count_and_frees_it(name, ratio):
    model = _model(name)
    inputs = _inputs(name, model, 2)
    length = inputs["input_ids"].shape[1]
    layers, session = _prefill_cache_shapes(
        model, inputs, vreason.VReasonConfig(lite=True, prune_ratio=ratio)
    )
    spans = [len(t.span) for t in session.traces]
    counts = [len(t.pruned) for t in session.traces]
    assert counts == [pruned_count(ratio, n) for n in spans] and min(counts) > 0
    expected = length - min(counts)  # rows that drop more get masked filler slots at the left
    for keys, values in layers:
        assert keys.shape[2] == values.shape[2] == expected
        for tensor in (keys, values):  # a fresh tensor of the pruned size, not a view of the old storage
            assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()


def test_pruned_count_rounds_down_exactly():
    assert [pruned_count(0.5, n) for n in (0, 1, 2, 7, 1000)] == [0, 0, 1, 3, 500]
    assert pruned_count(0.29, 100) == 29  # 0.29 * 100 == 28.999999999999996 in floats
    assert pruned_count(0.999, 4000) == 3996


# ---------------------------------------------------------------- 3. the pruned tokens are the lowest-scoring
@pytest.mark.parametrize("score", ["value", "key"])
@pytest.mark.parametrize("scope", ["last_layer", "per_layer"])
def test_dropped_tokens_are_the_lowest_scoring_and_survivors_are_exact(score, scope):
    model = _model("qwen2_5_vl")
    inputs = _inputs("qwen2_5_vl", model, 2)
    full = transformers_seam.output_cache(model(**inputs, use_cache=True))
    config = vreason.VReasonConfig(lite=True, prune_score=score, prune_scope=scope)
    layers, session = _prefill_cache_shapes(model, inputs, config)
    layout = None
    with vreason.attach(model, config) as s:  # the layout, for the per-layer dropped sets

        def grab(module, args, kwargs, output):
            nonlocal layout
            layout = layout or s.generation.layout

        h = model.register_forward_hook(grab, with_kwargs=True)
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
        h.remove()
    full = [
        transformers_seam.layer_tensors(full, i) for i in range(len(transformers_seam.cache_layers(full)))
    ]  # (keys, values)
    last = len(full) - 1
    for index in range(len(full)):
        scored = full[last if scope == "last_layer" else index]
        # independent score: L2 norm over heads and head_dim, in fp64
        norms = (scored[1] if score == "value" else scored[0]).double().pow(2).sum(dim=(1, 3)).sqrt()
        for b, trace in enumerate(session.traces):
            span = torch.tensor(trace.span)
            dropped = layout.dropped[index][b]
            kept = span[~torch.isin(span, dropped)]
            assert dropped.numel() == pruned_count(0.5, span.numel())
            assert norms[b, dropped].max() <= norms[b, kept].min()
            if index == last:
                assert trace.pruned == dropped.tolist()
            # survivors are the original cached vectors, in original order, right-aligned
            keep = torch.ones(full[index][0].shape[2], dtype=torch.bool)
            keep[dropped] = False
            n = int(keep.sum())
            torch.testing.assert_close(
                layers[index][0][b, :, -n:], full[index][0][b][:, keep], rtol=0, atol=0
            )
            torch.testing.assert_close(
                layers[index][1][b, :, -n:], full[index][1][b][:, keep], rtol=0, atol=0
            )
            assert not layers[index][0][b, :, :-n].any()  # filler slots hold zeros


def test_token_scores_is_the_l2_norm_over_heads_and_head_dim():
    x = torch.randn(2, 3, 5, 4)
    expected = torch.stack([torch.stack([x[b, :, j].flatten().norm() for j in range(5)]) for b in range(2)])
    torch.testing.assert_close(token_scores(x), expected)


# ---------------------------------------------------------------- mask mapping and refusals
def test_mask_is_created_for_filler_rows_when_generate_drops_it():
    source = torch.tensor([[-1, 0, 2, 3], [0, 1, 2, 3]])  # row 0 dropped column 1, row 1 nothing
    layout = PrunedLayout(4, [source], [[torch.tensor([1]), torch.tensor([], dtype=torch.long)]], [], 0, True)

    from transformers import DynamicCache

    cache = DynamicCache()  # 4 prompt columns (pruned layout) + two tokens generated since prefill
    cache.update(torch.zeros(2, 1, 6, 4), torch.zeros(2, 1, 6, 4), 0)
    out = layout.rewrite_inputs(
        {"input_ids": torch.tensor([[5], [6]]), "attention_mask": None}, cache, None, adapters.get("llama")
    )
    assert out["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    assert out["position_ids"].tolist() == [[6], [6]]  # original coordinates: 4 prompt + 2 generated
    mask = torch.tensor(
        [[1, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    )  # generate's mask, original coordinates
    assert layout.map_attention_mask(mask).tolist() == [[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]
    with pytest.raises(UnsupportedSettingError, match="original coordinates"):
        layout.rewrite_inputs(
            {"input_ids": torch.tensor([[5], [6]]), "attention_mask": mask[:, :-1]},
            cache,
            None,
            adapters.get("llama"),
        )


def test_sliding_window_caches_are_refused():
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
        vreason.attach(model, vreason.VReasonConfig(lite=True))


# ---------------------------------------------------------------- through lmms-eval (slow: a real CLI run)
@pytest.mark.slow
def test_lmms_eval_runs_lite_from_model_args(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from vreason_lmms_eval.synthetic_task import make_task

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "tiny-qwen")
    task = make_task(tmp_path / "task", n=2)
    args = (
        f"pretrained={checkpoint},max_pixels=12544,min_pixels=3136,max_num_frames=8,"  # 16 video tokens
        "lite=true,prune_ratio=0.25,step_interval=2"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "OMP_NUM_THREADS": "1",
        "HF_DATASETS_CACHE": str(tmp_path / "datasets"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    out = tmp_path / "out"
    log = subprocess.run(
        [
            str(Path(sys.executable).parent / "lmms-eval"),
            "--model",
            "vreason_qwen2_5_vl",
            "--model_args",
            args,
            "--tasks",
            "vreason_synth",
            "--include_path",
            str(task),
            "--gen_kwargs",
            "max_new_tokens=6",
            "--batch_size",
            "1",
            "--output_path",
            str(out),
            "--log_samples",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    found = sorted(out.glob("*/*_vreason_traces_vreason_synth.jsonl"))  # the CLI can exit 0 after an error
    assert len(found) == 1, log.stdout[-3000:] + log.stderr[-3000:]
    records = [json.loads(line) for line in found[0].read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        trace = record["trace"]
        assert not record["failed"] and trace["config"]["lite"] is True
        assert (
            len(trace["span"]) == 16
            and len(trace["pruned"]) == 4
            and set(trace["pruned"]) <= set(trace["span"])
        )
        assert trace["update_steps"]  # the controller ran on the pruned cache
