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
from deepfield.models.functional import Functional, Input
from deepfield.models.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from deepfield.models.core import Activation, Dense, Dropout, Flatten, SpatialDropout
from deepfield.models.embedding import Embedding
from deepfield.models.masking import Masking
from deepfield.models.normalization import BatchNormalization
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
]
