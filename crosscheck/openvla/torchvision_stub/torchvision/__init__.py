"""A stand-in for torchvision in the OpenVLA reference environment (never used by the stack).

timm 0.9.16 imports torchvision in several modules, and the torchvision wheels on the package index
are CUDA builds that do not load next to the CPU torch. The upstream OpenVLA port uses torchvision
only for its image processor: ``transforms`` Compose/Resize/CenterCrop/ToTensor/Normalize (built by
``timm.data.create_transform``, then read back for their parameters) and
``transforms.functional`` resize/center_crop/to_tensor/normalize on PIL images. Those are implemented
in ``transforms/`` following torchvision's own code paths for PIL input (PIL's resize, round-half
centre crop, uint8 -> float / 255, (x - mean) / std). Every other name resolves to a placeholder
that raises when used, so an unexpected use fails loudly instead of computing something else.
"""

from torchvision import datasets, io, models, ops, transforms, utils  # noqa: F401 (real submodules first)
from torchvision._placeholder import module_getattr

__version__ = "0.0.0+crosscheck-stub"
__getattr__ = module_getattr(__name__)
