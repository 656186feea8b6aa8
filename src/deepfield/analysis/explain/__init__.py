"""Looking inside a trained network: which pixels its answer depends on, and what it looks for.

- gradient-based attribution maps (saliency, integrated gradients, guided backprop,
  deconvnet): :mod:`.attribution`;
- occlusion sensitivity by incremental inference: :mod:`.occlusion`;
- learned filters and feature maps: :mod:`.filters`;
- receptive fields (through residual and inception blocks), the strongest-activating input
  patches of each filter and the default layer to show them for: :mod:`.patches`;
- class-model visualisation (an input optimised to maximise a class score): :mod:`.class_model`.
"""
from deepfield.analysis.explain.attribution import (
    Attribution,
    deconvnet,
    guided_backprop,
    integrated_gradients,
    saliency,
)
from deepfield.analysis.explain.class_model import ClassModel, class_model
from deepfield.analysis.explain.filters import conv_filters, conv_layer_names, feature_maps
from deepfield.analysis.explain.occlusion import Occlusion, occlusion
from deepfield.analysis.explain.patches import (
    ReceptiveField,
    StrongestPatches,
    default_map_layer,
    receptive_field,
    strongest_patches,
)

__all__ = [
    "Attribution",
    "ClassModel",
    "Occlusion",
    "ReceptiveField",
    "StrongestPatches",
    "class_model",
    "conv_filters",
    "conv_layer_names",
    "deconvnet",
    "default_map_layer",
    "feature_maps",
    "guided_backprop",
    "integrated_gradients",
    "occlusion",
    "receptive_field",
    "saliency",
    "strongest_patches",
]
