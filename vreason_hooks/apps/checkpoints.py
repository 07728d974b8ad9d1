"""A checkpoint named by the user (``vreason run --model``, ``vreason reproduce --model``, lmms-eval's
``pretrained=``): its config read before anything else, every problem one line that says what to pass.

A name is a local folder or a hub id (``org/name``) already in the local Hugging Face cache. A name that can
only be a path (absolute, ``./``, ``~``, more than one ``/``) and names no folder is reported as a missing
folder, not with the hub's "Repo id must be in the form ..." message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import VReasonError


class CheckpointError(VReasonError, OSError):
    """A checkpoint that is missing, incomplete or unreadable; the message names it and what to pass."""


def looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else that names no existing folder was meant as one."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def checkpoint_location(name: str, label: str) -> str:
    """``name`` as ``from_pretrained`` should get it (an existing folder made absolute, else the hub id), or a
    one-line :class:`CheckpointError`: a file, a folder without ``config.json``, a path to no folder.

    ``label``: how the user passed it (``"--model X"``, ``"pretrained=X"``), the start of every message."""
    path = Path(name).expanduser()
    if path.is_file():
        raise CheckpointError(f"{label}: a file, not a checkpoint folder; pass the folder with config.json")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{label}: no config.json in this folder; pass a transformers checkpoint folder (what "
                "save_pretrained writes)"
            )
        return str(path.resolve())
    if looks_like_path(name):
        raise CheckpointError(
            f"{label}: no such checkpoint folder; pass an existing folder, or a hub id (org/name) already in "
            "the local Hugging Face cache"
        )
    return name


def read_checkpoint_config(name: str, label: str, trust_remote_code: bool = False) -> Any:
    """The transformers config of checkpoint ``name`` (no weights), or a one-line :class:`CheckpointError`
    (see :func:`checkpoint_location`; a hub id that is not in the local cache names ``hf download``)."""
    from transformers import AutoConfig

    location = checkpoint_location(name, label)
    try:
        return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        if Path(location).is_dir():
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise CheckpointError(f"{label}: cannot read its config.json ({first[:200]})") from None
        raise CheckpointError(
            f"{label}: not a local folder and not in the local Hugging Face cache; pass a checkpoint folder, "
            f"or download the model first (`hf download {name}`)"
        ) from None
