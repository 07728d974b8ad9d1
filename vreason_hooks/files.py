"""Reading and writing the user's files (configs, adapter specs, traces): every failure one line naming the
file."""

from __future__ import annotations

from pathlib import Path

from .errors import VReasonError


def read_text(path: Path, what: str, error: type[VReasonError]) -> str:
    """The UTF-8 text of ``path``; a missing file, a folder, an unreadable or non-UTF-8 file is one ``error``
    line naming ``what`` and the file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{what} {path}: is a folder, not a file") from None
    except PermissionError:
        raise error(f"{what} {path}: not readable (permission denied)") from None
    except UnicodeDecodeError as err:
        raise error(f"{what} {path}: not UTF-8 text (byte {err.start}); pass the text file itself") from None


def write_text(path: Path, text: str, what: str, error: type[VReasonError]) -> Path:
    """Write ``text`` to ``path`` (creating its folder); a folder in the way, a file where a folder should be
    or no permission is one ``error`` line naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except IsADirectoryError:
        raise error(f"{what} {path}: is a folder; pass a file name (e.g. {path / 'traces.json'})") from None
    except (FileExistsError, NotADirectoryError):
        raise error(f"{what} {path}: a parent of it is a file, not a folder") from None
    except PermissionError:
        raise error(f"{what} {path}: not writable (permission denied)") from None
    return path
