"""Where the applications write: every output path checked at start-up, and a stdout that may go away.

* :func:`output_file` / :func:`output_folder`: one check of a path the user passed for output (``vreason run
  --trace-out`` / ``--plot``, ``vreason plot -o``, ``vreason demo --out``, ``vreason reproduce --out``, the
  lmms-eval integration's ``trace_dir=``), done before any model loads, so that a read-only folder, a
  folder where a file was meant or a parent that is a file costs a second, not a 7B model load and a
  generation. The error is one line that says what to pass instead.
* :func:`reader_safe_stdout`: ``sys.stdout`` for the duration of a command. When the reader goes away (a
  pipe closed early, ``vreason run ... | head -1``; stdout closed, ``>&-``) printing stops quietly and the
  command carries on: a closed stdout may stop the printing, never the files the user asked for.

Imports stay light (no torch, no matplotlib): the CLI module imports this at start-up.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import VReasonError


class OutputPathError(VReasonError, ValueError):
    """An output path that cannot be written; the message names the option and what to pass instead."""


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _label(what: str, name: str) -> str:
    """How the user passed the path: ``--plot x.png``, or ``trace_dir=/x`` for a ``what`` ending in ``=``."""
    return f"{what}{name}" if what.endswith("=") else f"{what} {name}"


def _check_parent(label: str, path: Path) -> None:
    """The folder ``path`` goes in exists or can be created, and can be written."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OutputPathError(
            f"{label}: cannot write there: {base} is a file, not a folder; pass a path inside a folder"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{label}: cannot write there: the folder {base} is not writable; pass a path in a folder you "
            "can write"
        )


def output_file(name: str | os.PathLike, what: str, suffixes: Sequence[str] = (), example: str = "") -> Path:
    """``Path(name)`` if a file can be written there, else a one-line :class:`OutputPathError`.

    Nothing is created. Args:
        what: how the user passed it (``"--plot"``, or ``"trace_dir="``), the start of the message.
        suffixes: the accepted suffixes (lower case, with the dot); empty: any.
        example: a file name to suggest when ``name`` is a folder (default: ``out`` + the first suffix).
    """
    label, path = _label(what, str(name)), Path(name).expanduser()
    if path.is_dir() or str(name).endswith(("/", os.sep)):  # `runs/`: meant as a folder, even if missing
        suggestion = path / (example or f"out{suffixes[0] if suffixes else ''}")
        raise OutputPathError(f"{label}: a folder, not a file; pass a file name, such as {suggestion}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise OutputPathError(
            f"{label}: the file name must end in {', '.join(suffixes)} (the suffix picks the format)"
        )
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{label}: the file exists and cannot be overwritten (no permission)")
    _check_parent(label, path)
    return path


def output_folder(name: str | os.PathLike, what: str) -> Path:
    """``name`` as an absolute folder, created if missing and proven writable (a file is written there and
    removed), else a one-line :class:`OutputPathError`."""
    label, path = _label(what, str(name)), Path(name).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{label}: a file, not a folder; pass a folder (it is created if missing)")
    _check_parent(label, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        raise OutputPathError(
            f"{label}: cannot write there ({err.strerror or err}); pass a folder you can write"
        ) from None
    return path


# ---------------------------------------------------------------------------------------------- stdout
class ReaderSafeStdout(io.TextIOBase):
    """A text stream in front of the real stdout that never raises because the reader went away.

    The first write or flush that finds the pipe closed (``BrokenPipeError``), or a stdout that was closed
    before the process started (``sys.stdout`` is ``None``), switches it to discarding: later output goes
    nowhere, and the real stdout's descriptor is pointed at ``os.devnull`` so that the interpreter's own
    last flush does not fail either (nor can a file opened later take descriptor 1).
    ``reader_gone`` says whether that happened.
    """

    def __init__(self, stream: io.TextIOBase | None) -> None:
        super().__init__()
        self.reader_gone = False
        self._stream: io.TextIOBase | None = stream
        if stream is None or not _descriptor_open(stream):
            self._discard()

    def write(self, text: str) -> int:
        if self._stream is not None:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._discard()
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._discard()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def fileno(self) -> int:
        if self._stream is None:
            raise io.UnsupportedOperation("stdout was closed by its reader")
        return self._stream.fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    def _discard(self) -> None:
        self.reader_gone = True
        stream, self._stream = self._stream, None
        try:
            fd = stream.fileno() if stream is not None else 1
        except (OSError, ValueError):  # not a real descriptor (captured by a test or a notebook)
            return
        if stream is not None or not _descriptor_open(fd):  # fd 1 not ours when sys.stdout was None: keep it
            _point_at_devnull(fd)


def _descriptor_open(stream: io.TextIOBase | int) -> bool:
    """Whether ``stream``'s descriptor (or descriptor ``stream``) is open; a stream without one (a capture
    object) counts as open."""
    try:
        fd = stream if isinstance(stream, int) else stream.fileno()
    except (OSError, ValueError):
        return True
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _point_at_devnull(fd: int) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        if devnull != fd:
            os.dup2(devnull, fd)
            os.close(devnull)
    except OSError:
        os.close(devnull)


@contextlib.contextmanager
def reader_safe_stdout() -> Iterator[ReaderSafeStdout]:
    """``sys.stdout`` is a :class:`ReaderSafeStdout` inside; the previous one is put back after."""
    previous = sys.stdout
    guarded = ReaderSafeStdout(previous)
    sys.stdout = guarded
    try:
        yield guarded
    finally:
        guarded.flush()
        sys.stdout = previous
