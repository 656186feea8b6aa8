"""Every layer and initialiser under the names Keras users reach for: ``from deepfield.layers import Conv2D``."""
from deepfield.models import *  # noqa: F403  (re-export: this module is only a familiar address)
from deepfield.models import __all__  # noqa: F401
