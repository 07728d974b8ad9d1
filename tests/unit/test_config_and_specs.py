"""Config validation, adapter spec loading and span detection, property-based where it pays."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import vreason_hooks as vreason
from vreason_hooks import adapters
from vreason_hooks.adapters import AdapterSpec, load_spec
from vreason_hooks.apps import testing as T
from vreason_hooks.errors import SpecError

VALID = {
    "lr": st.floats(0, 1),
    "step_interval": st.integers(1, 64),
    "ema_beta": st.floats(0.01, 0.999),
    "objective": st.sampled_from(["switch", "max", "min", "none"]),
    "ema_init": st.sampled_from(["zero", "first"]),
    "prune_ratio": st.floats(0, 0.99),
    "lite": st.booleans(),
}
NON_FINITE = st.sampled_from([float("inf"), float("-inf"), float("nan")])
INVALID = {
    "lr": st.floats(max_value=-1e-9)
    | st.floats(min_value=10, exclude_min=True)
    | NON_FINITE
    | st.just("fast"),
    "step_interval": st.integers(max_value=0),
    "ema_beta": st.floats(min_value=1.0) | st.floats(max_value=0.0) | NON_FINITE,
    "objective": st.text(string.ascii_lowercase, min_size=1).filter(
        lambda s: s not in {"switch", "max", "min", "none"}
    ),
    "prune_ratio": st.floats(min_value=1.0) | st.floats(max_value=0, exclude_max=True) | NON_FINITE,
    "max_grad_norm": st.floats(max_value=0.0) | NON_FINITE,
    "weight_decay": st.floats(max_value=0, exclude_max=True)
    | st.floats(min_value=1, exclude_min=True)
    | NON_FINITE,
}


@given(st.fixed_dictionaries({}, optional=VALID))
def test_valid_config_round_trips(fields):
    config = vreason.VReasonConfig(**fields)
    assert vreason.VReasonConfig.model_validate(config.model_dump()) == config
    with pytest.raises(ValidationError):
        config.lr = 1.0  # frozen


@given(st.sampled_from(sorted(INVALID)).flatmap(lambda k: st.tuples(st.just(k), INVALID[k])))
def test_invalid_config_value_names_the_field(item):
    field, value = item
    with pytest.raises(vreason.ConfigError) as err:  # the constructor's error is one line (was pydantic's)
        vreason.VReasonConfig(**{field: value})
    assert field in str(err.value) and "\n" not in str(err.value)


@given(
    st.text(string.ascii_lowercase + "_", min_size=1).filter(
        lambda k: k not in vreason.VReasonConfig.model_fields
    )
)
def test_unknown_config_field_is_rejected(name):
    with pytest.raises(vreason.ConfigError, match=f"unknown field '{name}'"):
        vreason.VReasonConfig(**{name: 1})


def test_every_way_to_build_a_config_gives_one_line_and_attach_revalidates_copies():
    """Constructor, model_validate, coerce_config: one ConfigError line naming the field. model_copy(update=)
    skips validation, so attach validates again instead of crashing in generate (ZeroDivisionError)."""
    for build in (
        lambda: vreason.VReasonConfig(lr=-1),
        lambda: vreason.VReasonConfig.model_validate({"lr": -1}),
    ):
        with pytest.raises(
            vreason.ConfigError, match=r"^bad V-Reason config: field lr=-1: must be a finite "
        ):
            build()
    broken = vreason.VReasonConfig().model_copy(update={"step_interval": 0})
    with pytest.raises(vreason.ConfigError, match="step_interval"):
        vreason.attach(T.tiny_llama(), broken)


def test_config_from_toml_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('lr = 1e-3\nobjective = "max"\n')
    assert vreason.VReasonConfig.from_file(path) == vreason.VReasonConfig(lr=1e-3, objective="max")


@pytest.mark.parametrize(
    "field, value, valid",
    [
        ("lr", float("inf"), "[0, 10]"),
        ("lr", float("nan"), "[0, 10]"),
        ("lr", 150.0, "[0, 10]"),
        ("ema_beta", float("nan"), "(0, 1)"),
        ("ema_beta", 1.0, "(0, 1)"),
        ("max_grad_norm", float("inf"), "(0, ∞)"),
        ("weight_decay", float("inf"), "[0, 1]"),
        ("prune_ratio", float("nan"), "[0, 1)"),
        ("step_interval", 0, "[1, ∞)"),
    ],
)
def test_non_finite_and_out_of_range_settings_give_the_valid_range(field, value, valid):
    with pytest.raises(vreason.ConfigError) as err:
        vreason.VReasonConfig(**{field: value})
    assert field in str(err.value) and valid in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(vreason.ConfigError) as one_line:
        vreason.coerce_config({field: value})
    message = str(one_line.value)
    assert "\n" not in message and f"{field}=" in message and valid in message


@pytest.mark.parametrize("lr, weight_decay", [(10.0, 0.1), (5.0, 0.5), (2.0, 1.0)])
def test_decay_that_would_flip_the_sign_of_delta_is_refused(lr, weight_decay):
    """AdamW's decoupled decay multiplies ΔV by 1 - lr·weight_decay each step: at >= 1 it zeroes or flips
    it."""
    with pytest.raises(vreason.ConfigError, match=r"lr · weight_decay .* must be below 1"):
        vreason.coerce_config({"lr": lr, "weight_decay": weight_decay})
    assert vreason.VReasonConfig(lr=lr, weight_decay=0.99 / lr).weight_decay == pytest.approx(0.99 / lr)


def test_coerce_config_accepts_none_a_config_and_a_mapping():
    from types import MappingProxyType

    config = vreason.VReasonConfig(lr=1e-3)
    assert vreason.coerce_config(None) == vreason.VReasonConfig()
    assert vreason.coerce_config(config) is config
    assert vreason.coerce_config({"lr": 1}) == vreason.VReasonConfig(lr=1.0)
    assert vreason.coerce_config(MappingProxyType({"objective": "max"})).objective == "max"


@pytest.mark.parametrize("value", [0.5, "lr=1", ["lr", 1], vreason.VReasonConfig, object()])
def test_coerce_config_says_what_to_pass(value):
    with pytest.raises(TypeError) as err:
        vreason.coerce_config(value)
    assert isinstance(err.value, vreason.VReasonError)
    message = str(err.value)
    assert "VReasonConfig" in message and "dict" in message and "\n" not in message


def test_coerce_config_names_an_unknown_field_and_the_known_ones():
    with pytest.raises(vreason.ConfigError) as err:
        vreason.coerce_config({"learning_rate": 1e-3, "lr": -1})
    message = str(err.value)
    assert "unknown field 'learning_rate'" in message and "known fields: lr, step_interval" in message
    assert "lr=-1: must be a finite number in [0, 10]" in message and "\n" not in message


@pytest.mark.parametrize(
    "name, text",
    [
        ("c.yaml", "lr: 0.001\nobjective: max\n"),
        ("c.yml", "lr: 1.0e-3\nobjective: max\n"),
        ("c.json", '{"lr": 0.001, "objective": "max"}'),
    ],
)
def test_config_from_yaml_and_json_files(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert vreason.VReasonConfig.from_file(path) == vreason.VReasonConfig(lr=1e-3, objective="max")


@pytest.mark.parametrize(
    "name, text, says",
    [
        ("c.ini", "lr = 1", "unknown type '.ini'; use a .toml, .json, .yaml, .yml file"),
        ("c", "lr = 1", "unknown type '(no suffix)'"),
        ("c.yaml", "lr: [1\n", "not valid YAML"),
        ("c.json", "{lr: 1}", "not valid JSON"),
        ("c.toml", "lr = = 1", "not valid TOML"),
        ("c.yaml", "- 1\n- 2\n", "holds a list, not a table"),
        ("c.yaml", "lr: .inf\n", "field 'lr': must be a finite number in [0, 10], got inf"),
    ],
)
def test_bad_config_files_are_one_line(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(vreason.ConfigError) as err:
        vreason.VReasonConfig.from_file(path)
    assert says in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


SPEC = """
name = "mine"
model_types = ["llama"]
[modules]
decoder_layers = "model.layers"
final_norm = "model.norm"
lm_head = "lm_head"
[span]
kind = "prompt"
"""


def test_shipped_specs_load_and_resolve_on_their_models():
    for name, (build, _) in T.FAMILIES.items():
        resolved = adapters.resolve(build(), name)
        assert resolved.spec.name == name and resolved.cache_layer_index == 1


@given(
    st.sampled_from(["", "[modules]\n", "[span]\n"]),
    st.text(string.ascii_lowercase, min_size=3, max_size=12).filter(
        lambda k: (
            k
            not in {
                "name",
                "description",
                "model_types",
                "architectures",
                "modules",
                "span",
                "inputs",
                "decoder_layers",
                "final_norm",
                "lm_head",
                "kind",
                "token_id_field",
                "required",
            }
        )
    ),
)
@settings(max_examples=25, deadline=None)
def test_unknown_spec_key_names_file_and_key(tmp_path_factory, table, key):
    path = tmp_path_factory.mktemp("spec") / "bad.toml"
    text = SPEC.replace(table, f"{table}{key} = 1\n", 1) if table else f"{key} = 1\n" + SPEC
    path.write_text(text)
    with pytest.raises(vreason.SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and key in str(err.value)


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda s: s.replace('lm_head = "lm_head"\n', ""), "modules.lm_head"),
        (lambda s: s.replace('kind = "prompt"', 'kind = "video"'), "span.kind"),
        (lambda s: s.replace('kind = "prompt"', 'kind = "token"'), "span"),
        (lambda s: s.replace('model_types = ["llama"]', "model_types = 3"), "model_types"),
        (lambda s: s + "[[", "TOML"),
    ],
)
def test_bad_spec_errors_name_file_and_key(tmp_path, edit, key):
    path = tmp_path / "bad.toml"
    path.write_text(edit(SPEC))
    with pytest.raises(vreason.SpecError) as err:
        load_spec(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_bad_module_path_is_named_at_attach(tmp_path):
    path = tmp_path / "wrong.toml"
    path.write_text(SPEC.replace('final_norm = "model.norm"', 'final_norm = "model.final_ln"'))
    with pytest.raises(vreason.SpecError, match=r"modules\.final_norm.*model\.final_ln"):
        vreason.attach(T.tiny_llama(), adapter=path)


def test_spec_file_given_by_path_is_used(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(SPEC)
    with vreason.attach(T.tiny_llama(), adapter=str(path)) as session:
        assert session.adapter.spec.name == "mine" and session.adapter.spec.source == str(path)


@given(
    st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=3),
    st.lists(st.integers(0, 5), min_size=3, max_size=3),
)
def test_span_detection_token_and_prompt(marks, pads):
    spec = adapters.get("qwen2_5_vl")
    config = type("C", (), {"video_token_id": T.VIDEO_TOKEN})()
    ids = torch.tensor([[T.VIDEO_TOKEN if m else 7 for m in row] for row in marks])
    mask = torch.ones_like(ids)
    for b, pad in enumerate(pads[: len(marks)]):
        ids[b, :pad], mask[b, :pad] = T.PAD, 0
    spans = spec.span_positions(config, ids, mask)
    for b, span in enumerate(spans):
        assert span.tolist() == [i for i in range(ids.shape[1]) if ids[b, i] == T.VIDEO_TOKEN]
    prompt = adapters.get("llama").span_positions(config, ids, mask)
    for b, span in enumerate(prompt):
        assert span.tolist() == [i for i in range(ids.shape[1]) if mask[b, i]]


class _EntryPoint:
    """A stand-in installed plugin: ``load()`` returns ``loaded`` (or raises it)."""

    def __init__(self, name, loaded):
        self.name, self.value, self.loaded = name, f"{name}_pkg:specs", loaded
        self.dist = type("Dist", (), {"name": f"{name}-dist"})()

    def load(self):
        if isinstance(self.loaded, BaseException):
            raise self.loaded
        return self.loaded


@pytest.fixture
def installed_plugins(monkeypatch):
    """``installed_plugins(*entry_points)``: these are the installed adapter plugins for the test."""
    from vreason_hooks.adapters import plugins

    def install(*eps):
        monkeypatch.setattr(
            plugins, "entry_points", lambda group: list(eps) if group == plugins.ENTRY_POINT_GROUP else []
        )
        adapters.refresh()

    yield install
    monkeypatch.undo()
    adapters.refresh()


def test_plugin_specs_come_from_the_entry_point_group(installed_plugins, tmp_path):
    path = tmp_path / "plugin.toml"
    path.write_text(SPEC.replace('name = "mine"', 'name = "plugged"').replace('["llama"]', '["gpt2"]'))
    installed_plugins(_EntryPoint("demo", lambda: [str(path)]))
    assert adapters.get("plugged").model_types == ["gpt2"]
    assert isinstance(adapters.get("plugged"), AdapterSpec)
    assert adapters.plugin_problems() == []


def test_a_broken_plugin_is_skipped_with_a_warning_naming_it_and_doctor_reports_it(
    installed_plugins, tmp_path
):
    """One plugin that cannot import (or raises) used to break every attach, `vreason adapters` and doctor."""
    from vreason_hooks.apps import doctor

    installed_plugins(_EntryPoint("broken", ImportError("No module named 'broken_pkg'")),
                      _EntryPoint("raising", lambda: 1 / 0))  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        names = [s.name for s in adapters.available()]
    assert "llama" in names  # the shipped adapters are all still there
    text = " | ".join(str(w.message) for w in caught)
    assert "broken = broken_pkg:specs (from broken-dist): skipped: it failed to load (ImportError" in text
    assert "raising = raising_pkg:specs (from raising-dist)" in text and "ZeroDivisionError" in text
    vreason.attach(T.tiny_llama()).detach()
    failures = [c for c in doctor.registry_checks() if not c.ok]
    assert failures and "broken_pkg" in failures[0].detail


def test_a_plugin_spec_reusing_a_shipped_name_or_model_type_is_shadowed_with_a_warning(
    installed_plugins, tmp_path
):
    same_type = tmp_path / "same_type.toml"
    same_type.write_text(SPEC.replace('name = "mine"', 'name = "my_llama"'))  # model_types = ["llama"]
    installed_plugins(_EntryPoint("shadow", lambda: [str(same_type)]))
    with pytest.warns(UserWarning, match=r"spec 'my_llama' shadowed: llama is a shipped adapter's"):
        adapters.available()
    assert adapters.find_adapter(T.tiny_llama()).name == "llama"
    assert [p.entry_point for p in adapters.plugin_problems()] == ["shadow = shadow_pkg:specs"]


# ---------------------------------------------------------------------------------------------- quirks as
# data
def _write(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


_BASE = """
name = "x"
model_types = ["qwen3_vl"]
[modules]
decoder_layers = "model.language_model.layers"
final_norm = "model.language_model.norm"
lm_head = "lm_head"
[span]
kind = "token"
token_id_field = "video_token_id"
"""


@pytest.mark.parametrize(
    "extra, key",
    [
        ('[positions]\nkind = "mrope"\nrope_deltas = "model.rope_deltas"\n', "positions"),
        ('[positions]\nkind = "plain"\nrows = 3\n', "positions"),
        ('[positions]\nkind = "rotary"\n', "positions.kind"),
        ('[processor]\nvideo_metadata = "yes"\n', "processor.video_metadata"),
        ('[config]\ntext_cfg = "text_config"\n', "config.text_cfg"),
    ],
)
def test_a_malformed_quirk_fails_at_load_naming_the_key(tmp_path, extra, key):
    with pytest.raises(SpecError, match=f"key '{key}'"):
        load_spec(_write(tmp_path, _BASE + extra))


@pytest.mark.parametrize(
    "extra, key",
    [
        (
            '[positions]\nkind = "mrope"\nrows = 3\nrope_deltas = "model.rope_delta"\n',
            "positions.rope_deltas",
        ),
        (
            '[positions]\nkind = "mrope"\nrows = 4\nrope_deltas = "model.rope_deltas"\n'
            'sections_field = "rope_parameters.mrope_section"\n',
            "positions.sections_field",
        ),
        ('[config]\ntext_config = "language_config"\n', "config.text_config"),
        ('[config]\nimage_token_id = "image_token_index"\n', "config.image_token_id"),
    ],
)
def test_a_wrong_field_fails_at_attach_naming_the_key(tmp_path, extra, key):
    from vreason_hooks.apps.testing import tiny_qwen3_vl

    spec = load_spec(_write(tmp_path, _BASE + extra))
    with pytest.raises(SpecError, match=f"key '{key}'"):
        vreason.attach(tiny_qwen3_vl(), adapter=spec).__enter__()


def test_the_docs_support_table_is_the_generated_one():
    from vreason_hooks.adapters import available
    from vreason_hooks.adapters.table import markdown_block

    docs = (Path(__file__).parents[2] / "docs" / "adapters.md").read_text()
    assert markdown_block(available(), adapters.refused()) in docs, (
        "regenerate the table: vreason adapters --markdown"
    )


def test_family_names_live_in_spec_files_only():
    """No engine module branches on a model family: quirks are spec data."""
    from vreason_hooks.adapters import available

    root = Path(__file__).parents[2] / "vreason_hooks"
    # the tiny-family records (data, one per family), their by-name aliases, the tiny checkpoint writers
    allowed = {"tiny_families.py", "testing.py", "tiny_checkpoints.py"}
    names = {s.name for s in available()} - {"llama", "qwen2"}  # text names also mean tokenizers/configs
    for path in root.rglob("*.py"):
        if path.name in allowed:
            continue
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, f"{path.name} names {name!r}"


@pytest.mark.parametrize(
    "key, path, says",
    [
        ("lm_head", "model.norm", "LlamaRMSNorm without a 2-D weight"),
        ("lm_head", "model.embed_tokens", "Embedding"),
        ("lm_head", "model.layers.1.mlp.down_proj", "Linear with 64 outputs"),
        ("lm_head", "model.layers", "ModuleList"),
        ("final_norm", "model.layers", "ModuleList"),
        ("final_norm", "model.layers.1", "LlamaDecoderLayer"),
        ("final_norm", "lm_head", "Linear"),
        (
            "final_norm",
            "model.layers.1.input_layernorm.weight",
            None,
        ),  # a Parameter: get_submodule refuses it
    ],
)
def test_spec_pointing_at_the_wrong_kind_of_module_is_refused_at_attach(tmp_path, key, path, says):
    spec = tmp_path / "wrong.toml"
    spec.write_text(
        SPEC.replace(f'{key} = "{"lm_head" if key == "lm_head" else "model.norm"}"', f'{key} = "{path}"')
    )
    model = T.tiny_llama()
    with pytest.raises(vreason.SpecError) as err:
        vreason.attach(model, adapter=spec)
    message = str(err.value)
    assert f"modules.{key}" in message and path in message and "\n" not in message
    if says:
        assert says in message
    assert not any(m._forward_hooks for m in model.modules())


def test_norm_and_head_of_every_shipped_family_pass_the_kind_check():
    for name, (build, _) in T.FAMILIES.items():
        model = build()
        resolved = adapters.resolve(model, name)
        assert resolved.lm_head.weight.shape[0] == model.config.get_text_config().vocab_size


TOKEN_SPEC = (
    SPEC.replace('model_types = ["llama"]', 'model_types = ["qwen2_5_vl"]')
    .replace('"model.layers"', '"model.language_model.layers"')
    .replace('"model.norm"', '"model.language_model.norm"')
)


@pytest.mark.parametrize(
    "field, shown",
    [
        ("tie_word_embeddings", "False (bool)"),  # a flag: int(False) would silently be token id 0
        ("text_config", "Qwen2_5_VLTextConfig"),  # a sub-config
        ("model_type", "'qwen2_5_vl' (str)"),
        ("architectures", "(list)"),
    ],
)
def test_span_token_field_that_is_not_a_token_id_is_refused(tmp_path, field, shown):
    spec = tmp_path / "bad_field.toml"
    spec.write_text(TOKEN_SPEC.replace('kind = "prompt"', f'kind = "token"\ntoken_id_field = "{field}"'))
    model = T.tiny_qwen2_5_vl()
    model.config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    with pytest.raises(vreason.SpecError) as err:
        vreason.attach(model, adapter=spec)
    message = str(err.value)
    assert "span.token_id_field" in message and field in message and shown in message and "\n" not in message
    ids = torch.tensor([[1, 2, T.VIDEO_TOKEN]])
    with pytest.raises(vreason.SpecError, match="not a token id"):
        load_spec(spec).span_positions(model.config, ids, None)


def test_attach_takes_a_mapping_and_names_a_wrong_config_type():
    model = T.tiny_llama()
    with vreason.attach(model, {"lr": 1e-3}) as session:
        assert session.config == vreason.VReasonConfig(lr=1e-3)
    with pytest.raises(TypeError, match="expected a VReasonConfig, a dict of its fields or None, got float"):
        vreason.attach(model, 0.1)
    with pytest.raises(vreason.ConfigError, match="lr=inf: must be a finite number"):
        vreason.attach(model, {"lr": float("inf")})
    assert not any(m._forward_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------- refused
def test_every_refused_family_really_has_a_controlled_layer_without_per_token_values():
    """The reasons in adapters/refused.toml are checked, not trusted: each family's default config ends on a
    layer V-Reason cannot edit, and asking for its adapter says why in one line."""
    from transformers import AutoConfig

    from vreason_hooks import transformers_seam

    assert adapters.refused()
    for family in adapters.refused():
        for model_type in family.model_types:
            config = AutoConfig.for_model(model_type)
            kinds = transformers_seam.config_layer_kinds(config)
            assert kinds and not kinds[-1].plain, (model_type, kinds[-1:])
            with pytest.raises(
                vreason.NoAdapterError, match=f"does not carry '{model_type}'.*{family.reason[:30]}"
            ):
                adapters.adapter_for_config(config)


def test_a_spec_newer_than_the_installed_transformers_is_refused_in_one_line():
    spec = adapters.get("llama").model_copy(update={"min_transformers": "99.0"})
    with pytest.raises(vreason.UnsupportedModelError, match=r"needs transformers>=99.0 .* is installed"):
        vreason.attach(T.tiny_llama(), adapter=spec)
