"""Mp4Writer writes H.264 files that imageio reads back with the right frame count and size."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from vla_data.video import Mp4Writer


def _frames(count: int, height: int, width: int) -> list[np.ndarray]:
    frames = []
    for i in range(count):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[..., 0] = 255 * i // max(count - 1, 1)  # red ramps up over time
        frame[: height // 2, :, 2] = 200  # blue top half
        frames.append(frame)
    return frames


def _read_back(path: Path) -> tuple[list[np.ndarray], float]:
    with imageio.get_reader(path) as reader:
        fps = reader.get_meta_data()["fps"]
        return [np.asarray(frame) for frame in reader], fps


def test_writes_frames_that_read_back(tmp_path: Path) -> None:
    path = tmp_path / "episode.mp4"
    frames = _frames(12, 48, 64)
    with Mp4Writer(path, fps=10) as video:
        for frame in frames:
            video.add_frame(frame)
        assert video.frame_shape == (48, 64)
    assert video.frame_count == 12

    decoded, fps = _read_back(path)
    assert len(decoded) == 12
    assert decoded[0].shape == (48, 64, 3)
    assert fps == pytest.approx(10)
    # Lossy, but colours survive: first frame has no red, last is full red; top half is blue.
    assert decoded[0][..., 0].mean() < 20 and decoded[-1][..., 0].mean() > 235
    assert decoded[5][:20, :, 2].mean() > 180 and decoded[5][-20:, :, 2].mean() < 20


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with Mp4Writer(path, fps=5) as video:
        for frame in _frames(3, 31, 45):
            video.add_frame(frame)
    decoded, _ = _read_back(path)
    assert len(decoded) == 3
    assert decoded[0].shape == (32, 46, 3)


def test_frame_size_change_names_both_sizes(tmp_path: Path) -> None:
    with Mp4Writer(tmp_path / "v.mp4", fps=5) as video:
        video.add_frame(np.zeros((20, 30, 3), np.uint8))
        with pytest.raises(ValueError, match=r"40x20.*30x20"):
            video.add_frame(np.zeros((20, 40, 3), np.uint8))
    assert len(_read_back(tmp_path / "v.mp4")[0]) == 1


def test_rejects_bad_frames_and_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fps 0"):
        Mp4Writer(tmp_path / "v.mp4", fps=0)
    with pytest.raises(FileNotFoundError, match="missing"):
        Mp4Writer(tmp_path / "missing" / "v.mp4", fps=5)
    video = Mp4Writer(tmp_path / "v.mp4", fps=5)
    with pytest.raises(ValueError, match="float32"):
        video.add_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        video.add_frame(np.zeros((4, 4), np.uint8))
    video.close()
    video.close()
    assert not (tmp_path / "v.mp4").exists()  # no frame, no file
    with pytest.raises(ValueError, match="closed"):
        video.add_frame(np.zeros((4, 4, 3), np.uint8))
