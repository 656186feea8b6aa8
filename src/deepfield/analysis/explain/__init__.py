"""Looking inside a trained network: which pixels its answer depends on, and what it looks for.

- gradient-based attribution maps (saliency, integrated gradients, guided backprop,
  deconvnet): :mod:`.attribution`;
- occlusion sensitivity by incremental inference: :mod:`.occlusion`;
- learned filters and feature maps: :mod:`.filters`;
- receptive fields (through residual and inception blocks), the strongest-activating input
  patches of each filter and the default layer to show them for: :mod:`.patches`;
- class-model visualisation (an input optimised to maximise a class score): :mod:`.class_model`;
- for a network whose output is an image, attributions of one output region's flux (an aperture,
  a pixel window) by integrated gradients and occlusion: :mod:`.region`.
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
from deepfield.analysis.explain.region import (
    Aperture,
    RegionFlux,
    Window,
    parse_aperture,
    parse_window,
    region_integrated_gradients,
    region_occlusion,
)


__all__ = [
    "Aperture",
    "Attribution",
    "ClassModel",
    "Occlusion",
    "ReceptiveField",
    "RegionFlux",
    "StrongestPatches",
    "Window",
    "class_model",
    "conv_filters",
    "conv_layer_names",
    "deconvnet",
    "default_map_layer",
    "feature_maps",
    "guided_backprop",
    "integrated_gradients",
    "occlusion",
    "parse_aperture",
    "parse_window",
    "receptive_field",
    "region_integrated_gradients",
    "region_occlusion",
    "saliency",
    "strongest_patches",
]
