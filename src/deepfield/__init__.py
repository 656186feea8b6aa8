"""deepfield: a deep-learning workbench for astronomers, on PyTorch."""
from deepfield.errors import DeepfieldError

__version__ = "0.1.0"
__all__ = ["DeepfieldError", "__version__"]
