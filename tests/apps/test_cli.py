"""The ``vreason`` command line, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vreason_hooks.trace import Trace, load_traces, save_traces

pytestmark = pytest.mark.slow

VREASON = shutil.which("vreason", path=str(Path(sys.executable).parent)) or "vreason"
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "COLUMNS": "200",
    "OMP_NUM_THREADS": "1",
}


def vreason(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [VREASON, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 1, nothing but one ``vreason CMD: error: ...`` line on stderr, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vreason ") and ": error: " in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from vreason_hooks.apps.video_clips import write_clips

    out = tmp_path_factory.mktemp("clips")
    write_clips(out, n=1, frames=8, size=64)
    return out / "clip_000.mp4"


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory) -> Path:
    from vreason_hooks.apps.tiny_checkpoints import write_tiny_qwen2_5_vl

    return write_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen"))


def synthetic_trace(n: int, shift: float = 0.0, label: str = "") -> Trace:
    entropy = [1.0 + shift + (t % 5) * 0.3 for t in range(n)]
    ema, peak, e = [], [], 0.0
    for h in entropy:
        e = 0.9 * e + 0.1 * h
        ema.append(e)
        peak.append(max(peak[-1] if peak else e, e))
    alpha = [1 if e >= p else -1 for e, p in zip(ema, peak)]
    return Trace(
        entropy=entropy, ema=ema, peak=peak, alpha=alpha, update_steps=list(range(3, n, 4)), label=label
    )


# ---------------------------------------------------------------------------------------------- adapters
def test_adapters_lists_every_shipped_spec_with_its_source():
    result = vreason("adapters", "--json")
    assert result.returncode == 0, result.stderr
    listed = {item["name"]: item for item in json.loads(result.stdout)}
    from vreason_hooks.adapters import available

    assert set(listed) == {s.name for s in available()} >= {"qwen2_5_vl", "llava_onevision", "llama", "qwen2"}
    assert listed["qwen2_5_vl"]["model_types"] == ["qwen2_5_vl"]
    assert Path(listed["qwen2_5_vl"]["source"]).name == "qwen2_5_vl.toml"

    table = vreason("adapters")
    assert table.returncode == 0
    for name in listed:
        assert name in table.stdout
    assert "config.video_token_id" in table.stdout


# ---------------------------------------------------------------------------------------------- plot
def test_plot_writes_a_png_that_follows_the_trace(tmp_path):
    short = save_traces([synthetic_trace(20)], tmp_path / "short.json")
    other = save_traces([synthetic_trace(20, shift=1.5)], tmp_path / "other.json")
    pair = save_traces(
        [synthetic_trace(20, label="baseline"), synthetic_trace(60, 0.5, "V-Reason")], tmp_path / "pair.json"
    )

    result = vreason("plot", short)
    assert result.returncode == 0, result.stderr
    png = tmp_path / "short.png"  # default name: the trace file's, with .png
    assert result.stdout.strip() == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000

    assert vreason("plot", other, "-o", tmp_path / "other.png").returncode == 0
    assert vreason("plot", pair, "-o", tmp_path / "pair.png").returncode == 0
    assert vreason("plot", short, other, "-o", tmp_path / "overlay.png").returncode == 0
    images = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert len(set(images.values())) == 4, "different traces must give different images"
    assert len(images["pair.png"]) != len(images["short.png"])


def test_plot_picks_documents_of_an_lmms_eval_trace_file(tmp_path):
    """lmms-eval writes one ``{"doc_id", "trace"}`` line per document (``trace`` null when it failed)."""
    lines = [{"doc_id": d, "trace": None if d == 2 else synthetic_trace(10 + d).to_dict()} for d in range(15)]
    jsonl = tmp_path / "run_vreason_traces_task.jsonl"
    jsonl.write_text("\n".join(json.dumps(line) for line in lines))
    assert_one_line_error(vreason("plot", jsonl), "14 traces", "--index")  # too many to overlay
    assert_one_line_error(vreason("plot", jsonl, "--index", 2), "no generated tokens")
    assert_one_line_error(vreason("plot", jsonl, "--index", 15), "out of range")
    one = vreason("plot", jsonl, "--index", 0, "-o", tmp_path / "one.png")
    two = vreason("plot", jsonl, "--index", 0, 14, "-o", tmp_path / "two.png")
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert (tmp_path / "one.png").read_bytes() != (tmp_path / "two.png").read_bytes()


def test_plot_bad_inputs(tmp_path):
    assert_one_line_error(vreason("plot", tmp_path / "nope.json"), "does not exist")
    assert_one_line_error(vreason("plot", tmp_path), "is a directory")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("this is not json")
    assert_one_line_error(vreason("plot", garbage), "not a trace file")
    empty = save_traces([Trace()], tmp_path / "empty.json")
    assert_one_line_error(vreason("plot", empty), "no generated tokens")


def _malformed(trace: dict, **changes) -> dict:
    return {**trace, **changes}


@pytest.mark.parametrize(
    "content, needles",
    [
        (lambda t: _malformed(t, ema=t["ema"][:-3]), ["field 'ema' has 17 values for 20 tokens"]),
        (lambda t: _malformed(t, entropy="high"), ["field 'entropy' must be a list of numbers"]),
        (lambda t: _malformed(t, peak=[None] * 20), ["field 'peak' must be a list of numbers"]),
        (lambda t: _malformed(t, alpha=[0.5] * 20), ["field 'alpha' must be a list of whole numbers"]),
        (lambda t: _malformed(t, alpha=[2] * 20), ["field 'alpha' must hold only +1 and -1"]),
        (
            lambda t: _malformed(t, update_steps=[3, 99]),
            ["field 'update_steps' must index generated tokens 0..19"],
        ),
        (
            lambda t: [t, _malformed(t, grad_norm=[1.0])],
            ["trace 1", "field 'grad_norm' has 1 values for 5 update steps"],
        ),
        (lambda t: [1, 2, 3], ["trace 0", "a JSON number where a trace object was expected"]),
        (lambda t: {"hello": "world"}, ["none of the trace fields"]),
    ],
)
def test_plot_malformed_trace_is_named_not_matplotlib(tmp_path, content, needles):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content(synthetic_trace(20).to_dict())))
    line = assert_one_line_error(vreason("plot", path), "not a trace file", *needles)
    assert "matplotlib" not in line and "dimension" not in line and "Error;" not in line


def test_plot_negative_index_counts_from_the_end_and_is_labelled_by_position(tmp_path, monkeypatch, capsys):
    from vreason_hooks.apps import cli, plotting

    path = save_traces([synthetic_trace(10 + i) for i in range(3)], tmp_path / "three.json")
    drawn = []
    monkeypatch.setattr(
        plotting,
        "plot_traces",
        lambda traces, out, labels, title: drawn.append(([t.num_tokens for t in traces], labels)) or out,
    )
    assert cli.main(["plot", str(path), "--index", "-1", "0"]) == 0
    assert drawn == [([12, 10], ["trace #2", "trace"])]  # position from 0, never "#-1"
    for bad in ("-4", "3"):
        assert cli.main(["plot", str(path), "--index", bad]) == 1
        err = capsys.readouterr().err
        assert f"--index {bad} is out of range; valid: 0..2 (or -3..-1 from the end)" in err
        assert "IndexError" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["adapters", "--json"], ["adapters"]])
def test_output_into_a_closed_pipe_is_not_an_error(args):
    """`vreason adapters --json | head -2`: the reader leaves early; no "Broken pipe" error, exit 0."""
    proc = subprocess.Popen(
        [VREASON, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    proc.stdout.close()  # the reader is gone before the first write
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert err == ""


# ---------------------------------------------------------------------------------------------- run
def test_run_compare_on_a_tiny_checkpoint(tiny_qwen, clip, tmp_path):
    traces, png = tmp_path / "traces.json", tmp_path / "plot.png"
    result = vreason(
        "run",
        "--model",
        tiny_qwen,
        "--video",
        clip,
        "--question",
        "Which way does the shape move?",
        "--compare",
        "--max-new-tokens",
        12,
        "--frames",
        8,
        "--trace-out",
        traces,
        "--plot",
        png,
        "--step-interval",
        2,
        "--lr",
        0.05,
    )
    assert result.returncode == 0, result.stderr
    assert "adapter qwen2_5_vl" in result.stdout
    assert "8 of 8 frames" in result.stdout
    assert "baseline" in result.stdout and "V-Reason" in result.stdout
    baseline, controlled = load_traces(traces)
    assert (baseline.label, controlled.label) == ("baseline", "V-Reason")
    # The span is the video: 8 frames -> 4 temporal groups x (56/28)^2 = 16 video tokens.
    assert len(controlled.span) == 16 and controlled.adapter == "qwen2_5_vl"
    assert baseline.update_steps == [] and controlled.config["objective"] == "switch"
    assert controlled.update_steps[:3] == [1, 3, 5] and controlled.config["lr"] == 0.05
    assert baseline.num_tokens == controlled.num_tokens == 12  # random weights never emit EOS this early
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_lite_prefill_prunes_the_video(tiny_qwen, clip, tmp_path):
    traces = tmp_path / "traces.json"
    result = vreason(
        "run",
        "--model",
        tiny_qwen,
        "--video",
        clip,
        "--question",
        "Which way?",
        "--max-new-tokens",
        4,
        "--frames",
        8,
        "--trace-out",
        traces,
        "--lite",
        "prefill",
        "--prune-ratio",
        0.25,
    )
    assert result.returncode == 0, result.stderr
    (trace,) = load_traces(traces)
    assert trace.config["lite"] is True and trace.config["prune_at"] == "prefill"
    assert trace.config["prune_scope"] == "per_layer"
    assert len(trace.span) == 16 and len(trace.pruned) == 4 and set(trace.pruned) <= set(trace.span)


def test_run_bad_inputs(tiny_qwen, clip, tmp_path):
    def run(*extra, model=tiny_qwen, video=clip):
        return vreason(
            "run", "--model", model, "--video", video, "--question", "q?", "--max-new-tokens", 2, *extra
        )

    assert_one_line_error(run(video=tmp_path / "missing.mp4"), "does not exist")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    assert_one_line_error(run(video=broken), "cannot read video")
    # The download hint names the model asked for (it named Qwen2.5-VL-7B whatever the model).
    assert_one_line_error(
        run(model="no-such-org/no-such-model"),
        "not a local folder",
        "`hf download no-such-org/no-such-model`",
    )
    assert_one_line_error(run(model=tmp_path / "missing"), "no such checkpoint folder")
    assert_one_line_error(run(video=tmp_path), "is a folder: pass a video file")  # was: "does not exist"
    assert_one_line_error(run(model=tmp_path), "no config.json")

    from transformers import GPT2Config, LlamaConfig

    gpt2 = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_embd=8, n_head=1).save_pretrained(gpt2)
    assert_one_line_error(run(model=gpt2), "no adapter matches model_type='gpt2'", "adding-a-model")
    llama = tmp_path / "llama"
    LlamaConfig(num_hidden_layers=1, hidden_size=8, num_attention_heads=1).save_pretrained(llama)
    assert_one_line_error(run(model=llama), "text-only model")

    unknown = tmp_path / "unknown.toml"
    unknown.write_text("lr = 1e-3\nlearning_rate = 2\n")
    assert_one_line_error(run("--config", unknown), "bad config file", "unknown field 'learning_rate'")
    broken_toml = tmp_path / "broken.toml"
    broken_toml.write_text("lr = = 3\n")
    assert_one_line_error(run("--config", broken_toml), "not valid TOML")
    negative = tmp_path / "negative.json"
    negative.write_text('{"step_interval": 0}')
    assert_one_line_error(run("--config", negative), "field 'step_interval'")
    assert_one_line_error(run("--config", tmp_path / "missing.toml"), "config file", "does not exist")


def _partial_checkpoint(source: Path, out: Path, without: str = "", config_edit: dict | None = None) -> Path:
    """A checkpoint folder of symlinks to ``source``'s files, less ``without``, with ``config.json``
    edited."""
    out.mkdir()
    for file in source.iterdir():
        if file.name == without:
            continue
        if file.name == "config.json" and config_edit:
            (out / file.name).write_text(json.dumps({**json.loads(file.read_text()), **config_edit}))
        else:
            (out / file.name).symlink_to(file)
    return out


@pytest.mark.parametrize(
    "without, config_edit, needles",
    [
        ("tokenizer.json", None, ["is incomplete", "no tokenizer.json", "save_pretrained"]),
        ("processor_config.json", None, ["is incomplete", "no processor_config.json", "save_pretrained"]),
        ("model.safetensors", None, ["is incomplete", "no weights (model.safetensors"]),
        ("chat_template.jinja", None, ["no chat template", "chat_template.jinja"]),
        # A tokenizer of another model: its <|video_pad|> id is not the one config.json expects.
        (
            "",
            {"video_token_id": 151655},
            ["maps the video token '<|video_pad|>' to id 151656", "video_token_id = 151655"],
        ),
    ],
)
def test_run_on_an_incomplete_checkpoint_names_what_is_missing(
    tiny_qwen, clip, tmp_path, without, config_edit, needles
):
    model = _partial_checkpoint(tiny_qwen, tmp_path / "partial", without, config_edit)
    result = vreason("run", "--model", model, "--video", clip, "--question", "q?", "--max-new-tokens", 2)
    line = assert_one_line_error(result, *needles)
    assert "video tokens do not match" not in line and "huggingface.co" not in line


def test_run_reads_a_yaml_config_and_names_the_accepted_formats(tiny_qwen, clip, tmp_path):
    def run(config):
        return vreason(
            "run",
            "--model",
            tiny_qwen,
            "--video",
            clip,
            "--question",
            "q?",
            "--max-new-tokens",
            3,
            "--frames",
            8,
            "--config",
            config,
            "--trace-out",
            tmp_path / "t.json",
        )

    good = tmp_path / "c.yaml"
    good.write_text("lr: 0.05\nstep_interval: 1\nobjective: max\n")
    result = run(good)
    assert result.returncode == 0, result.stderr
    (trace,) = load_traces(tmp_path / "t.json")
    assert (trace.config["lr"], trace.config["step_interval"], trace.config["objective"]) == (0.05, 1, "max")
    assert trace.update_steps == [1, 2]  # k = 1: after every token but the prefill's

    ini = tmp_path / "c.ini"
    ini.write_text("lr = 1\n")
    assert_one_line_error(run(ini), "bad config file", "unknown type '.ini'", ".toml, .json, .yaml, .yml")
    bad_yaml = tmp_path / "bad.yml"
    bad_yaml.write_text("lr: [0.1\n")
    assert_one_line_error(run(bad_yaml), "bad config file", "not valid YAML")
    inf = tmp_path / "inf.yaml"
    inf.write_text("lr: .inf\n")
    assert_one_line_error(run(inf), "field 'lr'", "finite number in [0, 10]")
    assert_one_line_error(run(tmp_path), "config file", "is a directory")


def test_settings_out_of_range_name_the_range(tmp_path):
    assert_one_line_error(vreason("demo", "--lr", "inf", "--out", tmp_path), "field 'lr'", "[0, 10]")
    assert_one_line_error(
        vreason("demo", "--ema-beta", "nan", "--out", tmp_path), "field 'ema_beta'", "(0, 1)"
    )
    decay = tmp_path / "decay.toml"
    decay.write_text("lr = 8.0\nweight_decay = 0.5\n")
    assert_one_line_error(
        vreason("demo", "--config", decay, "--out", tmp_path), "lr · weight_decay", "below 1"
    )
    assert not (tmp_path / "report.json").exists()


def test_demo_bad_settings(tmp_path):
    """Settings are checked before the model loads: a bad value costs a second, not a model load."""
    assert_one_line_error(
        vreason("demo", "--lr", "-1", "--out", tmp_path), "bad V-Reason setting", "field 'lr'"
    )
    assert_one_line_error(vreason("demo", "--config", tmp_path / "missing.toml"), "does not exist")
    assert not (tmp_path / "report.json").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = vreason("--debug", "plot", tmp_path / "nope.json")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "CliError" in result.stderr
    after = vreason("plot", tmp_path / "nope.json", "--debug")
    assert "Traceback" in after.stderr


def test_usage_errors_exit_2():
    result = vreason("run", "--video", "x.mp4")
    assert result.returncode == 2 and "--model" in result.stderr
    assert vreason("frobnicate").returncode == 2
    zero = vreason("demo", "--limit", "0")
    assert zero.returncode == 2 and "--limit: must be at least 1" in zero.stderr


def test_cli_module_does_not_import_heavy_libraries():
    """``vreason --help`` must be quick: transformers and matplotlib are imported by the commands only."""
    code = (
        "import sys, vreason_hooks.apps.cli; print(sorted(m for m in ('transformers', 'matplotlib') if m in "
        "sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr


def test_model_output_is_printed_as_text_not_markup():
    """A model that writes "[/think]" must not crash the table (rich would read it as a closing tag)."""
    from rich.console import Console

    from vreason_hooks.apps import cli
    from vreason_hooks.apps.videoqa import Answer
    from vreason_hooks.config import VReasonConfig

    text = "<think>[/think] [bold]x[/bold]</think><answer>[/answer]</answer>"
    console = Console(record=True, width=200)
    cli.print_answers(
        console, [Answer("V-Reason", text, "[/answer]", 5, 0.1, synthetic_trace(5))], VReasonConfig()
    )
    printed = console.export_text()
    assert "[/think] [bold]x[/bold]" in printed and "[/answer]" in printed


# ---------------------------------------------------------------------------------------------- outputs
def _main_error(capsys, *argv) -> str:
    """``cli.main(argv)`` in process: exit code 1 and one ``error:`` line on stderr, returned."""
    from vreason_hooks.apps import cli

    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and ": error: " in err[0], err
    return err[0]


def test_run_checks_every_output_path_before_anything_loads(tmp_path, capsys):
    """The model and the video do not exist: an output error can only be reported first if it is checked
    at start-up, before the video is read and the model loaded (a 7B model must not run for nothing)."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "traces-dir").mkdir()
    (tmp_path / "plot-dir.png").mkdir()
    run = ["run", "--model", tmp_path / "no-model", "--video", tmp_path / "no.mp4", "--question", "q?"]
    cases = [
        (["--trace-out", tmp_path / "traces-dir"], "--trace-out", "a folder, not a file", "traces.json"),
        (["--trace-out", tmp_path / "file" / "t.json"], "--trace-out", "is a file, not a folder"),
        (["--plot", tmp_path / "plot-dir.png"], "--plot", "a folder, not a file"),
        (["--plot", tmp_path / "file" / "p.png"], "--plot", "cannot write there"),
        (["--plot", tmp_path / "p.gif"], "--plot", "must end in .png, .svg, .pdf"),
        (["--trace-out", tmp_path / "same.png", "--plot", tmp_path / "same.png"], "name the same file"),
    ]
    for extra, *needles in cases:
        line = _main_error(capsys, *run, *extra)
        assert line.startswith("vreason run: error: ") and all(n in line for n in needles), line
        assert "video" not in line and "no-model" not in line


def test_plot_output_is_checked_first_and_the_printed_path_is_the_written_one(tmp_path, capsys):
    trace = save_traces([synthetic_trace(10)], tmp_path / "t.json")
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    assert "-o " in _main_error(capsys, "plot", trace, "-o", tmp_path / "noext")
    assert "a folder, not a file" in _main_error(capsys, "plot", trace, "-o", tmp_path / "dir")
    assert "cannot write there" in _main_error(capsys, "plot", trace, "-o", tmp_path / "file" / "p.png")
    # Checked before the traces are read: a missing trace file is not what is reported.
    assert "must end in" in _main_error(capsys, "plot", tmp_path / "nope.json", "-o", tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file", "t.json"]  # nothing else written
    assert list((tmp_path / "dir").iterdir()) == []


def test_lite_only_flags_without_lite_are_refused(tmp_path, capsys):
    line = _main_error(capsys, "demo", "--prune-ratio", "0.3", "--out", tmp_path / "demo")
    assert "--prune-ratio applies to V-Reason Lite only: add --lite" in line
    line = _main_error(
        capsys,
        "run",
        "--model",
        tmp_path,
        "--video",
        tmp_path / "v.mp4",
        "--question",
        "q",
        "--prune-scope",
        "per_layer",
    )
    assert "--prune-scope applies to V-Reason Lite only" in line
    # Lite switched on by the config file: the flag is not ignored, so it is accepted.
    from vreason_hooks.apps import cli

    lite = tmp_path / "lite.toml"
    lite.write_text("lite = true\n")
    args = cli.build_parser().parse_args(
        [
            "run",
            "--model",
            "m",
            "--video",
            "v",
            "--question",
            "q",
            "--config",
            str(lite),
            "--prune-ratio",
            "0.3",
        ]
    )
    assert cli._settings(args).prune_ratio == 0.3


def test_demo_out_that_is_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "report.txt"
    out.write_text("x")
    line = _main_error(capsys, "demo", "--out", out)
    assert "--out" in line and "a file, not a folder; pass a folder" in line and "File exists" not in line


def test_closed_stdout_stops_the_printing_not_the_files(tiny_qwen, clip, tmp_path):
    """`vreason run ... --trace-out T.json | head -1`: the reader leaves after one line (here: before the
    first); the traces and the plot asked for are still written, and it is not an error."""
    traces, png = tmp_path / "T.json", tmp_path / "P.png"
    argv = ["run", "--model", tiny_qwen, "--video", clip, "--question", "q?", "--frames", 8]
    argv += ["--max-new-tokens", 3, "--trace-out", traces, "--plot", png]
    proc = subprocess.Popen(
        [VREASON, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV
    )
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=600) == 0, err
    assert err == ""
    (trace,) = load_traces(traces)
    assert trace.num_tokens == 3 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("command", [["adapters"], ["plot", "TRACE", "-o", "OUT"]])
def test_stdout_closed_before_start_is_not_an_error(tmp_path, command):
    """`vreason adapters >&-`: no unrelated "'NoneType' object has no attribute 'flush'" error; files are
    still written."""
    trace = save_traces([synthetic_trace(10)], tmp_path / "t.json")
    out = tmp_path / "o.png"
    argv = [{"TRACE": str(trace), "OUT": str(out)}.get(a, a) for a in command]
    result = subprocess.run(
        [VREASON, *argv],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        timeout=300,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert out.exists() == ("-o" in command)


@pytest.mark.parametrize("terminal", [False, True])
def test_adapter_names_never_wrap(terminal):
    """Piped (any width) or on an 80-column terminal, every adapter name and lmms-eval model name is whole
    on one line: `llava_next` / `_video` would read as two adapters."""
    from vreason_hooks.adapters import available

    env = {**ENV, "COLUMNS": "80", **({"TTY_COMPATIBLE": "1"} if terminal else {})}
    result = subprocess.run([VREASON, "adapters"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    lines = text.splitlines()
    specs = available()
    for spec in specs:
        assert any(re.search(rf"(^|[\s│]){re.escape(spec.name)}([\s│]|$)", line) for line in lines), spec.name
        if spec.lmms_eval_model:
            assert spec.lmms_eval_model in text
    if terminal:
        assert max(map(len, lines)) <= 80
    else:  # one line per adapter, for grep
        assert all(sum(f"│ {s.name} " in line for line in lines) == 1 for s in specs)
