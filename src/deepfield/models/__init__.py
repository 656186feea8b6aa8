"""The ``models`` layer: layers, initialisers, the Sequential container, summary, presets."""
from deepfield.models.base import Layer
from deepfield.models.bayesian import BayesianConv1D, BayesianConv2D, BayesianConv3D, BayesianDense
from deepfield.models.bidirectional import Bidirectional
from deepfield.models.blocks import (
    Inception,
    Maxout,
    MergeViews,
    PReLU,
    ResidualBlock,
    TimeDistributed,
    ViewPoints,
)
from deepfield.models.conv import Conv1D, Conv2D, Conv3D
from deepfield.models.conv_transpose import Conv1DTranspose, Conv2DTranspose, Conv3DTranspose
from deepfield.models.core import Activation, Dense, Dropout, Flatten, SpatialDropout
from deepfield.models.functional import Functional, Input
from deepfield.models.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from deepfield.models.noise import AlphaDropout, GaussianDropout, GaussianNoise
from deepfield.models.normalization import BatchNormalization, GroupNormalization, LayerNormalization
from deepfield.models.embedding import Embedding
from deepfield.models.masking import Masking
from deepfield.models.preprocessing import (
    Normalization,
    RandomFlip,
    RandomRotation,
    RandomRotation90,
    RandomTranslation,
    RandomZoom,
    Rescaling,
)
from deepfield.models.recurrent import GRU, LSTM, SimpleRNN
from deepfield.models.pooling import (
    AveragePooling1D,
    AveragePooling2D,
    AveragePooling3D,
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalMaxPooling1D,
    GlobalMaxPooling2D,
    L2Pooling1D,
    L2Pooling2D,
    MaxPooling1D,
    MaxPooling2D,
    MaxPooling3D,
    SumPooling1D,
    SumPooling2D,
)
from deepfield.models.regularizers import ActivityRegularization
from deepfield.models.reshaping import (
    Cropping1D,
    Cropping2D,
    Cropping3D,
    Permute,
    RepeatVector,
    Reshape,
    UpSampling1D,
    UpSampling2D,
    UpSampling3D,
    ZeroPadding1D,
    ZeroPadding2D,
    ZeroPadding3D,
)
from deepfield.models.separable import DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D

__all__ = [
    "Layer",
    "Input",
    "Functional",
    "Dense",
    "Flatten",
    "Activation",
    "Dropout",
    "SpatialDropout",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "SumPooling1D",
    "SumPooling2D",
    "L2Pooling1D",
    "L2Pooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "BatchNormalization",
    "PReLU",
    "Maxout",
    "Inception",
    "ResidualBlock",
    "ViewPoints",
    "TimeDistributed",
    "MergeViews",
    "BayesianDense",
    "BayesianConv1D",
    "BayesianConv2D",
    "BayesianConv3D",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "Embedding",
    "Masking",
    "Rescaling",
    "Normalization",
    "RandomFlip",
    "RandomRotation",
    "RandomRotation90",
    "RandomTranslation",
    "RandomZoom",
    "Concatenate",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Reshape",
    "Permute",
    "RepeatVector",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "SeparableConv1D",
    "SeparableConv2D",
    "LayerNormalization",
    "GroupNormalization",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
]


def __getattr__(name: str) -> object:
    """``deepfield.models.load_keras`` (:mod:`deepfield.models.keras_files`), loaded with h5py on first use."""
    if name == "load_keras":
        from deepfield.models.keras_files import load_keras

        return load_keras
    raise AttributeError(f"module 'deepfield.models' has no attribute {name!r}")
