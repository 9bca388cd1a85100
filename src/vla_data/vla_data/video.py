"""MP4 (H.264, yuv420p) writing of RGB frames through imageio-ffmpeg's bundled ffmpeg. Pure: no ROS.

yuv420p subsamples chroma 2x2, so H.264 needs even widths and heights; odd frames get their last
row and/or column repeated once instead of being rescaled (imageio's default would resize to a
multiple of 16 and warn).
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from types import TracebackType

import imageio_ffmpeg
import numpy as np


class Mp4Writer:
    """Writes ``uint8`` RGB frames of one size to an H.264 MP4 at a fixed frame rate.

    The ffmpeg process starts with the first frame (its size fixes the video's size); nothing is
    written when no frame arrives. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, quality: float = 7.0) -> None:
        """``quality`` is imageio-ffmpeg's 0..10 scale (10 best), mapped by it to x264's CRF."""
        if not fps > 0:
            raise ValueError(f"fps {fps} must be positive")
        if not 0 <= quality <= 10:
            raise ValueError(f"quality {quality} is outside 0..10")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"video folder '{self.path.parent}' does not exist")
        self.fps = float(fps)
        self.quality = float(quality)
        self.frame_count = 0
        self._frame_shape: tuple[int, int] | None = None  # (height, width) of the first frame
        self._encoder: Generator[None, bytes | None, None] | None = None
        self._closed = False

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """(height, width) of the frames written, or None before the first frame."""
        return self._frame_shape

    def add_frame(self, rgb: np.ndarray) -> None:
        """Append one ``uint8`` frame of shape (height, width, 3) in RGB order."""
        if self._closed:
            raise ValueError(f"video '{self.path}' is closed")
        frame = np.asarray(rgb)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be uint8 (height, width, 3); got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        if self._frame_shape is None:
            self._start(height, width)
        elif (height, width) != self._frame_shape:
            first_h, first_w = self._frame_shape
            raise ValueError(
                f"frame size {width}x{height} differs from the first frame's size {first_w}x{first_h}"
            )
        assert self._encoder is not None
        self._encoder.send(_pad_to_even(frame).tobytes())
        self.frame_count += 1

    def close(self) -> None:
        """Finish the file (waits for ffmpeg). Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._encoder is not None:
            self._encoder.close()
            self._encoder = None

    def _start(self, height: int, width: int) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"frame size {width}x{height} is empty")
        self._frame_shape = (height, width)
        encoder = imageio_ffmpeg.write_frames(
            str(self.path),
            (width + width % 2, height + height % 2),
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            fps=self.fps,
            quality=self.quality,
            codec="libx264",
            macro_block_size=1,  # we make sizes even ourselves; never rescale
            # Let players start before the whole file has downloaded.
            output_params=["-movflags", "+faststart"],
        )
        encoder.send(None)  # runs the generator up to its first yield (starts ffmpeg)
        self._encoder = encoder

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pad_to_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column once where height / width is odd."""
    pad_rows, pad_cols = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_rows or pad_cols):
        return np.ascontiguousarray(frame)
    return np.pad(frame, ((0, pad_rows), (0, pad_cols), (0, 0)), mode="edge")
