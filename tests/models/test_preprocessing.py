"""Rescaling, Normalization and the random augmentation layers: Keras 3's geometry and statistics, training only."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from deepfield import layers  # noqa: E402
from deepfield.errors import DeepfieldError  # noqa: E402
from deepfield.models.sequential import Sequential  # noqa: E402


def images(n=3, c=2, h=9, w=11, seed=0):
    return np.random.default_rng(seed).normal(size=(n, c, h, w)).astype("float32")


def keras_train(layer, x):
    return keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(x), training=True))


def ours_train(layer, x):
    layer.train()
    return layer(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("name, kwargs", [
    ("RandomRotation", {"factor": (0.07, 0.07)}),
    ("RandomRotation", {"factor": (-0.3, -0.3)}),
    ("RandomTranslation", {"height_factor": (0.23, 0.23), "width_factor": (-0.31, -0.31)}),
    ("RandomZoom", {"height_factor": (0.4, 0.4)}),
    ("RandomZoom", {"height_factor": (-0.35, -0.35), "width_factor": (0.2, 0.2)}),
])
def test_fixed_factors_give_keras_images(name, kwargs, fill_mode, interpolation):
    x = images()
    options = dict(kwargs, fill_mode=fill_mode, interpolation=interpolation, fill_value=0.5)
    theirs = getattr(keras.layers, name)(**options, data_format="channels_first")
    np.testing.assert_allclose(ours_train(getattr(layers, name)(**options), x), keras_train(theirs, x),
                               atol=1e-4, rtol=0)


def test_quarter_turn_rotation_is_rot90_and_rotation90_is_exact():
    x = images(h=8, w=8)
    turned = ours_train(layers.RandomRotation((0.25, 0.25)), x)
    np.testing.assert_allclose(turned, np.rot90(x, 1, axes=(-2, -1)), atol=1e-5, rtol=0)  # counter-clockwise
    np.testing.assert_allclose(turned, keras_train(keras.layers.RandomRotation((0.25, 0.25),
                                                                               data_format="channels_first"), x),
                               atol=1e-5, rtol=0)
    torch.manual_seed(0)
    many = torch.from_numpy(images(n=400, c=1, h=4, w=4))
    layer = layers.RandomRotation90()
    layer.train()
    out = layer(many)
    turns = []
    for sample, result in zip(many, out):
        matches = [k for k in range(4) if torch.equal(torch.rot90(sample, k, dims=(-2, -1)), result)]
        assert len(matches) == 1  # exactly one of the four turns, bit for bit
        turns.append(matches[0])
    counts = np.bincount(turns, minlength=4)
    assert counts.min() > 70  # uniform: 100 expected each (binomial sd 8.7)
    with pytest.raises(DeepfieldError, match="square images"):
        layer(torch.zeros(1, 1, 4, 5))


@pytest.mark.parametrize("mode, variants", [
    ("horizontal", lambda x: [x, x.flip(-1)]),
    ("vertical", lambda x: [x, x.flip(-2)]),
    ("horizontal_and_vertical", lambda x: [x, x.flip(-2, -1)]),  # Keras 3: one coin flips both axes
])
def test_flip_is_a_flip_with_probability_one_half(mode, variants):
    torch.manual_seed(1)
    x = torch.from_numpy(images(n=400, c=1, h=3, w=4))
    layer = layers.RandomFlip(mode)
    layer.train()
    out = layer(x)
    flipped = 0
    for sample, result in zip(x, out):
        options = variants(sample)
        index = [k for k, v in enumerate(options) if torch.equal(v, result)]
        assert len(index) == 1
        flipped += index[0]
    assert 160 < flipped < 240  # 200 expected (sd 10)


def test_d4_from_flip_then_rotation90_is_uniform():
    torch.manual_seed(2)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(800, 1, 1, 1)
    model = Sequential([layers.RandomFlip("horizontal"), layers.RandomRotation90()])
    model.train()
    out = model(x)
    group = [torch.rot90(x[0].flip(-1) if k >= 4 else x[0], k % 4, dims=(-2, -1)) for k in range(8)]
    counts = np.zeros(8)
    for result in out:
        counts[[k for k in range(8) if torch.equal(group[k], result)][0]] += 1
    assert counts.min() > 65  # 100 expected each (sd 9.4)


def test_random_draws_cover_the_range_and_zoom_keeps_the_centre():
    x = torch.zeros(500, 1, 9, 9)
    x[:, :, 4, 4] = 1.0  # a point at the centre stays at the centre under any rotation and zoom
    for layer in (layers.RandomRotation(0.5), layers.RandomZoom((-0.5, 0.5)), layers.RandomZoom(0.3, 0.2)):
        layer.train()
        out = layer(x)
        assert torch.equal(out.flatten(1).argmax(1), torch.full((500,), 40))
    # angles of a fixed point off centre fall uniformly in the factor's range
    layer = layers.RandomRotation((0.0, 0.25), interpolation="nearest", fill_mode="constant", seed=3)
    matrices = layer._matrices(torch.zeros(2000, 1, 9, 9), layer._generators.setdefault(
        torch.device("cpu"), torch.Generator().manual_seed(3)))
    angles = torch.atan2(matrices[:, 1, 0], matrices[:, 0, 0]) / (2 * np.pi)
    assert 0 <= angles.min() < 0.01 and 0.24 < angles.max() <= 0.25 and abs(angles.mean() - 0.125) < 0.01


def test_seed_makes_draws_repeatable_and_inference_is_identity():
    x = torch.from_numpy(images())
    for make in (lambda: layers.RandomRotation(0.2, seed=7), lambda: layers.RandomZoom(0.2, seed=7),
                 lambda: layers.RandomTranslation(0.2, 0.1, seed=7), lambda: layers.RandomFlip(seed=7),
                 lambda: layers.RandomRotation90(seed=7)):
        first, second = make(), make()
        first.train(), second.train()
        torch.testing.assert_close(first(x[:, :, :9, :9]), second(x[:, :, :9, :9]))
        first.eval()
        assert first(x) is x


def test_fit_augments_while_predict_and_evaluate_leave_inputs_unchanged():
    from deepfield.training import Sequential as KerasSequential

    def network(*augmentation):
        torch.manual_seed(0)
        return KerasSequential([*augmentation, layers.Flatten(), layers.Dense(1, kernel_initializer="ones")],
                               input_shape=(1, 6, 6))

    model = network(layers.RandomRotation(0.5), layers.RandomZoom(0.3), layers.RandomFlip(), layers.RandomRotation90())
    plain = network()
    x = np.random.default_rng(0).normal(size=(16, 1, 6, 6)).astype("float32")
    y = x.reshape(16, -1)[:, :1]
    for m in (model, plain):
        m.compile(optimizer="sgd", loss="mse")
    np.testing.assert_array_equal(model.predict(x, verbose=0), plain.predict(x, verbose=0))
    assert model.evaluate(x, y, verbose=0) == plain.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0)
    plain.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0)
    assert not np.allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0))  # trained on other images


def test_rescaling_and_normalization_equal_keras():
    x = images(n=20)
    np.testing.assert_allclose(layers.Rescaling(1 / 255, offset=-1)(torch.from_numpy(x)).numpy(),
                               keras.ops.convert_to_numpy(keras.layers.Rescaling(1 / 255, offset=-1)(x)), rtol=1e-6)
    ours = layers.Normalization()  # channel axis 1 of (N, C, H, W)
    ours.adapt(x)
    theirs = keras.layers.Normalization(axis=1)
    theirs.adapt(x)
    np.testing.assert_allclose(ours(torch.from_numpy(x)).numpy(), keras.ops.convert_to_numpy(theirs(x)),
                               atol=1e-5, rtol=1e-5)
    assert tuple(ours.mean.shape) == (2,) and ours.mean.shape == tuple(theirs.get_weights()[0].shape)
    np.testing.assert_allclose(ours.mean.numpy(), x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.variance.numpy(), x.var(axis=(0, 2, 3)), rtol=1e-5)
    # batches adapt as the whole; axis=None and invert as Keras; given mean/variance as Keras
    batched = layers.Normalization(axis=None).adapt([(x[:7], None), torch.from_numpy(x[7:])])
    keras_none = keras.layers.Normalization(axis=None)
    keras_none.adapt(x)
    np.testing.assert_allclose(batched(torch.from_numpy(x)).numpy(), keras.ops.convert_to_numpy(keras_none(x)),
                               atol=1e-5, rtol=1e-5)
    given = layers.Normalization(axis=(1, 2), mean=0.5, variance=[[4.0]] * 2, invert=True)
    keras_given = keras.layers.Normalization(axis=(1, 2), mean=np.full((2, 1), 0.5), variance=np.full((2, 1), 4.0),
                                             invert=True)
    np.testing.assert_allclose(given(torch.from_numpy(x)).numpy(), keras.ops.convert_to_numpy(keras_given(x)),
                               atol=1e-5, rtol=1e-5)
    again = layers.Normalization.from_config(given.get_config())
    torch.testing.assert_close(again(torch.from_numpy(x)), given(torch.from_numpy(x)))


def test_bad_arguments_name_themselves():
    with pytest.raises(DeepfieldError, match="RandomFlip mode 'diagonal'"):
        layers.RandomFlip("diagonal")
    with pytest.raises(DeepfieldError, match="RandomRotation fill_mode 'mirror'"):
        layers.RandomRotation(0.1, fill_mode="mirror")
    with pytest.raises(DeepfieldError, match=r"RandomRotation factor must be a number or a \(low, high\) pair"):
        layers.RandomRotation("quarter")
    with pytest.raises(DeepfieldError, match="RandomTranslation width_factor .* got \[0.3, 0.1\]"):
        layers.RandomTranslation(0.1, [0.3, 0.1])
    with pytest.raises(DeepfieldError, match="Rescaling scale and offset must be numbers"):
        layers.Rescaling([1, 2])
    with pytest.raises(DeepfieldError, match="channels first"):
        layers.RandomZoom(0.1, data_format="channels_last")
    with pytest.raises(DeepfieldError, match="takes floating-point images"):
        layer = layers.RandomFlip()
        layer.train()
        layer(torch.zeros(2, 3, 8))


def test_saved_and_loaded_with_adapted_statistics(tmp_path):
    from deepfield.models.serialization import load_model, save_model
    x = images(n=10, h=8, w=8)
    norm = layers.Normalization(input_shape=(2, 8, 8)).adapt(x)
    model = Sequential([norm, layers.Rescaling(2.0, 1.0), layers.RandomRotation((-0.1, 0.2), fill_mode="constant"),
                        layers.RandomTranslation(0.1, (0.0, 0.2)), layers.RandomZoom(0.1, seed=4),
                        layers.RandomFlip("vertical"), layers.RandomRotation90(seed=1)])
    model.build()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    again.eval(), model.eval()
    torch.testing.assert_close(again(torch.from_numpy(x)), model(torch.from_numpy(x)), rtol=0, atol=0)
    assert [m.get_config() for m in again.children()] == [m.get_config() for m in model.children()]
