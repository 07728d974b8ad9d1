"""Output paths checked before any work, a stdout whose reader went away, and checkpoint names (fast, in
process)."""

from __future__ import annotations

import io
import os

import pytest

from vreason_hooks.apps.checkpoints import CheckpointError, read_checkpoint_config
from vreason_hooks.apps.outputs import (
    OutputPathError,
    ReaderSafeStdout,
    output_file,
    output_folder,
    reader_safe_stdout,
)
from vreason_hooks.errors import VReasonError

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


# ---------------------------------------------------------------------------------------------- output paths
def test_output_file_refuses_what_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir.png").mkdir()
    cases = {
        "a folder, not a file; pass a file name, such as": tmp_path / "dir.png",
        "a folder, not a file": f"{tmp_path}/not-yet/",  # a trailing slash means a folder, even a missing one
        "the file name must end in .png, .svg": tmp_path / "noext",
        "cannot write there": tmp_path / "file" / "plot.png",
        "is a file, not a folder": tmp_path / "file" / "deeper" / "plot.png",
    }
    for needle, path in cases.items():
        with pytest.raises(OutputPathError, match=needle) as err:
            output_file(path, "--plot", (".png", ".svg"))
        assert str(err.value).startswith(f"--plot {path}: ") and "\n" not in str(err.value)
        assert isinstance(err.value, VReasonError)
    assert output_file(tmp_path / "new" / "deeper" / "p.png", "--plot", (".png",)).name == "p.png"
    assert not (tmp_path / "new").exists()  # a file check creates nothing


def test_output_folder_is_created_or_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=r"^trace_dir=\S+/file: a file, not a folder"):
        output_folder(tmp_path / "file", "trace_dir=")
    with pytest.raises(OutputPathError, match=r"^--out \S+/file/out: cannot write there: .* is a file"):
        output_folder(tmp_path / "file" / "out", "--out")
    made = output_folder(tmp_path / "a" / "b", "--out")
    assert made.is_dir() and made.is_absolute() and list(made.iterdir()) == []  # the write test cleans up


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="is not writable"):
            output_file(locked / "t.json", "--trace-out")
        with pytest.raises(OutputPathError, match="cannot write there"):
            output_folder(locked / "out", "--out")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------------------------- stdout
def test_a_closed_pipe_silences_the_stream_without_raising():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone (`| head -1` has exited)
    stream = os.fdopen(write_end, "w")
    guarded = ReaderSafeStdout(stream)
    print("x" * 100_000, file=guarded, flush=True)  # more than a pipe buffer
    guarded.write("more")
    guarded.flush()
    assert guarded.reader_gone
    stream.write("leftover")
    stream.close()  # its descriptor now points at devnull: the final flush succeeds


def test_a_stdout_closed_before_start_discards_and_says_so():
    guarded = ReaderSafeStdout(None)  # python sets sys.stdout = None when started with `>&-`
    assert guarded.write("hello") == 5 and guarded.reader_gone
    guarded.flush()


def test_reader_safe_stdout_passes_output_through_and_puts_stdout_back(capsys):
    import sys

    before = sys.stdout
    with reader_safe_stdout() as guarded:
        print("through")
        assert sys.stdout is guarded and not guarded.reader_gone
    assert sys.stdout is before
    assert capsys.readouterr().out == "through\n"


def test_rich_prints_through_the_guard():
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=ReaderSafeStdout(buffer), width=40).print("[bold]hi[/]")
    assert buffer.getvalue().strip() == "hi"


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_names_are_one_line_and_say_what_to_pass(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "missing"): "no such checkpoint folder",  # not the hub's "Repo id must be in the form"
        "./missing-folder": "no such checkpoint folder",
        str(tmp_path / "empty"): "no config.json in this folder",
        str(tmp_path / "file"): "a file, not a checkpoint folder",
        # A hub id not in the cache: the download hint names this model, not the paper's.
        "no-such-org/no-such-model": "`hf download no-such-org/no-such-model`",
    }
    for name, needle in cases.items():
        with pytest.raises(CheckpointError) as err:
            read_checkpoint_config(name, f"pretrained={name}")
        message = str(err.value)
        assert message.startswith(f"pretrained={name}: ") and needle in message and "\n" not in message
        assert "Repo id" not in message and "Qwen2.5-VL-7B" not in message
