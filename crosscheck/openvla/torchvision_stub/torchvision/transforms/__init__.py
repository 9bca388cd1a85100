"""torchvision.transforms: the eval transforms timm builds, holding their parameters as torchvision's do."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from torchvision._placeholder import module_getattr


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _setup_size(size):
    if isinstance(size, (int, float)):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError("Please provide only two dimensions (h, w) for size.")
    return size


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for transform in self.transforms:
            img = transform(img)
        return img


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        self.size, self.interpolation, self.max_size, self.antialias = (
            size,
            interpolation,
            max_size,
            antialias,
        )

    def __call__(self, img):
        return functional.resize(img, self.size, self.interpolation, self.max_size, self.antialias)


class CenterCrop:
    def __init__(self, size):
        self.size = _setup_size(size)

    def __call__(self, img):
        return functional.center_crop(img, self.size)


class ToTensor:
    def __call__(self, pic):
        return functional.to_tensor(pic)


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor):
        return functional.normalize(tensor, self.mean, self.std, self.inplace)


from torchvision.transforms import functional  # noqa: E402 (after InterpolationMode, which it imports)

__getattr__ = module_getattr(__name__)
