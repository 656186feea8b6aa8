"""The Keras patterns a generative or sequence model is built of, converted both ways and checked against Keras 3:
the decoder's ``Dense -> Reshape((h, w, c)) -> Conv2DTranspose``, seq2seq's ``RepeatVector -> LSTM`` and
``Conv1D -> LSTM``, models inside models and ``TimeDistributed``, and the regularisers and constraints of the
recurrent layers and Embedding (trained a few SGD steps as Keras trains them)."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
L = keras.layers

from deepfield.errors import DeepfieldError  # noqa: E402
from deepfield.models.keras_files import load_keras, save_keras  # noqa: E402

TOLERANCE = 1e-5


def randomised(model, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        values = rng.normal(0.0, scale, size=tuple(weight.shape)).astype(np.float32)
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values)
    return model


def sample(shape, n=3, seed=1):
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def keras_outputs(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def deepfield_outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def channels_first(x):
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def both_ways(keras_model, tmp_path, shape, image_out=False, image_in=False):
    """Convert ``keras_model`` from .keras and .h5, compare the outputs, write it back and load it with Keras;
    returns the deepfield model."""
    x = sample(shape)
    expected = keras_outputs(keras_model, x)
    ours_x = channels_first(x) if image_in else x
    for suffix in (".keras", ".h5"):
        keras_model.save(tmp_path / f"model{suffix}")
        ours = load_keras(tmp_path / f"model{suffix}")
        got = deepfield_outputs(ours, ours_x)
        np.testing.assert_allclose(got, np.moveaxis(expected, -1, 1) if image_out else expected,
                                   atol=TOLERANCE, rtol=TOLERANCE, err_msg=suffix)
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(keras_outputs(theirs, x), expected, atol=TOLERANCE, rtol=TOLERANCE)
    return ours


# -- 4. regularisers and constraints on the recurrent layers and Embedding ---------------------------------------


def test_a_regularised_lstm_trains_as_keras_and_its_penalties_convert_both_ways(tmp_path):
    keras_model = randomised(keras.Sequential([
        keras.Input((6, 3)),
        L.LSTM(4, kernel_regularizer=keras.regularizers.L2(0.05), recurrent_regularizer="l1",
               bias_regularizer=keras.regularizers.L1L2(0.01, 0.02), activity_regularizer=keras.regularizers.L2(0.1),
               kernel_constraint=keras.constraints.MaxNorm(0.8), recurrent_constraint="unit_norm",
               bias_constraint="non_neg", return_sequences=True, name="lstm"),
        L.GRU(2, kernel_regularizer="l2", recurrent_constraint=keras.constraints.MaxNorm(1.5), name="gru")]))
    keras_model.save(tmp_path / "model.keras")
    ours = load_keras(tmp_path / "model.keras")
    config = ours.lstm.get_config()
    assert config["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.05)
    assert config["recurrent_constraint"]["class_name"] == "UnitNorm"
    x, y = sample((6, 3), n=8, seed=2), sample((2,), n=8, seed=3)
    keras_model.compile(optimizer=keras.optimizers.SGD(0.2), loss="mse")
    ours.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.2}}, loss="mse")
    expected = keras_model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    got = ours.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for name in ("lstm", "gru"):
        for ours_w, theirs_w in zip((getattr(ours, name).kernel, getattr(ours, name).recurrent_kernel,
                                     getattr(ours, name).bias), keras_model.get_layer(name).get_weights()):
            np.testing.assert_allclose(ours_w.detach().numpy(), theirs_w, atol=1e-5)
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras").get_layer("lstm")
    assert theirs.kernel_regularizer.l2 == pytest.approx(0.05) and theirs.recurrent_regularizer.l1 == 0.01
    assert theirs.kernel_constraint.max_value == 0.8 and type(theirs.bias_constraint).__name__ == "NonNeg"
    assert theirs.activity_regularizer.l2 == pytest.approx(0.1)


def test_a_regularised_embedding_trains_as_keras_and_converts_both_ways(tmp_path):
    keras_model = randomised(keras.Sequential([
        keras.Input((5,), dtype="int32"),
        L.Embedding(9, 3, embeddings_regularizer=keras.regularizers.L2(0.1), activity_regularizer="l1",
                    embeddings_constraint=keras.constraints.MaxNorm(0.5, axis=1), name="e"),
        L.SimpleRNN(2, kernel_regularizer="l1", name="r")]))
    keras_model.save(tmp_path / "model.keras")
    ours = load_keras(tmp_path / "model.keras")
    ids = np.random.default_rng(4).integers(0, 9, size=(8, 5))
    y = sample((2,), n=8, seed=5)
    keras_model.compile(optimizer=keras.optimizers.SGD(0.3), loss="mse")
    ours.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.3}}, loss="mse")
    expected = keras_model.fit(ids, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    got = ours.fit(ids, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(ours.e.embeddings.detach().numpy(), keras_model.get_layer("e").get_weights()[0],
                               atol=1e-5)
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras").get_layer("e")
    assert theirs.embeddings_regularizer.l2 == pytest.approx(0.1) and theirs.embeddings_constraint.axis == 1
    assert theirs.activity_regularizer.l1 == pytest.approx(0.01)


# -- 1. Reshape of flat features into a channels-last image (the decoder) -----------------------------------------


def decoders():
    inp = keras.Input((5,))
    x = L.Dense(4 * 3 * 2, activation="relu", name="d")(inp)
    x = L.Reshape((4, 3, 2))(x)
    functional = keras.Model(inp, L.Conv2D(3, 3, padding="same")(x))
    return {
        "dense": keras.Sequential([keras.Input((5,)), L.Dense(4 * 3 * 2, activation="tanh"), L.Reshape((4, 3, 2)),
                                   L.Conv2DTranspose(3, 3, strides=2, padding="same"), L.Conv2D(2, 3)]),
        "dcgan": keras.Sequential([keras.Input((5,)), L.Dense(4 * 4 * 3, use_bias=False), L.BatchNormalization(),
                                   L.LeakyReLU(0.2), L.Dropout(0.3), L.Reshape((4, 4, -1)),
                                   L.Conv2DTranspose(2, 3, strides=2, padding="same", activation="sigmoid")]),
        "volume": keras.Sequential([keras.Input((6,)), L.Dense(2 * 3 * 2 * 4), L.Reshape((2, 3, 2, 4)),
                                    L.Conv3D(2, 2)]),
        "functional": functional,
    }


@pytest.mark.parametrize("kind", ["dense", "dcgan", "volume", "functional"])
def test_dense_reshaped_into_an_image_converts_both_ways(tmp_path, kind):
    keras_model = randomised(decoders()[kind])
    ours = both_ways(keras_model, tmp_path, keras_model.input_shape[1:], image_out=True)
    reshape = next(m for m in ours.modules() if type(m).__name__ == "Reshape")
    expected = {"dense": (2, 4, 3), "dcgan": (3, 4, 4), "volume": (4, 2, 3, 2), "functional": (2, 4, 3)}[kind]
    assert reshape.target_shape == expected  # channels first; the Dense's columns reordered to match


def test_a_deepfield_decoder_goes_to_keras_channels_last(tmp_path):
    from deepfield.models import Conv2D, Dense, Reshape
    from deepfield.models.sequential import Sequential

    model = Sequential([Dense(2 * 4 * 3), Reshape((2, 4, 3)), Conv2D(3, 2)], input_shape=(5,), name="decoder")
    model.build()
    save_keras(model, tmp_path / "decoder.keras")
    theirs = keras.saving.load_model(tmp_path / "decoder.keras")
    assert theirs.layers[1].target_shape == (4, 3, 2)
    x = sample((5,))
    np.testing.assert_allclose(np.moveaxis(keras_outputs(theirs, x), -1, 1), deepfield_outputs(model, x),
                               atol=TOLERANCE, rtol=TOLERANCE)


def test_an_image_reshaped_from_features_no_dense_makes_is_refused_in_one_line(tmp_path):
    inp = keras.Input((6,))
    d = L.Dense(12, name="d")(inp)
    model = keras.Model(inp, [L.Reshape((2, 3, 2), name="r")(d), d])  # the Dense's outputs are used twice
    model.save(tmp_path / "twice.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'r' \(Reshape\): it reshapes flat features into a "
                                             r"channels-last image"):
        load_keras(tmp_path / "twice.keras")


def test_keras_weights_of_a_decoder_load_onto_a_deepfield_decoder_built_alike(tmp_path):
    from deepfield.models import BatchNormalization, Conv2D, Dense, Reshape
    from deepfield.models.keras_files import load_keras_weights
    from deepfield.models.sequential import Sequential

    keras_model = randomised(keras.Sequential([keras.Input((5,)), L.Dense(24), L.BatchNormalization(),
                                               L.Reshape((4, 3, 2)), L.Conv2D(3, 2)]))
    keras_model.save_weights(tmp_path / "decoder.weights.h5")
    model = Sequential([Dense(24), BatchNormalization(), Reshape((2, 4, 3)), Conv2D(3, 2)], input_shape=(5,))
    model.build()
    load_keras_weights(model, tmp_path / "decoder.weights.h5")
    x = sample((5,))
    np.testing.assert_allclose(deepfield_outputs(model, x), np.moveaxis(keras_outputs(keras_model, x), -1, 1),
                               atol=TOLERANCE, rtol=TOLERANCE)


# -- 3. a channels-last sequence (RepeatVector, Conv1D) into a recurrent layer ----------------------------------


def sequence_models():
    encoder_input = keras.Input((5, 3))
    x = L.RepeatVector(6)(L.LSTM(4, name="encoder")(encoder_input))
    seq2seq = keras.Model(encoder_input, L.Dense(2)(L.LSTM(3, return_sequences=True, name="decoder")(x)))
    return {
        "repeat": ((4,), False, keras.Sequential([keras.Input((4,)), L.RepeatVector(6),
                                                  L.LSTM(3, return_sequences=True), L.Dense(2)])),
        "conv1d": ((9, 2), True, keras.Sequential([keras.Input((9, 2)), L.Conv1D(4, 3, activation="relu"),
                                                   L.MaxPooling1D(2), L.GRU(3)])),
        "bidirectional": ((4,), False, keras.Sequential([keras.Input((4,)), L.RepeatVector(5),
                                                         L.Bidirectional(L.SimpleRNN(2))])),
        "seq2seq": ((5, 3), False, seq2seq),
    }


@pytest.mark.parametrize("kind", ["repeat", "conv1d", "bidirectional", "seq2seq"])
def test_a_channels_last_sequence_into_a_recurrent_layer_gets_a_permute_both_ways(tmp_path, kind):
    shape, image_in, keras_model = sequence_models()[kind]
    ours = both_ways(randomised(keras_model), tmp_path, shape, image_in=image_in)
    permutes = [m for m in ours.modules() if type(m).__name__ == "Permute"]
    assert [p.dims for p in permutes] == [(2, 1)]
    back = keras.saving.load_model(tmp_path / "back.keras")
    assert not any(type(layer).__name__ == "Permute" for layer in back.layers)  # Keras needs none


def test_a_deepfield_spectrum_permuted_into_an_lstm_goes_to_keras_without_the_permute(tmp_path):
    from deepfield.models import LSTM, Dense, Permute
    from deepfield.models.sequential import Sequential

    model = Sequential([Permute((2, 1)), LSTM(3), Dense(2)], input_shape=(2, 7))  # (N, C, L): C bands, L epochs
    model.build()
    save_keras(model, tmp_path / "spectra.keras")
    theirs = keras.saving.load_model(tmp_path / "spectra.keras")
    assert [type(layer).__name__ for layer in theirs.layers] == ["LSTM", "Dense"]
    x = sample((2, 7))
    np.testing.assert_allclose(keras_outputs(theirs, np.moveaxis(x, 1, 2)), deepfield_outputs(model, x),
                               atol=TOLERANCE, rtol=TOLERANCE)


# -- 2. TimeDistributed and models inside models ---------------------------------------------------------------


def time_distributed_models():
    inp = keras.Input((4,))
    x = L.LSTM(3, return_sequences=True)(L.RepeatVector(5)(inp))
    seq2seq = keras.Model(inp, L.TimeDistributed(L.Dense(2, activation="tanh"))(x))
    return {
        "lstm": ((6, 3), False, keras.Sequential([keras.Input((6, 3)), L.LSTM(4, return_sequences=True),
                                                  L.TimeDistributed(L.Dense(2)), L.TimeDistributed(L.Dropout(0.5))])),
        "conv1d": ((7, 2), True, keras.Sequential([keras.Input((7, 2)), L.Conv1D(3, 2),
                                                   L.TimeDistributed(L.Dense(2, use_bias=False))])),
        "seq2seq": ((4,), False, seq2seq),
    }


@pytest.mark.parametrize("kind", ["lstm", "conv1d", "seq2seq"])
def test_time_distributed_over_a_sequence_converts_both_ways(tmp_path, kind):
    shape, image_in, keras_model = time_distributed_models()[kind]
    ours = both_ways(randomised(keras_model), tmp_path, shape, image_in=image_in)
    assert any(type(m).__name__ == "TimeDistributed" for m in ours.modules())


def test_time_distributed_over_channels_last_frames_is_refused_in_one_line(tmp_path):
    keras.Sequential([keras.Input((3, 8, 8, 1)), L.TimeDistributed(L.Conv2D(2, 3), name="frames")]).save(
        tmp_path / "frames.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'frames' \(TimeDistributed\): .*channels-last"):
        load_keras(tmp_path / "frames.keras")


def nested_models():
    head = keras.Sequential([keras.Input((6,)), L.Dense(4, activation="relu"), L.Dense(3)], name="head")
    inp = keras.Input((5,))
    sequential_inside = keras.Model(inp, L.Dense(2)(head(L.Dense(6)(inp))))
    image = keras.Input((8, 8, 2))
    y = L.Conv2D(3, 3)(image)
    stem_in = keras.Input((6, 6, 3))
    stem = keras.Model(stem_in, L.Flatten()(L.MaxPooling2D(2)(L.Conv2D(4, 2, padding="same")(stem_in))),
                       name="stem")
    functional_inside = keras.Model(image, L.Dense(2)(stem(y)))
    encoder = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(3, 3), L.Flatten(), L.Dense(4)], name="encoder")
    decoder = keras.Sequential([keras.Input((4,)), L.Dense(2 * 2 * 3), L.Reshape((2, 2, 3)),
                                L.Conv2DTranspose(2, 3, strides=2, padding="same")], name="decoder")
    autoencoder = keras.Sequential([keras.Input((8, 8, 2)), encoder, decoder])
    return {"sequential": ((5,), False, sequential_inside), "functional": ((8, 8, 2), True, functional_inside),
            "autoencoder": ((8, 8, 2), True, autoencoder)}


@pytest.mark.parametrize("kind", ["sequential", "functional", "autoencoder"])
def test_a_model_inside_a_functional_model_converts_both_ways(tmp_path, kind):
    shape, image_in, keras_model = nested_models()[kind]
    ours = both_ways(randomised(keras_model), tmp_path, shape, image_in=image_in, image_out=kind == "autoencoder")
    inner = [m for m in ours.children() if type(m).__name__ in ("Sequential", "Functional")]
    assert len(inner) == (2 if kind == "autoencoder" else 1)


def siamese_models():
    head = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="tanh"), L.Dense(2)], name="head")
    a, b = keras.Input((3,)), keras.Input((3,))
    dense = keras.Model([a, b], L.Subtract()([head(a), head(b)]))
    image_in = keras.Input((6, 6, 2))
    tower = keras.Model(image_in, L.Dense(3)(L.Flatten()(L.Conv2D(2, 3)(image_in))), name="tower")
    left, right = keras.Input((6, 6, 2)), keras.Input((6, 6, 2))
    images = keras.Model([left, right], L.Concatenate()([tower(left), tower(right)]))
    return {"dense": ((3,), False, dense), "images": ((6, 6, 2), True, images)}


@pytest.mark.parametrize("kind", ["dense", "images"])
def test_a_model_used_twice_as_a_layer_shares_its_weights_both_ways(tmp_path, kind):
    shape, image_in, keras_model = siamese_models()[kind]
    keras_model = randomised(keras_model)
    x = [sample(shape, seed=1), sample(shape, seed=2)]
    expected = keras_outputs(keras_model, x)
    keras_model.save(tmp_path / "siamese.keras")
    ours = load_keras(tmp_path / "siamese.keras")
    ours.eval()
    with torch.no_grad():
        got = ours(*[torch.from_numpy(channels_first(v) if image_in else v) for v in x]).numpy()
    np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=TOLERANCE)
    inner = [m for m in ours.children() if type(m).__name__ in ("Sequential", "Functional")]
    assert len(inner) == 1  # one model, one set of weights, called twice
    ours.save_keras(tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(keras_outputs(theirs, x), expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_a_model_used_twice_on_tensors_held_apart_is_refused_in_one_line(tmp_path):
    head = keras.Sequential([keras.Input((4, 3)), L.Flatten(), L.Dense(2)], name="head")
    seq, image = keras.Input((4, 3)), keras.Input((4, 3))
    held_alike = L.LSTM(3, return_sequences=True)(seq)  # (steps, features) as Keras holds it
    channels_last = L.Conv1D(3, 1)(image)  # channels first in deepfield
    keras.Model([seq, image], L.Add()([head(held_alike), head(channels_last)])).save(tmp_path / "twice.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'head' \(Sequential\): .*called on tensors"):
        load_keras(tmp_path / "twice.keras")


def image_reshape_models():
    inp = keras.Input((4, 4, 3))
    pixels = L.Reshape((16, 3))(L.Conv2D(3, 1)(inp))
    functional = keras.Model(inp, L.Dense(2)(L.GRU(2)(pixels)))
    return {
        "pixels": ((4, 4, 3), keras.Sequential([keras.Input((4, 4, 3)), L.Conv2D(3, 1), L.Reshape((16, 3)),
                                                L.LSTM(2)])),
        "pixels_conv1d": ((4, 4, 3), keras.Sequential([keras.Input((4, 4, 3)), L.Reshape((-1, 3)), L.Conv1D(2, 3),
                                                       L.GlobalMaxPooling1D()])),
        "rows": ((4, 4, 3), keras.Sequential([keras.Input((4, 4, 3)), L.Conv2D(2, 1), L.Reshape((4, 8)),
                                              L.LSTM(2)])),
        "functional": ((4, 4, 3), functional),
    }


@pytest.mark.parametrize("kind", ["pixels", "pixels_conv1d", "rows", "functional"])
def test_a_reshape_of_a_channels_last_image_converts_both_ways(tmp_path, kind):
    shape, keras_model = image_reshape_models()[kind]
    ours = both_ways(randomised(keras_model), tmp_path, shape, image_in=True)
    permutes = [p.dims for p in ours.modules() if type(p).__name__ == "Permute"]
    assert permutes == {"pixels": [(2, 1)], "pixels_conv1d": [], "rows": [(2, 3, 1)], "functional": [(2, 1)]}[kind]
    back = keras.saving.load_model(tmp_path / "back.keras")
    assert not any(type(layer).__name__ == "Permute" for layer in back.layers)  # Keras needs none


def test_a_reshape_after_a_flatten_of_an_image_is_refused_both_ways(tmp_path):
    keras.Sequential([keras.Input((4, 4, 2)), L.Flatten(), L.Reshape((8, 4), name="r")]).save(tmp_path / "f.keras")
    with pytest.raises(DeepfieldError, match=r"layer 'r' \(Reshape\): it follows a Flatten of a channels-last image"):
        load_keras(tmp_path / "f.keras")
    from deepfield.models import Flatten, Reshape
    from deepfield.models.sequential import Sequential

    model = Sequential([Flatten(), Reshape((8, 4), name="r")], input_shape=(2, 4, 4))
    with pytest.raises(DeepfieldError, match=r"Reshape 'r': it follows a Flatten of a channels-last image"):
        save_keras(model, tmp_path / "back.keras")


def test_an_activity_regulariser_on_a_recurrent_layer_returning_its_states_penalises_them_all_as_keras():
    from deepfield.models import LSTM

    theirs = L.LSTM(3, return_state=True, activity_regularizer=keras.regularizers.L2(0.1))
    x = sample((5, 2), n=4)
    theirs(x)
    ours = LSTM(3, return_state=True, activity_regularizer={"class_name": "L2", "config": {"l2": 0.1}})
    ours.build_for((5, 2))
    with torch.no_grad():
        for name, weight in zip(("kernel", "recurrent_kernel", "bias"), theirs.get_weights()):
            getattr(ours, name).copy_(torch.from_numpy(weight))
    ours(torch.from_numpy(x))
    expected = sum(float(keras.ops.convert_to_numpy(loss)) for loss in theirs.losses)
    assert float(ours.activity_loss) == pytest.approx(expected, rel=1e-5)


def held_alike_sequence_models():
    inp = keras.Input((6, 3))
    x = L.LSTM(4, return_sequences=True, name="lstm")(inp)
    functional = keras.Model(inp, L.GlobalAveragePooling1D()(L.Conv1D(2, 3, padding="same")(x)))
    return {
        "decoder": ((8,), keras.Sequential([keras.Input((8,)), L.Dense(12, activation="tanh"), L.Reshape((6, 2)),
                                            L.Conv1D(3, 3, padding="same"), L.UpSampling1D(2), L.Conv1D(1, 3)])),
        "lstm": ((6, 3), keras.Sequential([keras.Input((6, 3)), L.LSTM(4, return_sequences=True),
                                           L.Conv1D(2, 3), L.MaxPooling1D(2), L.Flatten(), L.Dense(2)])),
        "functional": ((6, 3), functional),
    }


@pytest.mark.parametrize("kind", ["decoder", "lstm", "functional"])
def test_a_convolution_over_a_sequence_held_alike_gets_a_permute_both_ways(tmp_path, kind):
    shape, keras_model = held_alike_sequence_models()[kind]
    ours = both_ways(randomised(keras_model), tmp_path, shape, image_out=kind == "decoder")
    assert [p.dims for p in ours.modules() if type(p).__name__ == "Permute"] == [(2, 1)]
    back = keras.saving.load_model(tmp_path / "back.keras")
    assert not any(type(layer).__name__ == "Permute" for layer in back.layers)  # Keras needs none


def test_a_permute_into_a_recurrent_layer_of_a_deepfield_functional_model_goes_to_keras_unchanged(tmp_path):
    from deepfield.models import LSTM, Dense, Permute
    from deepfield.models.functional import Functional
    from deepfield.models.symbolic import Input

    inp = Input((7, 2))
    model = Functional(inp, Dense(2)(LSTM(3)(Permute((2, 1))(inp))))
    save_keras(model, tmp_path / "spectra.keras")
    theirs = keras.saving.load_model(tmp_path / "spectra.keras")
    x = sample((7, 2))
    assert [type(layer).__name__ for layer in theirs.layers] == ["InputLayer", "LSTM", "Dense"]  # as before
    np.testing.assert_allclose(keras_outputs(theirs, np.moveaxis(x, 1, 2)), deepfield_outputs(model, x),
                               atol=TOLERANCE, rtol=TOLERANCE)


def test_a_deepfield_convolution_over_a_sequence_held_alike_is_refused_by_save_keras_in_one_line(tmp_path):
    from deepfield.models import LSTM, Conv1D, Dense, Reshape
    from deepfield.models.sequential import Sequential

    for layers in ([Dense(12), Reshape((2, 6)), Conv1D(3, 3, name="c")],  # deepfield's Conv1D reads (C, L)
                   [Reshape((6, 2)), LSTM(4, return_sequences=True), Conv1D(3, 3, name="c")]):
        model = Sequential(layers, input_shape=(12,))
        model.build()
        with pytest.raises(DeepfieldError, match=r"^layer 'c' \(Conv1D\): it reads as \(channels, steps\) a tensor "
                                                 r"of shape \(\d, \d\) that Keras holds alike.*Permute\(\(2, 1\)\)"):
            save_keras(model, tmp_path / "signal.keras")
        assert not (tmp_path / "signal.keras").exists()
    model = Sequential([Conv1D(3, 3), LSTM(2, name="r")], input_shape=(2, 9))  # it reads the (C, L) as (T, F)
    model.build()
    with pytest.raises(DeepfieldError, match=r"^layer 'r' \(LSTM\): it reads as \(steps, features\) a tensor of "
                                             r"shape \(3, 7\) that Keras holds channels last.*Permute\(\(2, 1\)\)"):
        save_keras(model, tmp_path / "signal.keras")


def test_a_deepfield_convolution_after_a_permute_of_a_sequence_goes_to_keras_without_it(tmp_path):
    from deepfield.models import LSTM, Conv1D, Dense, Permute, Reshape
    from deepfield.models.sequential import Sequential

    model = Sequential([Dense(12), Reshape((6, 2)), Permute((2, 1)), Conv1D(3, 3), Permute((2, 1)), LSTM(2)],
                       input_shape=(5,))
    model.build()
    save_keras(model, tmp_path / "signal.keras")
    theirs = keras.saving.load_model(tmp_path / "signal.keras")
    assert [type(layer).__name__ for layer in theirs.layers] == ["Dense", "Reshape", "Conv1D", "LSTM"]
    x = sample((5,))
    np.testing.assert_allclose(keras_outputs(theirs, x), deepfield_outputs(model, x), atol=TOLERANCE, rtol=TOLERANCE)


def test_a_frozen_base_model_inside_a_model_comes_over_frozen_and_goes_back_so(tmp_path):
    base = keras.Sequential([keras.Input((4,)), L.Dense(3, name="dense")], name="base")
    base.trainable = False  # fine-tuning's first step, as Keras's guide writes it
    inp = keras.Input((4,))
    keras.Model(inp, L.Dense(1, name="top")(base(inp))).save(tmp_path / "frozen.keras")
    ours = load_keras(tmp_path / "frozen.keras")
    assert {n: p.requires_grad for n, p in ours.named_parameters()} == {
        "base.dense.weight": False, "base.dense.bias": False, "top.weight": True, "top.bias": True}
    save_keras(ours, tmp_path / "back.keras")
    theirs = keras.saving.load_model(tmp_path / "back.keras")
    assert not theirs.get_layer("base").layers[0].trainable and len(theirs.trainable_weights) == 2
