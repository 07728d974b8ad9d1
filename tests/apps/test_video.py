"""Frame reading: sampling, the pixel budget, both backends, and one-line errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from vreason_hooks.apps.video import DEFAULT_MAX_PIXELS, VideoError, fit_size, read_frames, sample_indices
from vreason_hooks.apps.video_clips import make_clip, write_mp4
from vreason_hooks.errors import VReasonError


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames, _ = make_clip(0, frames=10, size=96)
    return write_mp4(frames, tmp_path_factory.mktemp("video") / "clip.mp4", fps=5), frames


def test_sample_indices_spread_over_the_whole_video():
    assert sample_indices(100, 4) == [0, 33, 66, 99]
    assert sample_indices(3, 16) == [0, 1, 2]
    assert sample_indices(0, 16) == []


@pytest.mark.parametrize("height, width", [(1080, 1920), (720, 1280), (480, 640), (64, 64), (30, 500)])
def test_fit_size_keeps_the_budget_and_multiples_of_28(height, width):
    h, w = fit_size(height, width)
    assert h % 28 == 0 and w % 28 == 0
    assert h * w <= DEFAULT_MAX_PIXELS
    assert abs(h / w - height / width) / (height / width) < 0.5  # aspect ratio roughly kept


@pytest.mark.parametrize(
    "height, width", [(1080, 1920), (720, 1280), (480, 640), (64, 64), (30, 500), (2000, 100)]
)
def test_fit_size_is_qwen_vl_utils_smart_resize(height, width):
    """Same sizes as the reference preprocessing of Qwen2.5-VL (so its processor keeps our frames as they
    are)."""
    vision_process = pytest.importorskip("qwen_vl_utils.vision_process")
    expected = vision_process.smart_resize(
        height, width, factor=28, min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28
    )
    assert fit_size(height, width) == tuple(expected)


@pytest.mark.parametrize("backend", ["decord", "pyav", "auto"])
def test_backends_read_the_same_frames(clip, backend):
    path, source = clip
    frames = read_frames(path, num_frames=4, backend=backend, max_pixels=96 * 96)
    assert frames.indices == [0, 3, 6, 9] and frames.total_frames == 10
    assert frames.fps == pytest.approx(5.0)
    assert frames.pixels.shape == (4, 84, 84, 3) and frames.pixels.dtype == np.uint8
    assert frames.backend == ("decord" if backend == "auto" else backend)
    # The decoded frames are the drawn ones (lossy codec and resize: compare coarse colour content).
    means = frames.pixels.reshape(4, -1, 3).mean(axis=1)
    np.testing.assert_allclose(means, source[[0, 3, 6, 9]].reshape(4, -1, 3).mean(axis=1), atol=6)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(VideoError, match="does not exist"):
        read_frames(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match="is a folder: pass a video file"):  # not "does not exist"
        read_frames(tmp_path)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 50)
    with pytest.raises(VideoError, match="cannot read video") as err:
        read_frames(broken)
    assert "\n" not in str(err.value)
    with pytest.raises(VReasonError, match="unknown video backend"):
        read_frames(broken, backend="opencv")
