"""Keras model files read and written without Keras (deepfield.models.keras_files), checked against Keras 3 itself:
the same inputs (channels last for Keras, channels first for deepfield) give the same outputs to 1e-5."""
import json
import os
import zipfile

import h5py
import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
L = keras.layers

from deepfield.errors import DeepfieldError  # noqa: E402
from deepfield.models.keras_files import load_keras  # noqa: E402
from deepfield.models.keras_files import layout  # noqa: E402

TOLERANCE = 1e-5


def randomised(model, seed=0, scale=0.5):
    """``model`` with every weight drawn afresh (BatchNormalization's moving statistics too, variances positive)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        values = rng.normal(0.0, scale, size=tuple(weight.shape)).astype(np.float32)
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values)
    return model


def channels_first(x):
    """A channels-last batch ``(N, *spatial, C)`` as deepfield takes it, ``(N, C, *spatial)``."""
    return np.ascontiguousarray(np.moveaxis(x, -1, 1)) if x.ndim > 2 else x


def deepfield_outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def keras_outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def sample(shape, n=3, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def converted(model, tmp_path, suffix=".keras"):
    path = tmp_path / f"model{suffix}"
    model.save(path)
    return load_keras(path)


def assert_same_outputs(keras_model, tmp_path, input_shape, suffix=".keras", channels_last=True):
    x = sample(input_shape)
    ours = converted(keras_model, tmp_path, suffix)
    expected = keras_outputs(keras_model, x)
    got = deepfield_outputs(ours, channels_first(x) if channels_last else x)
    if expected.ndim > 2 and channels_last:
        expected = np.moveaxis(expected, -1, 1)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE)
    return ours


def course_cnn(size=24):
    """The course's CNN (the lecture's Keras listing), smaller."""
    return keras.Sequential([
        keras.Input((size, size, 1)),
        L.Conv2D(8, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Conv2D(16, (3, 3), activation="relu"),
        L.MaxPooling2D((2, 2)),
        L.Flatten(),
        L.Dense(32, activation="relu"),
        L.Dense(1, activation="sigmoid"),
    ])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_the_course_cnn_converts_with_equal_outputs(tmp_path, suffix):
    ours = assert_same_outputs(randomised(course_cnn()), tmp_path, (24, 24, 1), suffix)
    assert [type(m).__name__ for m in ours.children()] == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                                                           "Flatten", "Dense", "Dense"]
    assert ours.input_shape == (1, 24, 24)


def test_a_plain_transpose_of_the_dense_after_flatten_is_off_by_order_one(tmp_path):
    """Why the rows of the Dense after a Flatten are reordered: transposing its kernel alone gives other outputs."""
    keras_model = randomised(keras.Sequential([keras.Input((6, 6, 3)), L.Conv2D(4, 3), L.Flatten(),
                                                L.Dense(5, name="dense")]))
    x = sample((6, 6, 3))
    ours = converted(keras_model, tmp_path)
    expected = keras_outputs(keras_model, x)
    np.testing.assert_allclose(deepfield_outputs(ours, channels_first(x)), expected, atol=TOLERANCE, rtol=TOLERANCE)
    kernel = keras_model.layers[-1].kernel.numpy()
    with torch.no_grad():
        ours.dense.weight.copy_(torch.from_numpy(kernel.T.copy()))  # the plain transpose
    off = np.abs(deepfield_outputs(ours, channels_first(x)) - expected).max()
    assert off > 0.5 * np.abs(expected).mean()  # O(1): as large as the outputs themselves


def test_every_layer_family_on_main_converts(tmp_path):
    keras_model = randomised(keras.Sequential([
        keras.Input((16, 16, 3)),
        L.Conv2D(6, 3, strides=2, padding="same", activation="elu"),
        L.BatchNormalization(momentum=0.9, epsilon=1e-2, name="bn"),
        L.Activation("tanh"),
        L.AveragePooling2D(2, padding="same"),
        L.SpatialDropout2D(0.3),
        L.Conv2D(5, 3, padding="same", dilation_rate=2, use_bias=False),
        L.ReLU(),
        L.PReLU(shared_axes=[1, 2], alpha_initializer="ones"),
        L.MaxPooling2D(3, strides=1, padding="same"),
        L.Flatten(),
        L.Dropout(0.5),
        L.BatchNormalization(),
        L.Dense(7, activation="selu"),
        L.PReLU(),
        L.Dense(6, activation="gelu"),
        L.LeakyReLU(negative_slope=0.2),
        L.Dense(5, activation="swish"),
        L.ELU(),
        L.Dense(4, activation="softplus"),
        L.Dense(4, activation="relu6"),
        L.Dense(4, activation="hard_sigmoid"),
        L.Dense(4, activation="mish"),
        L.Dense(4, activation="softsign"),
        L.Softmax(),
        L.Dense(3, activation="softmax"),
    ]))
    for suffix in (".keras", ".h5"):
        ours = assert_same_outputs(keras_model, tmp_path, (16, 16, 3), suffix)
    bn = ours.bn
    assert (bn.momentum, bn.epsilon, bn.axis) == (0.9, 1e-2, 1)


def test_batch_normalization_moves_its_statistics_as_keras_does(tmp_path):
    """Keras's momentum 0.9 is the same number in deepfield (PyTorch would say 0.1): one training step moves the
    moving mean and variance alike."""
    keras_model = randomised(keras.Sequential([keras.Input((5, 5, 4)), L.BatchNormalization(momentum=0.9, name="bn")]))
    ours = converted(keras_model, tmp_path)
    x = sample((5, 5, 4), n=8)
    keras_model(x, training=True)
    ours.train()
    ours(torch.from_numpy(channels_first(x)))
    bn = keras_model.layers[0]
    np.testing.assert_allclose(ours.bn.moving_mean.numpy(), bn.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(ours.bn.moving_variance.numpy(), bn.moving_variance.numpy(),
                               atol=1e-5)


@pytest.mark.parametrize("rank", [1, 3])
def test_one_and_three_dimensional_layers_convert(tmp_path, rank):
    conv, pool, average = {1: (L.Conv1D, L.MaxPooling1D, L.AveragePooling1D),
                           3: (L.Conv3D, L.MaxPooling3D, L.AveragePooling3D)}[rank]
    shape = {1: (20, 3), 3: (6, 8, 8, 2)}[rank]
    tail = [L.GlobalAveragePooling1D()] if rank == 1 else [L.Flatten()]
    keras_model = randomised(keras.Sequential([
        keras.Input(shape), conv(4, 3, padding="same", activation="relu"), pool(2), average(2, padding="same"),
        L.BatchNormalization(), *tail, L.Dense(2)]))
    assert_same_outputs(keras_model, tmp_path, shape)


def test_global_pooling_and_channels_first_models_convert(tmp_path):
    keras_model = randomised(keras.Sequential([
        keras.Input((3, 12, 12)),
        L.Conv2D(4, 3, data_format="channels_first", activation="relu"),
        L.BatchNormalization(axis=1),
        L.MaxPooling2D(data_format="channels_first"),
        L.Conv2D(4, 3, data_format="channels_first"),
        L.Flatten(),
        L.Dense(3),
    ]))
    assert_same_outputs(keras_model, tmp_path, (3, 12, 12), channels_last=False)
    keras_model = randomised(keras.Sequential([
        keras.Input((9, 9, 2)), L.Conv2D(4, 3), L.GlobalMaxPooling2D(keepdims=True), L.Conv2D(2, 1),
        L.GlobalAveragePooling2D(), L.Dense(2)]))
    assert_same_outputs(keras_model, tmp_path, (9, 9, 2))


def test_a_layer_deepfield_lacks_is_one_line_naming_it_and_its_class(tmp_path):
    keras_model = keras.Sequential([keras.Input((8, 3)), L.Conv1D(2, 3, name="features"),
                                    L.UnitNormalization(name="unit"), L.Flatten(), L.Dense(1)])
    keras_model.save(tmp_path / "m.keras")
    with pytest.raises(DeepfieldError, match=r"m\.keras: layer 'unit' \(UnitNormalization\): deepfield cannot "
                                             r"convert") as info:
        load_keras(tmp_path / "m.keras")
    assert "\n" not in str(info.value)


def test_lambda_layers_and_custom_objects_are_refused_without_running_them(tmp_path):
    ran = []
    keras_model = keras.Sequential([keras.Input((4,)), L.Lambda(lambda t: ran.append(1) or t * 2, name="double"),
                                    L.Dense(1)])
    keras_model.save(tmp_path / "lambda.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'double' \(Lambda\): a Lambda layer holds Python code"):
        load_keras(tmp_path / "lambda.keras")

    @keras.saving.register_keras_serializable(package="mine")
    class Scale(L.Layer):
        def call(self, t):
            return t * 3

    keras.Sequential([keras.Input((4,)), Scale(name="scale"), L.Dense(1)]).save(tmp_path / "custom.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'scale' \(Scale\): mine>Scale is a custom object"):
        load_keras(tmp_path / "custom.keras")

    def my_activation(t):
        return t

    keras.Sequential([keras.Input((4,)), L.Dense(2, activation=my_activation, name="d")]).save(tmp_path / "act.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'd' \(Dense\): the function 'my_activation' is a custom object "
                                             r"from builtins; deepfield never runs code from a file"):
        load_keras(tmp_path / "act.keras")


def test_a_truncated_or_foreign_file_is_one_clear_line(tmp_path):
    course_cnn().save(tmp_path / "m.keras")
    data = (tmp_path / "m.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(DeepfieldError, match=r"cut\.keras: not a readable \.keras archive"):
        load_keras(tmp_path / "cut.keras")
    (tmp_path / "text.keras").write_text("hello")
    with pytest.raises(DeepfieldError, match=r"text\.keras: not a Keras file"):
        load_keras(tmp_path / "text.keras")
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(DeepfieldError, match=r"must hold config\.json and model\.weights\.h5; model\.weights\.h5 "):
        load_keras(tmp_path / "empty.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z, zipfile.ZipFile(tmp_path / "bad.keras", "w") as out:
        out.writestr("config.json", z.read("config.json")[:-5])
        out.writestr("model.weights.h5", z.read("model.weights.h5"))
    with pytest.raises(DeepfieldError, match=r"bad\.keras: config\.json: not valid JSON"):
        load_keras(tmp_path / "bad.keras")
    with pytest.raises(DeepfieldError, match=r"nothing\.keras: file not found"):
        load_keras(tmp_path / "nothing.keras")


def test_an_hdf5_link_to_another_file_is_refused(tmp_path):
    keras_model = randomised(keras.Sequential([keras.Input((4,)), L.Dense(2, name="dense")]))
    keras_model.save(tmp_path / "m.h5")
    with h5py.File(tmp_path / "secret.h5", "w") as f:
        f["kernel"] = np.ones((4, 2), np.float32)
    with h5py.File(tmp_path / "m.h5", "a") as f:
        kernel = str(f["model_weights/dense"].attrs["weight_names"][0])  # e.g. sequential_3/dense/kernel
        del f["model_weights/dense"][kernel]
        f["model_weights/dense"][kernel] = h5py.ExternalLink(str(tmp_path / "secret.h5"), "kernel")
    with pytest.raises(DeepfieldError, match=r"is a link \(ExternalLink\)"):
        load_keras(tmp_path / "m.h5")


def test_a_keras2_hdf5_file_converts(tmp_path):
    """tf.keras 2 wrote the legacy HDF5 a little differently: the input shape on the first layer
    (batch_input_shape), BatchNormalization's axis as a list, weight names ending in ':0'. Written here
    by hand in that layout, with a Keras 3 model's weights."""
    keras_model = randomised(keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(3, 3, name="conv2d"),
                                               L.BatchNormalization(name="batch_normalization"),
                                               L.Flatten(name="flatten"), L.Dense(2, name="dense")]))
    layers = [
        {"class_name": "Conv2D", "config": {"name": "conv2d", "trainable": True, "batch_input_shape": [None, 8, 8, 2],
                                            "dtype": "float32", "filters": 3, "kernel_size": [3, 3],
                                            "strides": [1, 1], "padding": "valid", "data_format": "channels_last",
                                            "dilation_rate": [1, 1], "groups": 1, "activation": "linear",
                                            "use_bias": True, "kernel_initializer": {
                                                "class_name": "GlorotUniform", "config": {"seed": None}},
                                            "bias_initializer": {"class_name": "Zeros", "config": {}},
                                            "kernel_regularizer": None}},
        {"class_name": "BatchNormalization", "config": {"name": "batch_normalization", "axis": [3], "momentum": 0.99,
                                                        "epsilon": 0.001, "center": True, "scale": True}},
        {"class_name": "Flatten", "config": {"name": "flatten", "data_format": "channels_last"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "linear", "use_bias": True}},
    ]
    names = {"conv2d": ["kernel", "bias"], "batch_normalization": ["gamma", "beta", "moving_mean", "moving_variance"],
             "flatten": [], "dense": ["kernel", "bias"]}
    with h5py.File(tmp_path / "tf2.h5", "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "sequential",
                                                                                     "layers": layers}})
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = [n.encode() for n in names]
        for layer, (name, weights) in zip(keras_model.layers, names.items()):
            g = group.create_group(name)
            g.attrs["weight_names"] = [f"{name}/{w}:0".encode() for w in weights]
            for w, variable in zip(weights, layer.weights):
                g[f"{name}/{w}:0"] = variable.numpy()
    x = sample((8, 8, 2))
    np.testing.assert_allclose(deepfield_outputs(load_keras(tmp_path / "tf2.h5"), channels_first(x)),
                               keras_outputs(keras_model, x), atol=TOLERANCE, rtol=TOLERANCE)


def test_flatten_order_matches_keras_flatten():
    """The permutation itself, on numbers that name their own place."""
    shape = (3, 2, 4)  # deepfield's (C, H, W)
    x = np.arange(24).reshape(shape)
    order = layout.flatten_order(shape, channels_last=True, flatten_channels_first=False)
    assert np.array_equal(x.reshape(-1)[order], np.moveaxis(x, 0, -1).reshape(-1))
    assert layout.flatten_order(shape, channels_last=False, flatten_channels_first=False) is None
    assert layout.flatten_order((5,), channels_last=True, flatten_channels_first=False) is None


# -- the way back: save_keras --------------------------------------------------------------------------------


def deepfield_cnn():
    from deepfield.models import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, PReLU
    from deepfield.training import Sequential  # the Keras face, with save_keras
    torch.manual_seed(0)
    model = Sequential([Conv2D(6, 3, padding="same", activation="relu", input_shape=(2, 12, 12)),
                        BatchNormalization(momentum=0.9), MaxPooling2D(2), Conv2D(4, 3, strides=2, padding="same"),
                        PReLU(), Flatten(), Dropout(0.1), Dense(8, activation="tanh"), PReLU(),
                        Dense(3, activation="softmax")])
    model.build()
    with torch.no_grad():
        model.batch_normalization.moving_mean.uniform_(-1, 1)
        model.batch_normalization.moving_variance.uniform_(0.5, 2)
        model.batch_normalization.gamma.uniform_(0.5, 2)
        model.batch_normalization.beta.uniform_(-1, 1)
        model.p_re_lu.alpha.uniform_(-1, 1)
        model.p_re_lu_1.alpha.uniform_(-1, 1)
    return model


def test_save_keras_writes_a_file_keras_loads_with_equal_outputs_channels_last(tmp_path):
    ours = deepfield_cnn()
    assert ours.save_keras(tmp_path / "back.keras") == tmp_path / "back.keras"
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    assert theirs.input_shape == (None, 12, 12, 2)  # channels last, Keras's default
    assert theirs.get_layer("batch_normalization").momentum == 0.9
    x = sample((2, 12, 12))
    np.testing.assert_allclose(keras_outputs(theirs, np.moveaxis(x, 1, -1)), deepfield_outputs(ours, x),
                               atol=TOLERANCE, rtol=TOLERANCE)
    again = load_keras(tmp_path / "back.keras")  # and back into deepfield
    np.testing.assert_allclose(deepfield_outputs(again, x), deepfield_outputs(ours, x), atol=TOLERANCE)


def test_keras_weights_files_load_onto_a_deepfield_model_built_alike(tmp_path):
    from deepfield.models.keras_files import load_keras_weights

    keras_model = randomised(course_cnn())
    keras_model.save_weights(tmp_path / "cnn.weights.h5")
    keras_model.save(tmp_path / "cnn.h5")  # a legacy file's weights, matched by order
    x = sample((24, 24, 1))
    for path in (tmp_path / "cnn.weights.h5", tmp_path / "cnn.h5"):
        ours = converted(course_cnn(), tmp_path)  # the same architecture, other weights
        ours.load_weights(path)  # the Keras face's load_weights reads Keras's weights files
        np.testing.assert_allclose(deepfield_outputs(ours, channels_first(x)), keras_outputs(keras_model, x),
                                   atol=TOLERANCE, rtol=TOLERANCE)
    small = converted(keras.Sequential([keras.Input((24, 24, 1)), L.Conv2D(8, 3), L.Flatten(), L.Dense(1)]), tmp_path)
    with pytest.raises(DeepfieldError, match=r"cnn\.h5: the file holds weights for 4 layers, the model has 2"):
        load_keras_weights(small, tmp_path / "cnn.h5")


def test_the_public_face_hands_out_models_with_fit(tmp_path):
    """``df.load_keras`` and ``df.models.load_keras`` give the Keras face's Sequential, in a fresh interpreter
    (the training layer registers its classes when the face imports it)."""
    import subprocess
    import sys

    course_cnn().save(tmp_path / "cnn.keras")
    code = ("import deepfield as df, sys; a = df.models.load_keras(sys.argv[1]); b = df.load_keras(sys.argv[1]); "
            "print(type(a).__module__, hasattr(a, 'fit'), type(b) is df.Sequential, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "cnn.keras")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.stdout.split() == ["deepfield.training.keras", "True", "True", "False"], done.stderr


# -- functional models ---------------------------------------------------------------------------------------


def keras_functional():
    """Two inputs (an image and a table), two parallel branches of one shape, a shared Dense, every merge."""
    image, table = keras.Input((10, 10, 2), name="image"), keras.Input((3,), name="table")
    a = L.Conv2D(4, 3, padding="same", activation="relu")(image)
    b = L.Conv2D(4, 3, padding="same")(image)  # a branch of the same shape: weights must not be swapped
    x = L.Add()([a, b])
    x = L.BatchNormalization()(L.Concatenate()([x, L.Subtract()([a, b])]))
    x = L.Flatten()(L.MaxPooling2D()(x))
    x = L.Concatenate()([x, table])  # flattened image features beside the table: the Dense after it reorders
    x = L.Dense(6, activation="tanh")(x)
    shared = L.Dense(6, name="shared")
    y = L.Multiply()([shared(x), shared(L.Activation("relu")(x))])
    merged = [L.Average()([y, x]), L.Maximum()([y, x]), L.Minimum()([y, x])]
    return keras.Model([image, table], [L.Dense(2, name="out")(L.Concatenate()(merged)), L.Dense(1, name="aux")(x)])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_functional_model_converts_with_equal_outputs(tmp_path, suffix):
    keras_model = randomised(keras_functional())
    ours = converted(keras_model, tmp_path, suffix)
    image, table = sample((10, 10, 2)), sample((3,), seed=2)
    expected = [keras.ops.convert_to_numpy(o) for o in keras_model([image, table], training=False)]
    ours.eval()
    with torch.no_grad():
        got = ours(torch.from_numpy(channels_first(image)), torch.from_numpy(table))
    assert ours.input_names == ["image", "table"] and ours.output_names == ["out", "aux"]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e, atol=TOLERANCE, rtol=TOLERANCE)
    assert hasattr(ours, "fit")  # the Keras face's functional model


def test_save_keras_writes_functional_models_keras_loads(tmp_path):
    keras_model = randomised(keras_functional())
    keras_model.get_layer("shared").trainable = False
    ours = converted(keras_model, tmp_path)
    assert not ours.get_layer("shared").trainable and ours.get_layer("out").trainable  # frozen as in Keras
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    assert not theirs.get_layer("shared").trainable and theirs.get_layer("out").trainable
    image, table = sample((10, 10, 2)), sample((3,), seed=2)
    for g, e in zip(theirs([image, table], training=False), keras_model([image, table], training=False)):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(g), keras.ops.convert_to_numpy(e), atol=TOLERANCE,
                                   rtol=TOLERANCE)
    keras_model.save_weights(tmp_path / "f.weights.h5")
    fresh = converted(randomised(keras_functional(), seed=5), tmp_path)
    fresh.load_weights(tmp_path / "f.weights.h5")
    fresh.eval()
    for g, e in zip(fresh(torch.from_numpy(channels_first(image)), torch.from_numpy(table)),
                    keras_model([image, table], training=False)):
        np.testing.assert_allclose(g.detach().numpy(), keras.ops.convert_to_numpy(e), atol=TOLERANCE,
                                   rtol=TOLERANCE)


def test_a_deepfield_functional_model_goes_to_keras(tmp_path):
    import deepfield as df
    from deepfield.models import Add, Conv2D, Dense, Flatten, GlobalAveragePooling2D

    torch.manual_seed(0)
    inputs = df.Input((2, 8, 8), name="stamp")
    left, right = Conv2D(3, 3, padding="same")(inputs), Conv2D(3, 3, padding="same", activation="relu")(inputs)
    joined = Add()([right, left])
    model = df.Model(inputs, [Dense(2, name="head")(Flatten()(joined)),
                              Dense(1, name="pooled")(GlobalAveragePooling2D()(joined))])
    model.save_keras(tmp_path / "df.keras")
    theirs = keras.saving.load_model(tmp_path / "df.keras")
    x = sample((2, 8, 8))
    model.eval()
    with torch.no_grad():
        ours = model(torch.from_numpy(x))
    for g, e in zip(theirs(np.moveaxis(x, 1, -1)), ours):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(g), e.numpy(), atol=TOLERANCE, rtol=TOLERANCE)


# -- the README's "Coming from Keras" ------------------------------------------------------------------------


def test_the_readme_cnn_is_the_lecture_cnn_and_its_table_lists_every_converted_layer(readme_python):
    import re
    from pathlib import Path

    from deepfield.models.keras_files.translate import TRANSLATORS

    theirs, ours = {}, {}
    exec(compile(readme_python("from keras import layers, models"), "README.md", "exec"), theirs)
    exec(compile(readme_python("cnn = df.Sequential()"), "README.md", "exec"), ours)
    ours["cnn"].build()
    assert sum(p.numel() for p in ours["cnn"].parameters()) == theirs["model"].count_params()

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = readme.split("## Coming from Keras")[1].split("\n## ")[0]
    named = re.sub(r"(\w+)1D/2D/3D", r"\g<1>1D \g<1>2D \g<1>3D", section)
    named = re.sub(r"(\w+)1D/2D\b", r"\g<1>1D \g<1>2D", named)
    assert [name for name in TRANSLATORS if f"`{name}" not in named and f" {name}" not in named] == []


def test_a_keras2_functional_hdf5_file_converts(tmp_path):
    """tf.keras 2 named a functional model ``Model`` and wrote each call as ``[[layer, node, index, kwargs], ...]``;
    the file Keras 3 writes is rewritten in that form here."""
    keras_model = randomised(keras_functional())
    keras_model.save(tmp_path / "k3.h5")
    with h5py.File(tmp_path / "k3.h5", "a") as f:
        config = json.loads(f.attrs["model_config"])
        config["class_name"] = "Model"
        for layer in config["config"]["layers"]:
            nodes = []
            for node in layer["inbound_nodes"]:
                arg = node["args"][0]
                tensors = arg if isinstance(arg, list) else [arg]
                nodes.append([[*t["config"]["keras_history"], {}] for t in tensors])
            layer["inbound_nodes"] = nodes
        f.attrs["model_config"] = json.dumps(config)
    ours = load_keras(tmp_path / "k3.h5")
    image, table = sample((10, 10, 2)), sample((3,), seed=2)
    ours.eval()
    with torch.no_grad():
        got = ours(torch.from_numpy(channels_first(image)), torch.from_numpy(table))
    for g, e in zip(got, keras_model([image, table], training=False)):
        np.testing.assert_allclose(g.numpy(), keras.ops.convert_to_numpy(e), atol=TOLERANCE, rtol=TOLERANCE)


def test_what_deepfield_would_compute_differently_is_refused_in_one_line(tmp_path):
    cases = {
        "dense_on_image": ([keras.Input((4, 4, 3)), L.Dense(2, name="d")],
                           r"layer 'd' \(Dense\): a Dense on a 4-axis channels-last tensor acts on its channels"),
        "softmax_channels_first": ([keras.Input((3, 4, 4)), L.Conv2D(2, 3, data_format="channels_first",
                                                                   activation="softmax", name="s")],
                                   r"layer 's' \(Conv2D\): activation 'softmax' on a channels-first tensor"),
        "groups": ([keras.Input((4, 4, 4)), L.Conv2D(4, 3, groups=2, name="g")],
                   r"layer 'g' \(Conv2D\): groups=2 has no deepfield equivalent yet"),
    }
    for name, (layers, message) in cases.items():
        keras.Sequential(layers).save(tmp_path / f"{name}.keras")
        with pytest.raises(DeepfieldError, match=message):
            load_keras(tmp_path / f"{name}.keras")


def test_initialisers_come_over_with_their_arguments(tmp_path):
    keras_model = keras.Sequential([keras.Input((5,)), L.Dense(
        3, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02, seed=1), bias_initializer="he_normal",
        name="d"), L.Dense(2, kernel_initializer=keras.initializers.Orthogonal(gain=2.0), name="e")])
    ours = converted(keras_model, tmp_path)
    assert ours.d.get_config()["kernel_initializer"] == {"class_name": "TruncatedNormal",
                                                         "config": {"mean": 0.0, "stddev": 0.02}}
    assert ours.d.get_config()["bias_initializer"] == "he_normal"
    assert ours.e.get_config()["kernel_initializer"] == {"class_name": "Orthogonal", "config": {"gain": 2.0}}


def test_regularisers_and_constraints_come_over_and_go_back(tmp_path):
    keras_model = randomised(keras.Sequential([keras.Input((5,)), L.Dense(
        3, kernel_regularizer=keras.regularizers.L2(0.02), bias_regularizer="l1",
        kernel_constraint=keras.constraints.MaxNorm(2.0), name="d"), L.ActivityRegularization(l2=0.5, name="a")]))
    ours = assert_same_outputs(keras_model, tmp_path, (5,))
    config = ours.d.get_config()
    assert config["kernel_regularizer"]["class_name"] == "L2"
    assert config["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.02)
    assert config["kernel_constraint"]["class_name"] == "MaxNorm"
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras").get_layer("d")
    assert theirs.kernel_regularizer.l2 == pytest.approx(0.02) and theirs.bias_regularizer.l1 == pytest.approx(0.01)
    assert theirs.kernel_constraint.max_value == 2.0
    assert keras.saving.load_model(tmp_path / "back.keras").get_layer("a").l2 == 0.5


# -- the shape, noise and normalisation layers -----------------------------------------------------------------


def shape_models():
    return {
        "2d": ((12, 12, 3), keras.Sequential([
            keras.Input((12, 12, 3)), L.ZeroPadding2D(((1, 2), (0, 1))), L.Conv2D(6, 3, activation="relu"),
            L.LayerNormalization(), L.GroupNormalization(groups=3, epsilon=1e-2),
            L.Cropping2D(((1, 0), (0, 1))), L.UpSampling2D(2), L.UpSampling2D(2, interpolation="bilinear"),
            L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="tanh"),
            L.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2),
            L.Conv2DTranspose(4, 3, strides=2, padding="same"), L.Conv2DTranspose(3, 2, strides=2, output_padding=1),
            L.GaussianNoise(0.1),
            L.GaussianDropout(0.2), L.AlphaDropout(0.1), L.MaxPooling2D(8), L.Flatten(), L.LayerNormalization(),
            L.Dense(3)])),
        "1d": ((16, 2), keras.Sequential([
            keras.Input((16, 2)), L.ZeroPadding1D((2, 1)), L.Conv1D(4, 3), L.Cropping1D((1, 2)), L.UpSampling1D(3),
            L.DepthwiseConv1D(3, depth_multiplier=2), L.SeparableConv1D(3, 5, padding="same"),
            L.Conv1DTranspose(2, 3, strides=2), L.Flatten(), L.Dense(2)])),
        "3d": ((4, 6, 6, 2), keras.Sequential([
            keras.Input((4, 6, 6, 2)), L.ZeroPadding3D(1), L.Conv3D(3, 3), L.Cropping3D(((0, 1), (1, 0), (1, 1))),
            L.UpSampling3D((1, 2, 2)), L.Conv3DTranspose(2, 2, strides=2, padding="same"), L.Flatten(),
            L.Dense(2)])),
    }


@pytest.mark.parametrize("kind", ["2d", "1d", "3d"])
def test_the_shape_noise_and_normalisation_layers_convert_both_ways(tmp_path, kind):
    shape, keras_model = shape_models()[kind]
    randomised(keras_model, scale=0.2)  # outputs of order 1, where 1e-5 is float32 rounding
    for suffix in (".keras", ".h5"):
        ours = assert_same_outputs(keras_model, tmp_path, shape, suffix)
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    x = sample(shape)
    np.testing.assert_allclose(keras_outputs(theirs, x), keras_outputs(keras_model, x), atol=TOLERANCE,
                               rtol=TOLERANCE)


# -- sequences -------------------------------------------------------------------------------------------------


def test_recurrent_models_convert_both_ways(tmp_path):
    ids = keras.Sequential([keras.Input((7,), dtype="int32"), L.Embedding(20, 6, mask_zero=True),
                            L.LSTM(5, return_sequences=True), L.GRU(4, return_sequences=True),
                            L.SimpleRNN(3), L.Dense(2)])
    curves = keras.Sequential([keras.Input((9, 3)), L.Masking(0.0), L.GRU(4, reset_after=False,
                                                                       return_sequences=True),
                               L.Dropout(0.2), L.LSTM(2, go_backwards=True)])
    rng = np.random.default_rng(3)
    tokens = rng.integers(0, 20, size=(4, 7))
    tokens[:, :2] = 0  # padding, masked
    series = rng.normal(size=(4, 9, 3)).astype(np.float32)
    series[1, 6:] = 0.0
    for keras_model, x, shape in ((ids, tokens, (7,)), (curves, series, (9, 3))):
        randomised(keras_model, scale=0.3)
        expected = keras_outputs(keras_model, x)
        for suffix in (".keras", ".h5"):
            ours = converted(keras_model, tmp_path, suffix)
            assert ours.input_shape == shape  # Keras's layout: a sequence is not transposed
            np.testing.assert_allclose(deepfield_outputs(ours, x), expected, atol=TOLERANCE, rtol=TOLERANCE)
        ours.save_keras(tmp_path / "back.keras")
        theirs = keras.saving.load_model(tmp_path / "back.keras")
        np.testing.assert_allclose(keras_outputs(theirs, x), expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_preprocessing_layers_convert_both_ways(tmp_path):
    adapted = L.Normalization()
    adapted.adapt(np.random.default_rng(4).normal(2.0, 3.0, size=(50, 8, 8, 2)).astype(np.float32))
    for normalization in (L.Normalization(mean=[1.0, -2.0], variance=[4.0, 0.25]), adapted):
        keras_model = randomised(keras.Sequential([
            keras.Input((8, 8, 2)), L.Rescaling(1 / 255.0, offset=-0.5), normalization,
            L.RandomFlip("horizontal", seed=1), L.RandomRotation(0.1), L.RandomTranslation(0.1, 0.2),
            L.RandomZoom(0.1), L.Conv2D(3, 3), L.Flatten(), L.Dense(2)]), scale=0.3)
        ours = assert_same_outputs(keras_model, tmp_path, (8, 8, 2))
        ours.save_keras(tmp_path / "back.keras")
        theirs = keras.saving.load_model(tmp_path / "back.keras")
        x = sample((8, 8, 2))
        np.testing.assert_allclose(keras_outputs(theirs, x), keras_outputs(keras_model, x), atol=TOLERANCE,
                                   rtol=TOLERANCE)


def test_reshape_permute_and_repeat_vector_convert_both_ways(tmp_path):
    models = [((12,), keras.Sequential([keras.Input((12,)), L.Dense(12), L.Reshape((4, 3)), L.LSTM(2)])),
              ((5, 6, 2), keras.Sequential([keras.Input((5, 6, 2)), L.Conv2D(3, 2), L.Permute((2, 1, 3)),
                                            L.Conv2D(2, 2), L.Permute((3, 1, 2)), L.Flatten(), L.Dense(2)])),
              ((4,), keras.Sequential([keras.Input((4,)), L.RepeatVector(6), L.Conv1D(3, 2), L.Flatten(),
                                       L.Dense(2)]))]
    for shape, keras_model in models:
        randomised(keras_model, scale=0.3)
        ours = assert_same_outputs(keras_model, tmp_path, shape)
        ours.save_keras(tmp_path / "back.keras")
        theirs = keras.saving.load_model(tmp_path / "back.keras")
        x = sample(shape)
        np.testing.assert_allclose(keras_outputs(theirs, x), keras_outputs(keras_model, x), atol=TOLERANCE,
                                   rtol=TOLERANCE)
    from deepfield.models import Conv2D, Reshape
    from deepfield.models.keras_files import save_keras
    from deepfield.models.sequential import Sequential

    model = Sequential([Conv2D(2, 1), Reshape((4, 8), name="r")], input_shape=(2, 4, 4))  # mixes the channels
    with pytest.raises(DeepfieldError, match=r"Reshape 'r': it reshapes a channels-last tensor across its channels"):
        save_keras(model, tmp_path / "r.keras")


def test_save_keras_refuses_a_layer_keras_has_no_twin_of_naming_it(tmp_path):
    from deepfield.models import Flatten, SumPooling2D
    from deepfield.training import Sequential

    model = Sequential([SumPooling2D(2, input_shape=(1, 4, 4)), Flatten()])
    with pytest.raises(DeepfieldError, match=r"layer 'sum_pooling2d' \(SumPooling2D\): deepfield cannot write this "
                                             r"layer for Keras"):
        model.save_keras(tmp_path / "x.keras")
    assert not (tmp_path / "x.keras").exists()


def test_bidirectional_layers_convert_both_ways(tmp_path):
    keras_model = randomised(keras.Sequential([
        keras.Input((6, 3)), L.Bidirectional(L.LSTM(4, return_sequences=True)),
        L.Bidirectional(L.GRU(2), merge_mode="sum"), L.Dense(2)]), scale=0.3)
    x = sample((6, 3))
    for suffix in (".keras", ".h5"):
        ours = converted(keras_model, tmp_path, suffix)
        np.testing.assert_allclose(deepfield_outputs(ours, x), keras_outputs(keras_model, x), atol=TOLERANCE,
                                   rtol=TOLERANCE)
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(keras_outputs(theirs, x), keras_outputs(keras_model, x), atol=TOLERANCE,
                               rtol=TOLERANCE)


def test_a_mask_keras_would_carry_where_deepfield_does_not_is_refused(tmp_path):
    """Keras's Dense passes a mask of padded steps on to the next recurrent layer, deepfield's does not: converting
    would change the outputs of the padded sequences, silently; it is refused, naming the layer."""
    keras_model = keras.Sequential([keras.Input((9, 3)), L.Masking(0.0), L.GRU(4, return_sequences=True),
                                    L.Dense(3), L.LSTM(2, name="late")])
    keras_model.save(tmp_path / "m.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'late' \(LSTM\): Keras hands it the mask of padded steps"):
        load_keras(tmp_path / "m.keras")
