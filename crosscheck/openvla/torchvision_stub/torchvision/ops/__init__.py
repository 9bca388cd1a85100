"""Placeholder (see torchvision/__init__.py)."""

from torchvision._placeholder import module_getattr
from torchvision.ops import misc  # noqa: F401

__getattr__ = module_getattr(__name__)
