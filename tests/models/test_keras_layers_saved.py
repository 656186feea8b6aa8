"""A Sequential holding every layer family of issue 17's shape, convolution, normalisation, noise and
regularisation parts, saved as model.json + safetensors and loaded back: same config, same outputs."""
import torch

from deepfield.layers import (
    ActivityRegularization, AlphaDropout, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3DTranspose, Cropping1D,
    Cropping2D, Cropping3D, Dense, DepthwiseConv1D, DepthwiseConv2D, GaussianDropout, GaussianNoise,
    GroupNormalization, LayerNormalization, Permute, RepeatVector, Reshape, SeparableConv1D, SeparableConv2D,
    UpSampling1D, UpSampling2D, UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D,
)
from deepfield.models import constraints, regularizers
from deepfield.models.sequential import Sequential
from deepfield.models.serialization import load_model, save_model


def images():
    return Sequential([
        ZeroPadding2D(((0, 1), (1, 0))), Conv2D(4, 3, kernel_regularizer=regularizers.L1L2(0.1, 0.2),
                                                  kernel_constraint=constraints.MaxNorm(2.0, [0, 1, 2])),
        LayerNormalization(gamma_regularizer="l2"), GroupNormalization(2), GaussianNoise(0.1), GaussianDropout(0.2),
        DepthwiseConv2D(3, depth_multiplier=2, padding="same", depthwise_constraint="non_neg"),
        SeparableConv2D(4, 3, strides=2, padding="same", activation="relu", pointwise_regularizer="l1"),
        Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1, activity_regularizer="l2"),
        UpSampling2D(2, interpolation="bilinear"), Cropping2D(((1, 0), (0, 1))), AlphaDropout(0.1),
        Reshape((3, -1)), Permute((2, 1)), Reshape((-1,)), Dense(4, bias_constraint="non_neg"),
        ActivityRegularization(l1=0.01), RepeatVector(5), Conv1DTranspose(2, 3, strides=2),
        DepthwiseConv1D(3), SeparableConv1D(3, 2), UpSampling1D(2), Cropping1D((1, 2)), ZeroPadding1D(2),
    ], input_shape=(2, 9, 9))


def cubes():
    return Sequential([ZeroPadding3D(1), Conv3DTranspose(2, 2, strides=2, padding="same"), UpSampling3D((1, 2, 1)),
                       Cropping3D(((0, 1), (1, 1), (0, 2)))], input_shape=(1, 3, 3, 3))


def test_saved_and_loaded_through_model_json(tmp_path):
    for make, folder in ((images, tmp_path / "images"), (cubes, tmp_path / "cubes")):
        torch.manual_seed(0)
        model = make().build().eval()
        save_model(model, folder)
        again = load_model(folder).eval()
        assert again.get_config() == model.get_config()
        x = torch.randn(3, *model.input_shape)
        torch.testing.assert_close(again(x), model(x))
