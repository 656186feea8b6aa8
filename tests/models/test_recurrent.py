"""SimpleRNN, LSTM, GRU, Bidirectional, Embedding, Masking against Keras 3 (torch backend) with the same weights."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from deepfield import layers  # noqa: E402
from deepfield.errors import DeepfieldError  # noqa: E402
from deepfield.models.sequential import Sequential  # noqa: E402

N, T, F, UNITS = 3, 7, 4, 5
CELLS = ["SimpleRNN", "LSTM", "GRU"]


def sequences(seed=0):
    return np.random.default_rng(seed).normal(size=(N, T, F)).astype("float32")


def padded(seed=1):
    """Sequences with masked (all-zero) steps: right padding, left padding, a gap, and one sequence all padding."""
    x = np.random.default_rng(seed).normal(size=(4, T, F)).astype("float32")
    x[0, 5:] = 0.0
    x[1, :2] = 0.0
    x[2, 2:4] = 0.0
    x[3] = 0.0
    return x


def keras_out(layer, x, **call):
    out = layer(keras.ops.convert_to_tensor(x), **call)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def ours(layer, x, **call):
    layer.eval()
    with torch.no_grad():
        out = layer(torch.from_numpy(x), **call)
    return [o.numpy() for o in out] if isinstance(out, tuple) else out.numpy()


def copied(keras_layer, x, cls_name, **kwargs):
    """Our ``cls_name(**kwargs)``, built on ``x`` and given ``keras_layer``'s weights, unchanged."""
    layer = getattr(layers, cls_name)(**kwargs)
    layer(torch.from_numpy(x[:1]))
    for ours_w, theirs in zip([layer.kernel, layer.recurrent_kernel, layer.bias], keras_layer.get_weights()):
        assert tuple(ours_w.shape) == theirs.shape
        ours_w.data = torch.from_numpy(theirs)
    return layer


def pair(cls_name, x, **kwargs):
    theirs = getattr(keras.layers, cls_name)(UNITS, **kwargs)
    theirs.build(x.shape)
    return theirs, copied(theirs, x, cls_name, units=UNITS, **kwargs)


def close(a, b):
    if isinstance(a, list):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            close(u, v)
        return
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls_name", CELLS)
@pytest.mark.parametrize("options", [
    {}, {"return_sequences": True}, {"return_state": True}, {"go_backwards": True},
    {"return_sequences": True, "return_state": True, "go_backwards": True}, {"use_bias": False},
])
def test_cells_equal_keras(cls_name, options):
    x = sequences()
    theirs, mine = pair(cls_name, x, bias_initializer="random_normal", **options)
    close(ours(mine, x), keras_out(theirs, x))


@pytest.mark.parametrize("cls_name", CELLS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_masking_skips_steps_as_keras(cls_name, go_backwards):
    x = padded()
    theirs, mine = pair(cls_name, x, bias_initializer="random_normal", return_sequences=True, return_state=True,
                        go_backwards=go_backwards)
    kmask = keras.layers.Masking()
    close(ours(mine, x, mask=torch.from_numpy((x != 0).any(-1))),
          keras_out(theirs, keras_out(kmask, x), mask=keras.ops.convert_to_tensor((x != 0).any(-1))))
    # through the Masking layer, in a Sequential, last output only
    theirs.return_sequences, mine.return_sequences = False, False
    model = Sequential([layers.Masking(), mine])
    model.eval()
    with torch.no_grad():
        got = [o.numpy() for o in model(torch.from_numpy(x))]
    close(got, keras_out(keras.Sequential([keras.layers.Masking(), theirs]), x))


@pytest.mark.parametrize("cls_name", ["LSTM", "GRU", "SimpleRNN"])
def test_step_loop_equals_fused_kernel(cls_name):
    """The loop (other activations, recurrent dropout) computes what the fused kernel does, masked or not."""
    x = padded()
    theirs, fused = pair(cls_name, x, bias_initializer="random_normal", return_sequences=True, return_state=True)
    looped = copied(theirs, x, cls_name, units=UNITS, return_sequences=True, return_state=True)
    looped._fused_kernel = lambda: None
    mask = torch.from_numpy((x != 0).any(-1))
    close(ours(looped, x), ours(fused, x))
    close(ours(looped, x, mask=mask), ours(fused, x, mask=mask))


@pytest.mark.parametrize("cls_name, kwargs", [
    ("SimpleRNN", {"activation": "relu"}),
    ("SimpleRNN", {"activation": "sigmoid"}),
    ("LSTM", {"activation": "relu"}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"recurrent_activation": "tanh"}),
])
def test_other_variants_equal_keras(cls_name, kwargs):
    x = padded()
    theirs, mine = pair(cls_name, x, bias_initializer="random_normal", return_sequences=True, **kwargs)
    mask = (x != 0).any(-1)
    close(ours(mine, x, mask=torch.from_numpy(mask)), keras_out(theirs, x, mask=keras.ops.convert_to_tensor(mask)))


def test_initial_state_equals_keras():
    x = sequences()
    theirs, mine = pair("LSTM", x, return_state=True)
    h0, c0 = np.ones((N, UNITS), "float32") * 0.3, np.ones((N, UNITS), "float32") * -0.2
    close(ours(mine, x, initial_state=[torch.from_numpy(h0), torch.from_numpy(c0)]),
          keras_out(theirs, x, initial_state=[keras.ops.convert_to_tensor(h0), keras.ops.convert_to_tensor(c0)]))


def test_keras_defaults_and_weight_shapes():
    lstm = layers.LSTM(UNITS)
    lstm(torch.zeros(2, T, F))
    assert tuple(lstm.kernel.shape) == (F, 4 * UNITS) and tuple(lstm.recurrent_kernel.shape) == (UNITS, 4 * UNITS)
    expected_bias = torch.zeros(4 * UNITS)
    expected_bias[UNITS:2 * UNITS] = 1.0  # unit_forget_bias
    assert torch.equal(lstm.bias.detach(), expected_bias)
    r = lstm.recurrent_kernel.detach()
    torch.testing.assert_close(r @ r.T, torch.eye(UNITS), atol=1e-5, rtol=0)  # orthogonal rows
    gru = layers.GRU(UNITS)
    gru(torch.zeros(2, T, F))
    assert tuple(gru.bias.shape) == (2, 3 * UNITS) and gru.reset_after
    k = gru.kernel.detach()
    limit = (6 / (F + 3 * UNITS)) ** 0.5  # glorot_uniform over Keras's fans
    assert k.abs().max() <= limit and k.abs().max() > 0.5 * limit
    config = layers.SimpleRNN(3).get_config()
    for key, value in {"activation": "tanh", "use_bias": True, "recurrent_initializer": "orthogonal",
                       "return_sequences": False, "go_backwards": False, "dropout": 0.0}.items():
        assert config[key] == value


def test_layout_error_names_the_transpose():
    with pytest.raises(DeepfieldError, match=r"LSTM 'lstm': expects sequences \(N, T, F\).*Permute\(\(2, 1\)\)"):
        layers.LSTM(4)(torch.zeros(2, 3, 8, 8))


def test_spectrum_through_permute_equals_keras_on_transposed():
    """A channels-first spectrum (N, C, L) transposed to (N, L, C) gives Keras's numbers on (N, L, C)."""
    spectra = np.random.default_rng(3).normal(size=(N, F, T)).astype("float32")  # (N, C=F bands, L=T bins)
    theirs, mine = pair("GRU", spectra.transpose(0, 2, 1))
    close(ours(mine, np.ascontiguousarray(spectra.transpose(0, 2, 1))), keras_out(theirs, spectra.transpose(0, 2, 1)))


def test_dropout_only_while_training():
    x = torch.from_numpy(sequences())
    for cls in (layers.LSTM, layers.GRU, layers.SimpleRNN):
        layer = cls(UNITS, dropout=0.5, recurrent_dropout=0.5, return_sequences=True)
        layer.eval()
        first = layer(x)
        assert torch.equal(first, layer(x))
        layer.train()
        torch.manual_seed(0)
        drawn = layer(x)
        assert not torch.allclose(drawn, first)
        drawn.sum().backward()
        assert layer.kernel.grad is not None
        seeded = [cls(UNITS, dropout=0.5, recurrent_dropout=0.5, seed=4) for _ in range(2)]
        for one in seeded:
            one(x[:1])
            one.load_state_dict(seeded[0].state_dict())
        torch.testing.assert_close(seeded[0](x), seeded[1](x))


def test_trains_and_round_trips_config():
    model = Sequential([layers.Masking(input_shape=(T, F)), layers.LSTM(UNITS, return_sequences=True),
                        layers.GRU(UNITS), layers.Dense(1)])
    x = torch.from_numpy(padded())
    out = model(x)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    for layer in model._modules.values():
        again = type(layer).from_config(layer.get_config())
        assert again.get_config() == layer.get_config()


def bidirectional_pair(x, merge_mode, **kwargs):
    theirs = keras.layers.Bidirectional(keras.layers.LSTM(UNITS, bias_initializer="random_normal", **kwargs),
                                        merge_mode=merge_mode)
    theirs.build(x.shape)
    mine = layers.Bidirectional(layers.LSTM(UNITS, **kwargs), merge_mode=merge_mode)
    mine(torch.from_numpy(x[:1]))
    for inner, keras_inner in ((mine.forward_layer, theirs.forward_layer),
                               (mine.backward_layer, theirs.backward_layer)):
        for ours_w, weights in zip([inner.kernel, inner.recurrent_kernel, inner.bias], keras_inner.get_weights()):
            ours_w.data = torch.from_numpy(weights)
    return theirs, mine


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("options", [{}, {"return_sequences": True}, {"return_sequences": True, "return_state": True}])
def test_bidirectional_equals_keras_with_mask(merge_mode, options):
    x = padded()
    mask = (x != 0).any(-1)
    theirs, mine = bidirectional_pair(x, merge_mode, **options)
    close(ours(mine, x, mask=torch.from_numpy(mask)),
          keras_out(theirs, x, mask=keras.ops.convert_to_tensor(mask)))
    close(ours(mine, x), keras_out(theirs, x))


def test_bidirectional_names_and_config():
    layer = layers.Bidirectional(layers.GRU(3, name="gru"), merge_mode="sum")
    assert (layer.forward_layer.name, layer.backward_layer.name) == ("forward_gru", "backward_gru")
    assert (layer.forward_layer.go_backwards, layer.backward_layer.go_backwards) == (False, True)
    again = layers.Bidirectional.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    with pytest.raises(DeepfieldError, match="Bidirectional wraps a recurrent layer"):
        layers.Bidirectional(layers.Dense(3))
    with pytest.raises(DeepfieldError, match="merge_mode 'max'"):
        layers.Bidirectional(layers.GRU(3), merge_mode="max")


def test_embedding_with_mask_zero_equals_keras():
    ids = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 7, 1], [5, 0, 9, 2, 6]], dtype="int64")
    k_embed = keras.layers.Embedding(10, F, mask_zero=True)
    k_lstm = keras.layers.LSTM(UNITS, bias_initializer="random_normal", return_sequences=True)
    k_model = keras.Sequential([keras.Input((5,), dtype="int64"), k_embed, k_lstm])
    embed = layers.Embedding(10, F, mask_zero=True)
    embed(torch.from_numpy(ids))
    embed.embeddings.data = torch.from_numpy(k_embed.get_weights()[0])
    lstm = copied(k_lstm, np.zeros((1, 5, F), "float32"), "LSTM", units=UNITS, return_sequences=True)
    model = Sequential([embed, lstm])
    model.eval()
    with torch.no_grad():
        got = model(torch.from_numpy(ids)).numpy()
    close(got, keras_out(k_model, ids))
    assert tuple(embed.embeddings.shape) == (10, F)
    assert embed.get_config()["embeddings_initializer"] == "uniform"  # Keras 3's default: RandomUniform(±0.05)
    fresh = layers.Embedding(10, F)
    fresh(torch.zeros(1, 5))
    assert fresh.embeddings.abs().max() <= 0.05


def test_saved_and_loaded_model_gives_the_same_outputs(tmp_path):
    from deepfield.models.serialization import load_model, save_model
    model = Sequential([layers.Embedding(20, F, mask_zero=True, input_shape=(T,)),
                        layers.Bidirectional(layers.GRU(UNITS, return_sequences=True)), layers.SimpleRNN(UNITS)])
    model.build()
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    ids = torch.tensor([[1, 2, 3, 0, 0, 0, 0], [4, 0, 5, 6, 7, 8, 9]])
    model.eval(), again.eval()
    torch.testing.assert_close(again(ids), model(ids), rtol=0, atol=0)


def give_weights(mine, theirs):
    for ours_w, weights in zip([mine.kernel, mine.recurrent_kernel, mine.bias], theirs.get_weights()):
        ours_w.data = torch.from_numpy(weights)


def test_stacked_layers_pass_the_mask_on_as_keras():
    """Embedding(mask_zero) -> LSTM(return_sequences) -> GRU: the second layer skips the padding too."""
    ids = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 7, 1], [5, 0, 9, 2, 6]], dtype="int64")
    k_layers = [keras.layers.Embedding(10, F, mask_zero=True),
                keras.layers.LSTM(UNITS, bias_initializer="random_normal", return_sequences=True),
                keras.layers.GRU(3, bias_initializer="random_normal")]
    k_model = keras.Sequential([keras.Input((5,), dtype="int64"), *k_layers])
    model = Sequential([layers.Embedding(10, F, mask_zero=True), layers.LSTM(UNITS, return_sequences=True),
                        layers.GRU(3)])
    model(torch.from_numpy(ids))
    embed, lstm, gru = model._modules.values()
    embed.embeddings.data = torch.from_numpy(k_layers[0].get_weights()[0])
    give_weights(lstm, k_layers[1])
    give_weights(gru, k_layers[2])
    model.eval()
    with torch.no_grad():
        close(model(torch.from_numpy(ids)).numpy(), keras_out(k_model, ids))


def test_functional_model_with_states_and_bidirectional_equals_keras():
    from deepfield.models.functional import Functional, Input
    ids = np.array([[3, 1, 4, 0, 0], [0, 0, 2, 7, 1], [5, 0, 9, 2, 6]], dtype="int64")
    inputs = Input((5,), dtype="int64")
    sequence, h, c = layers.LSTM(6, return_sequences=True, return_state=True)(
        layers.Embedding(10, 4, mask_zero=True)(inputs))
    model = Functional(inputs, [layers.Bidirectional(layers.GRU(3))(sequence), h, c])
    k_in = keras.Input((5,), dtype="int64")
    k_embed, k_lstm = keras.layers.Embedding(10, 4, mask_zero=True), keras.layers.LSTM(6, return_sequences=True,
                                                                                        return_state=True)
    k_bi = keras.layers.Bidirectional(keras.layers.GRU(3))
    k_sequence, k_h, k_c = k_lstm(k_embed(k_in))
    k_model = keras.Model(k_in, [k_bi(k_sequence), k_h, k_c])
    embed, lstm, bi = (next(m for m in model.modules() if isinstance(m, cls))
                       for cls in (layers.Embedding, layers.LSTM, layers.Bidirectional))
    embed.embeddings.data = torch.from_numpy(k_embed.get_weights()[0])
    give_weights(lstm, k_lstm)
    give_weights(bi.forward_layer, k_bi.forward_layer)
    give_weights(bi.backward_layer, k_bi.backward_layer)
    model.eval()
    with torch.no_grad():
        got = [o.numpy() for o in model(torch.from_numpy(ids))]
    close(got, keras_out(k_model, ids))
    again = Functional.from_config(model.get_config())
    again.load_state_dict(model.state_dict())
    again.eval()
    with torch.no_grad():
        close([o.numpy() for o in again(torch.from_numpy(ids))], got)


def test_the_mask_crosses_dropout_while_training_as_in_inference():
    """Embedding(mask_zero) -> Dropout -> LSTM: an all-padding sequence gives 0 in training too (state skipped)."""
    torch.manual_seed(0)
    model = Sequential([layers.Embedding(10, F, mask_zero=True), layers.Dropout(0.5),
                        layers.LSTM(UNITS, bias_initializer="ones")])
    ids = torch.tensor([[0, 0, 0, 0], [1, 2, 3, 0]])
    model.train()
    out = model(ids)
    assert torch.equal(out[0], torch.zeros(UNITS)) and out[1].abs().sum() > 0
