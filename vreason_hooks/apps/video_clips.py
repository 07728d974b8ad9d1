"""Deterministic synthetic video clips with multiple-choice questions whose answers are known by construction.

Each clip is a few frames of coloured shapes on a black background in which one thing happens: a shape
moves, a shape appears, a shape changes colour, or a number of shapes are shown. The same ``(seed, index)``
always gives the same pixels, question, options and answer, so tests and benchmarks need no download.

    items = write_clips("/tmp/clips", n=8)       # writes clip_000.mp4 ... and returns the questions
    items[0]["question"], items[0]["options"], items[0]["answer"]  # "...", ["A. left", ...], "B"

Frames are ``uint8`` arrays of shape ``(frames, size, size, 3)``; files are MPEG-4 part 2 in mp4 (decodable
by decord, PyAV and ffmpeg), written with PyAV.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
}
SHAPES = ("square", "circle", "triangle")
KINDS = ("move", "appear", "change", "count")
LETTERS = "ABCD"


@dataclass(frozen=True)
class ClipItem:
    """One clip and its question. ``answer`` is the letter of the right option."""

    id: str
    kind: str
    video: str
    question: str
    options: list[str]
    answer: str

    def prompt(self) -> str:
        """Question and lettered options, one per line."""
        return "\n".join([self.question, *self.options])


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean mask ``(size, size)`` of ``shape`` centred at ``(cx, cy)`` with half-width ``r`` pixels."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "square":
        return (np.abs(x - cx) <= r) & (np.abs(y - cy) <= r)
    if shape == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r
    # Upward triangle: inside the box, and |x - cx| grows with the distance from the apex.
    top = cy - r
    return (y >= top) & (y <= cy + r) & (np.abs(x - cx) <= (y - top) / 2)


def _draw(frame: np.ndarray, shape: str, colour: str, cx: float, cy: float, r: float) -> None:
    frame[_shape_mask(shape, frame.shape[0], cx, cy, r)] = COLOURS[colour]


def _options(rng: random.Random, right: str, pool: list[str]) -> tuple[list[str], str]:
    """Four lettered options (the right one and three others from ``pool``), shuffled; returns them and the
    letter."""
    wrong = rng.sample([p for p in pool if p != right], 3)
    choices = [right, *wrong]
    rng.shuffle(choices)
    return [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)], LETTERS[choices.index(right)]


def make_clip(index: int, seed: int = 0, frames: int = 8, size: int = 64) -> tuple[np.ndarray, dict]:
    """Pixels ``(frames, size, size, 3)`` uint8 and the question fields of clip ``index``.

    The kind cycles through :data:`KINDS` with ``index``; everything else is drawn from a generator seeded
    by ``(seed, index)`` alone, so clips do not depend on how many others are generated.
    """
    if frames < 4 or size < 32:
        raise ValueError(f"need frames >= 4 and size >= 32, got frames={frames}, size={size}")
    rng = random.Random(seed * 1_000_003 + index)
    kind = KINDS[index % len(KINDS)]
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    r = size / 8
    colours, shape = list(COLOURS), rng.choice(SHAPES)
    half = frames // 2
    if kind == "move":
        colour = rng.choice(colours)
        direction = rng.choice(["left", "right", "up", "down"])
        start, end = 1.5 * r, size - 1.5 * r
        for t in range(frames):
            s = start + (end - start) * t / (frames - 1)
            pos = {
                "right": (s, size / 2),
                "left": (size - s, size / 2),
                "down": (size / 2, s),
                "up": (size / 2, size - s),
            }
            _draw(video[t], shape, colour, *pos[direction], r)
        question = f"In which direction does the {colour} {shape} move?"
        options, answer = _options(rng, direction, ["left", "right", "up", "down"])
    elif kind == "appear":
        first, second = rng.sample(colours, 2)
        other = rng.choice([s for s in SHAPES if s != shape])
        for t in range(frames):
            _draw(video[t], shape, first, size / 4, size / 2, r)
            if t >= half:
                _draw(video[t], other, second, 3 * size / 4, size / 2, r)
        question = "Which shape appears partway through the video?"
        pool = [f"{c} {s}" for c in colours for s in SHAPES]
        right = f"{second} {other}"
        # The shape that is there from the start is always a distractor: answering it means missing time.
        wrong = [f"{first} {shape}"] + rng.sample(
            [p for p in pool if p not in (right, f"{first} {shape}")], 2
        )
        choices = [right, *wrong]
        rng.shuffle(choices)
        options, answer = [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)], LETTERS[choices.index(right)]
    elif kind == "change":
        before, after = rng.sample(colours, 2)
        for t in range(frames):
            _draw(video[t], shape, before if t < half else after, size / 2, size / 2, 1.5 * r)
        question = f"The {before} {shape} changes colour. What colour does it become?"
        options, answer = _options(rng, after, [c for c in colours if c != before])
    else:  # count
        count = rng.randint(1, 4)
        slots = [
            (size / 4, size / 4),
            (3 * size / 4, size / 4),
            (size / 4, 3 * size / 4),
            (3 * size / 4, 3 * size / 4),
        ]
        chosen = rng.sample(slots, count)
        picks = [(rng.choice(SHAPES), rng.choice(colours)) for _ in chosen]
        for t in range(frames):
            for (cx, cy), (s, c) in zip(chosen, picks):
                _draw(video[t], s, c, cx, cy, r)
        question = "How many shapes are shown in the video?"
        options, answer = _options(rng, str(count), ["1", "2", "3", "4"])
    return video, {"kind": kind, "question": question, "options": options, "answer": answer}


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 4) -> Path:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB as an MPEG-4 mp4 (near-lossless, keyframe every frame)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = 1
        stream.options = {"qscale": "2"}
        stream.thread_count = 1  # one thread: the same bytes on every machine
        for frame in frames:
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_clips(
    out_dir: str | Path, n: int, seed: int = 0, frames: int = 8, size: int = 64, fps: int = 4
) -> list[ClipItem]:
    """Write ``n`` clips as ``out_dir/clip_XXX.mp4`` and ``out_dir/questions.json``; return the items.

    ``ClipItem.video`` is the file name relative to ``out_dir``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        video, fields = make_clip(i, seed=seed, frames=frames, size=size)
        name = f"clip_{i:03d}.mp4"
        write_mp4(video, out_dir / name, fps=fps)
        items.append(ClipItem(id=f"synth-{seed}-{i:03d}", video=name, **fields))
    (out_dir / "questions.json").write_text(json.dumps([asdict(it) for it in items], indent=1))
    return items


def read_frames(path: str | Path) -> np.ndarray:
    """Decode an mp4 to ``(T, H, W, 3)`` uint8 RGB with PyAV (for checks; the evaluators use decord)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
