"""Read a video file into a few evenly spaced RGB frames under a pixel budget (decord, PyAV as fallback).

Defaults follow the evaluation protocol the paper uses (Video-R1's): 16 to 32 frames of about
``256 * 28 * 28`` pixels each. We default to 16 frames (Video-R1's training setting, and half the memory);
``num_frames=32`` is the other end of the paper's range. Sides are rounded to multiples of 28 (the
Qwen2.5-VL patch 14 times its 2x2 merge), the same rule as ``qwen_vl_utils.smart_resize``, so the model's
processor keeps the frames as they are.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VReasonError

DEFAULT_NUM_FRAMES = 16
"""Frames sampled per video (paper: 16-32)."""
DEFAULT_MAX_PIXELS = 256 * 28 * 28
"""Pixel budget per frame (paper: about 256 x 28 x 28 = 200,704)."""
DEFAULT_MIN_PIXELS = 4 * 28 * 28
"""Smallest frame area kept (``qwen_vl_utils``'s video minimum, 128 x 28 x 28, is far above tiny test
clips)."""
SIDE_FACTOR = 28


class VideoError(VReasonError, OSError):
    """A video file is missing, unreadable, or has no video stream."""


@dataclass
class Frames:
    """Frames sampled from one video.

    Attributes:
        pixels: ``(num_frames, height, width, 3)`` uint8 RGB, already resized.
        indices: frame numbers in the source video, one per sampled frame.
        fps: the source frame rate (0 when the container does not say).
        total_frames: number of frames in the source video.
        backend: ``"decord"`` or ``"pyav"``.
    """

    pixels: np.ndarray
    indices: list[int]
    fps: float
    total_frames: int
    backend: str


def sample_indices(total: int, num_frames: int) -> list[int]:
    """``num_frames`` evenly spaced frame numbers from ``0`` to ``total - 1`` (all frames when fewer)."""
    if total <= 0:
        return []
    if total <= num_frames:
        return list(range(total))
    return [round(float(x)) for x in np.linspace(0, total - 1, num_frames)]


def fit_size(
    height: int,
    width: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    factor: int = SIDE_FACTOR,
) -> tuple[int, int]:
    """Output ``(height, width)``: multiples of ``factor``, aspect ratio kept, area within the budget.

    The rule of ``qwen_vl_utils.smart_resize``: round each side to the nearest multiple, then scale down
    (or up) by the square root of the area ratio when the area leaves ``[min_pixels, max_pixels]``.
    """
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def _resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if pixels.shape[1:3] == size:
        return pixels
    height, width = size
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in pixels])


def _read_decord(path: Path, num_frames: int):
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    total = len(reader)
    indices = sample_indices(total, num_frames)
    if not indices:
        raise ValueError("no frames")
    return reader.get_batch(indices).asnumpy(), indices, float(reader.get_avg_fps() or 0.0), total


def _read_pyav(path: Path, num_frames: int):
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or 0.0)
        total = stream.frames
        if total <= 0:  # the container does not say: count by decoding once
            total = sum(1 for _ in container.decode(stream))
            container.seek(0)
        wanted = sample_indices(total, num_frames)
        keep, frames = set(wanted), {}
        for i, frame in enumerate(container.decode(stream)):
            if i in keep:
                frames[i] = frame.to_ndarray(format="rgb24")
            if i >= wanted[-1]:
                break
    # A header can over-count frames; keep the ones that decoded.
    indices = [i for i in wanted if i in frames]
    if not indices:
        raise ValueError("no frames decoded")
    return np.stack([frames[i] for i in indices]), indices, fps, total


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence FFmpeg's own log lines (written by C code to fd 2) while probing: the caller reports errors."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a notebook): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


BACKENDS = {"decord": _read_decord, "pyav": _read_pyav}


def read_frames(
    path: str | Path,
    num_frames: int = DEFAULT_NUM_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    backend: str = "auto",
) -> Frames:
    """Sample ``num_frames`` evenly spaced frames of ``path`` and resize them to the pixel budget.

    Args:
        path: any container decord or PyAV can open (mp4, mkv, webm, avi, ...).
        num_frames: frames to sample (all frames when the video is shorter).
        max_pixels: largest area of one output frame.
        min_pixels: smallest area of one output frame.
        backend: ``"decord"``, ``"pyav"``, or ``"auto"`` (decord, then PyAV if decord is missing or fails).

    Raises:
        VideoError: the file is missing or no backend can decode it.
    """
    path = Path(path)
    if path.is_dir():
        raise VideoError(f"video {path} is a folder: pass a video file (mp4, mkv, webm, avi, ...)")
    if not path.is_file():
        raise VideoError(f"video file {path} does not exist: check the path")
    if num_frames < 1:
        raise VReasonError(f"num_frames must be at least 1, got {num_frames}")
    if backend not in ("auto", *BACKENDS):
        raise VReasonError(f"unknown video backend {backend!r}: use auto, decord or pyav")
    names = list(BACKENDS) if backend == "auto" else [backend]
    problems = []
    for name in names:
        try:
            with _quiet_native_stderr():
                pixels, indices, fps, total = BACKENDS[name](path, num_frames)
        except ImportError:
            problems.append(f"{name} is not installed")
            continue
        except Exception as err:  # noqa: BLE001 - decord and PyAV raise their own types; all mean "cannot read"
            problems.append(f"{name}: {str(err).splitlines()[0][:120] if str(err) else type(err).__name__}")
            continue
        size = fit_size(pixels.shape[1], pixels.shape[2], max_pixels, min_pixels)
        return Frames(_resize(pixels, size), indices, fps, total, name)
    if all(p.endswith("not installed") for p in problems):
        raise VideoError(f"no video reader installed ({'; '.join(problems)}): pip install decord av")
    raise VideoError(
        f"cannot read video {path} ({'; '.join(problems)}): is it a video file? Try converting it to H.264 "
        "mp4"
    )
