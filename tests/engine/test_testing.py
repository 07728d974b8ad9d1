"""The test builders themselves: a ragged batch must really be ragged, or the padding tests test nothing."""

from __future__ import annotations

import pytest

from vreason_hooks import adapters
from vreason_hooks.apps.testing import FAMILIES, PAD


@pytest.mark.parametrize("pad", [[0, 3, 7], [5, 0, 2], [0, 0, 0]])
def test_builders_make_the_padding_they_are_asked_for(family, pad):
    """Row ``b`` starts with exactly ``pad[b]`` padding positions (mask 0, id PAD), then only real tokens."""
    name, build, make_inputs = family
    model = build()
    inputs = make_inputs(model, batch=3, pad=pad)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.shape[0] == mask.shape[0] == 3
    width = ids.shape[1]
    assert mask.sum(1).tolist() == [width - p for p in pad]
    for b, p in enumerate(pad):
        assert mask[b, :p].eq(0).all() and mask[b, p:].eq(1).all(), (b, mask[b])
        assert ids[b, :p].eq(PAD).all()
    # The span (video tokens, or the prompt) sits at the same offset after each row's own padding, so the
    # rows' spans are at different cache positions whenever their padding differs.
    spec = adapters.get(name)
    spans = spec.span_positions(model.config, ids, mask)
    assert all(len(s) > 0 for s in spans)
    assert len({int(s[0]) - p for s, p in zip(spans, pad)}) == 1, [s.tolist() for s in spans]
    if spec.span.kind == "token":  # every row holds one video of the same size
        assert len({len(s) for s in spans}) == 1


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_default_batch_is_unpadded_and_a_short_pad_list_pads_the_first_rows(name):
    build, make_inputs = FAMILIES[name]
    model = build()
    full = make_inputs(model, batch=2)
    assert full["attention_mask"].eq(1).all()
    short = make_inputs(model, batch=2, pad=[3])
    assert short["attention_mask"].sum(1).tolist() == [
        short["input_ids"].shape[1] - 3,
        short["input_ids"].shape[1],
    ]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_more_pads_than_rows_is_refused(name):
    build, make_inputs = FAMILIES[name]
    with pytest.raises(ValueError, match="pad"):
        make_inputs(build(), batch=1, pad=[0, 2])
