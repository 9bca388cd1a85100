"""torchvision.transforms.functional for PIL images, as torchvision does it (the subset OpenVLA uses).

- ``resize(img, [h, w], interpolation)``: PIL ``img.resize((w, h), mode)`` (torchvision's PIL path;
  ``antialias`` is PIL's always).
- ``center_crop(img, [h, w])``: top = round((H - h) / 2), left = round((W - w) / 2), PIL crop.
- ``to_tensor(pic)``: HxWxC uint8 -> CxHxW float32 / 255.
- ``normalize(t, mean, std)``: (t - mean) / std per channel, on a copy unless ``inplace``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from torchvision._placeholder import module_getattr
from torchvision.transforms import InterpolationMode

pil_modes_mapping = {
    InterpolationMode.NEAREST: Image.NEAREST,
    InterpolationMode.BILINEAR: Image.BILINEAR,
    InterpolationMode.BICUBIC: Image.BICUBIC,
    InterpolationMode.BOX: Image.BOX,
    InterpolationMode.HAMMING: Image.HAMMING,
    InterpolationMode.LANCZOS: Image.LANCZOS,
}
_from_int = {value: key for key, value in pil_modes_mapping.items()}


def _size_pair(size) -> list[int]:
    if isinstance(size, int) or len(size) == 1:
        raise NotImplementedError("stub resize/center_crop: only an explicit [height, width] is supported")
    return [int(size[0]), int(size[1])]


def resize(img, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    if not isinstance(img, Image.Image):
        raise TypeError(f"stub resize: PIL images only, got {type(img)}")
    if max_size is not None:
        raise NotImplementedError("stub resize: max_size")
    mode = _from_int.get(interpolation, interpolation)
    height, width = _size_pair(size)
    return img.resize((width, height), pil_modes_mapping[mode])


def center_crop(img, output_size):
    height, width = _size_pair(output_size)
    image_width, image_height = img.size
    if height > image_height or width > image_width:
        raise NotImplementedError("stub center_crop: padding a smaller image")
    top = int(round((image_height - height) / 2.0))
    left = int(round((image_width - width) / 2.0))
    return img.crop((left, top, left + width, top + height))


def to_tensor(pic):
    if not isinstance(pic, Image.Image) or pic.mode != "RGB":
        raise TypeError(f"stub to_tensor: RGB PIL images only, got {type(pic)}")
    array = torch.from_numpy(np.array(pic, np.uint8, copy=True))
    return array.view(pic.size[1], pic.size[0], 3).permute((2, 0, 1)).contiguous().to(torch.float32).div(255)


def normalize(tensor, mean, std, inplace=False):
    if not inplace:
        tensor = tensor.clone()
    mean = torch.as_tensor(mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
    return tensor.sub_(mean).div_(std)


__getattr__ = module_getattr(__name__)
