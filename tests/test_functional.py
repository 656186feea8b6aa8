"""Functional models (``df.Input``, layers on symbolic tensors, ``df.Model(inputs, outputs)``) against Keras 3
itself (torch backend, channels_first) with the same weights; their training, summary, files and errors."""
import json
import os

import numpy as np
import pytest
import torch

import deepfield as df
from deepfield.errors import DeepfieldError
from deepfield.layers import (Add, BatchNormalization, Concatenate, Conv2D, Dense, Dropout, Flatten, MaxPooling2D)

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(1)


def copy_weights(model, k_model) -> None:
    """Put deepfield's weights into the Keras model's layers of the same names (kernels to Keras's order)."""
    for name, layer in model.named_modules():
        if not hasattr(layer, "weight") or layer.weight is None or not name:
            continue
        k_layer = k_model.get_layer(name.split(".")[-1])
        w = layer.weight.detach().numpy()
        if isinstance(layer, Dense):
            values = [w.T, layer.bias.detach().numpy()]
        elif isinstance(layer, Conv2D):
            values = [w.transpose(2, 3, 1, 0), layer.bias.detach().numpy()]
        elif isinstance(layer, BatchNormalization):
            values = [w, layer.bias.detach().numpy(), layer.running_mean.numpy(), layer.running_var.numpy()]
        else:
            raise AssertionError(type(layer))
        k_layer.set_weights(values)


def keras_numpy(outputs):
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in outputs]
    return keras.ops.convert_to_numpy(outputs)


def residual_two_input_pair():
    """The same two-input, two-output graph (skip connection, merge, shared Dense) in deepfield and in Keras."""
    image, ebv = df.Input((2, 8, 8), name="image"), df.Input((1,), name="ebv")
    x = Conv2D(4, 3, padding="same", activation="relu", name="c1")(image)
    y = Conv2D(4, 3, padding="same", name="c2")(x)
    x = MaxPooling2D(name="pool")(Add(name="skip")([x, y]))
    x = Concatenate(name="join")([Flatten(name="flat")(x), ebv])
    shared = Dense(6, activation="tanh", name="shared")
    h = shared(Dense(6, name="pre")(x))
    h2 = shared(h)  # the same layer twice: one set of weights
    z = Dense(1, name="z")(h2)
    cls = Dense(3, activation="softmax", name="cls")(h)
    model = df.Model([image, ebv], [z, cls], name="pair")

    k_image, k_ebv = keras.Input((2, 8, 8), name="image"), keras.Input((1,), name="ebv")
    kx = keras.layers.Conv2D(4, 3, padding="same", activation="relu", data_format="channels_first", name="c1")(k_image)
    ky = keras.layers.Conv2D(4, 3, padding="same", data_format="channels_first", name="c2")(kx)
    kx = keras.layers.MaxPooling2D(data_format="channels_first", name="pool")(keras.layers.Add(name="skip")([kx, ky]))
    kx = keras.layers.Concatenate(name="join")([keras.layers.Flatten(name="flat")(kx), k_ebv])
    k_shared = keras.layers.Dense(6, activation="tanh", name="shared")
    kh = k_shared(keras.layers.Dense(6, name="pre")(kx))
    kz = keras.layers.Dense(1, name="z")(k_shared(kh))
    kc = keras.layers.Dense(3, activation="softmax", name="cls")(kh)
    k_model = keras.Model([k_image, k_ebv], [kz, kc])
    copy_weights(model, k_model)
    return model, k_model


def data(n=16):
    x = [RNG.normal(size=(n, 2, 8, 8)).astype("float32"), RNG.normal(size=(n, 1)).astype("float32")]
    y = [RNG.normal(size=(n, 1)).astype("float32"), np.eye(3, dtype="float32")[RNG.integers(0, 3, n)]]
    return x, y


# -- the graph ------------------------------------------------------------------------------

def test_a_two_input_two_output_graph_equals_keras_with_the_same_weights():
    model, k_model = residual_two_input_pair()
    x, _ = data()
    with torch.no_grad():
        got = model(*map(torch.from_numpy, x))
    for ours, theirs in zip(got, keras_numpy(k_model(x))):
        np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_a_shared_layer_has_one_set_of_weights_named_by_the_layer():
    model, _ = residual_two_input_pair()
    keys = list(model.state_dict())
    assert keys == ["c1.weight", "c1.bias", "c2.weight", "c2.bias", "pre.weight", "pre.bias",
                    "shared.weight", "shared.bias", "z.weight", "z.bias", "cls.weight", "cls.bias"]
    assert sum(p.numel() for p in model.parameters()) == keras.Model.count_params(residual_two_input_pair()[1])


def test_inputs_by_position_list_or_dict_give_the_same_outputs():
    model, _ = residual_two_input_pair()
    x = [torch.from_numpy(a) for a in data()[0]]
    with torch.no_grad():
        a = model(*x)
        b = model(x)
        c = model({"ebv": x[1], "image": x[0]})
    for u, v, w in zip(a, b, c):
        torch.testing.assert_close(u, v)
        torch.testing.assert_close(u, w)


def test_symbolic_shapes_and_names_follow_keras():
    image = df.Input((3, 16, 16))
    assert image.shape == (None, 3, 16, 16)
    x = Conv2D(8, 3, strides=2)(image)
    assert x.shape == (None, 8, 7, 7)
    out = Dense(2)(Flatten()(x))
    model = df.Model(inputs=image, outputs=out)
    assert model.input_names == ["input_layer"]
    assert model.output_names == ["dense"]
    assert [name for name, _ in model.named_children()] == ["conv2d", "flatten", "dense"]
    assert model.input_shape == (3, 16, 16) and model.output_shape == (2,)
    assert isinstance(model, df.Model) and isinstance(model, df.Functional) and isinstance(model, torch.nn.Module)


def test_a_dict_of_outputs_names_them_and_returns_a_dict():
    inp = df.Input((4,))
    model = df.Model(inp, {"mag": Dense(1)(inp), "kind": Dense(2)(inp)})
    assert model.output_names == ["mag", "kind"]
    out = model(torch.randn(3, 4))
    assert list(out) == ["mag", "kind"] and out["kind"].shape == (3, 2)


def test_model_of_a_module_still_wraps_it():
    module = torch.nn.Linear(3, 2)
    model = df.Model(module)
    assert type(model) is df.Model and model.module is module


def test_a_nested_functional_model_is_one_layer_with_its_weights_under_its_name():
    inp = df.Input((4,))
    encoder = df.Model(inp, Dense(3, activation="relu", name="code")(inp), name="encoder")
    outer_in = df.Input((4,))
    model = df.Model(outer_in, Dense(1, name="out")(encoder(outer_in)))
    assert list(model.state_dict()) == ["encoder.code.weight", "encoder.code.bias", "out.weight", "out.bias"]
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.out(encoder(x)))


def test_a_sequential_is_a_layer_of_a_functional_model(tmp_path):
    inp = df.Input((4,))
    stack = df.Sequential([Dense(6, activation="relu"), Dense(2)], name="stack")
    model = df.Model(inp, Add()([stack(inp), Dense(2, name="linear")(inp)]))
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), stack(x) + model.linear(x))
    model.save(tmp_path)
    loaded = df.Functional.load(tmp_path)
    assert list(loaded.state_dict()) == ["stack.dense.weight", "stack.dense.bias", "stack.dense_1.weight",
                                         "stack.dense_1.bias", "linear.weight", "linear.bias"]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_a_built_layer_called_on_a_tensor_takes_the_plain_path(monkeypatch):
    layer = Dense(2)
    layer(torch.randn(1, 3))  # built
    from deepfield.models import symbolic
    monkeypatch.setattr(symbolic, "is_symbolic", lambda x: pytest.fail("a tensor call looked for symbols"))
    monkeypatch.setattr(Dense, "build_for", lambda *a, **k: pytest.fail("a built layer was built again"))
    assert layer(torch.randn(4, 3)).shape == (4, 2)


# -- errors -----------------------------------------------------------------------------------

def test_a_layer_on_an_incompatible_shape_is_one_line_naming_it_and_the_shape():
    inp = df.Input((3, 2, 2))
    with pytest.raises(DeepfieldError) as err:
        Conv2D(4, 5, name="big")(inp)
    message = str(err.value)
    assert message.startswith("Conv2D 'big' cannot take inputs of shape (None, 3, 2, 2): ")
    assert "\n" not in message


def test_a_dense_on_a_wrong_width_after_sharing_names_the_layer():
    shared = Dense(2, name="shared")
    shared(df.Input((4,)))
    with pytest.raises(DeepfieldError, match=r"Dense 'shared' cannot take inputs of shape \(None, 5\)"):
        shared(df.Input((5,)))


def test_an_output_not_reachable_from_the_inputs_is_refused():
    a, b = df.Input((4,), name="a"), df.Input((3,), name="b")
    out = Dense(1)(Concatenate()([a, b]))
    with pytest.raises(DeepfieldError, match=r"output 0 \(\(None, 1\)\) is not connected to the model's inputs: "
                                             r"it needs the Input 'b' of shape \(None, 3\), which is not among them"):
        df.Model(a, out)


def test_an_input_not_used_is_refused():
    a, b = df.Input((4,), name="a"), df.Input((3,), name="b")
    with pytest.raises(DeepfieldError, match=r"model input b \(None, 3\) is not used by any output"):
        df.Model([a, b], Dense(1)(a))


def test_two_layers_with_one_name_are_refused():
    a = df.Input((4,), name="a")
    with pytest.raises(DeepfieldError, match=r"the name 'h' is used twice \(a Dense and a Dense\)"):
        df.Model(a, Dense(1, name="h")(Dense(2, name="h")(a)))


def test_a_layer_named_like_an_input_is_refused():
    a = df.Input((4,), name="x")
    with pytest.raises(DeepfieldError, match=r"the name 'x' is used twice \(an Input and a Dense\)"):
        df.Model(a, Dense(1, name="x")(a))


def test_inputs_must_be_inputs():
    a = df.Input((4,))
    h = Dense(2)(a)
    with pytest.raises(DeepfieldError, match="model inputs must come from df.Input"):
        df.Model(h, Dense(1)(h))


def test_a_layer_too_big_is_refused_before_anything_is_allocated():
    with pytest.raises(DeepfieldError, match=r"Dense 'huge' would hold .* parameters"):
        Dense(2**30, name="huge")(df.Input((1000,)))


def test_extra_call_arguments_are_refused():
    with pytest.raises(DeepfieldError, match="is called on its input tensor"):
        Dropout(0.5)(df.Input((4,)), training=True)


# -- training ---------------------------------------------------------------------------------

def test_two_inputs_two_outputs_train_as_keras_with_dict_losses_and_loss_weights():
    model, k_model = residual_two_input_pair()
    x, y = data(24)
    losses = {"z": "mse", "cls": "categorical_crossentropy"}
    weights = {"z": 1.0, "cls": 0.3}
    model.compile(optimizer=df.optimizers.SGD(learning_rate=0.05), loss=losses, loss_weights=weights,
                  metrics={"cls": ["accuracy"], "z": ["mae"]}, device="cpu", channels_last=False,
                  precision="fp32")  # as Keras: "auto" trains convolutions in bf16 on CPUs with AMX
    k_model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss=losses, loss_weights=weights,
                    metrics={"cls": ["accuracy"], "z": ["mae"]})
    ours = model.fit({"image": x[0], "ebv": x[1]}, {"z": y[0], "cls": y[1]}, batch_size=8, epochs=3,
                     shuffle=False, verbose=0, validation_data=(x, y), seed=0).history
    theirs = k_model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0, validation_data=(x, y)).history
    assert sorted(k for k in ours if k != "lr") == sorted(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-4, atol=1e-5, err_msg=key)
    got = model.predict(x, verbose=0)
    for ours_out, theirs_out in zip(got, keras_numpy(k_model.predict(x, verbose=0))):
        np.testing.assert_allclose(ours_out, theirs_out, atol=1e-5)
    assert model.evaluate(x, y, verbose=0).keys() == k_model.evaluate(x, y, verbose=0, return_dict=True).keys()


def test_one_loss_and_a_list_of_metrics_per_output_name_the_history_as_keras():
    inp = df.Input((4,))
    model = df.Model(inp, [Dense(1, name="a")(inp), Dense(2, name="b")(inp)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae", ["mse", "mae"]], device="cpu")
    x, y = RNG.normal(size=(8, 4)), [RNG.normal(size=(8, 1)), RNG.normal(size=(8, 2))]
    history = model.fit(x, y, verbose=0, seed=0).history
    assert sorted(history) == ["a_loss", "a_mae", "b_loss", "b_mae", "b_mse", "loss", "lr"]
    np.testing.assert_allclose(history["loss"][0], history["a_loss"][0] + history["b_loss"][0], rtol=1e-6)


def test_a_flat_list_of_metrics_of_another_length_is_refused_as_keras_3_does():
    inp = df.Input((4,))
    model = df.Model(inp, [Dense(1, name="a")(inp), Dense(2, name="b")(inp)])
    with pytest.raises(DeepfieldError, match=r"metrics: a list needs one entry per output \(a, b\), got 1"):
        model.compile(loss="mse", metrics=["mae"])


def test_data_for_the_wrong_names_are_refused_naming_the_model_s():
    model, _ = residual_two_input_pair()
    model.compile(optimizer="sgd", loss="mse", device="cpu")
    x, y = data(4)
    with pytest.raises(DeepfieldError, match=r"x is a dict with keys \['image', 'z'\]; the model's inputs are "
                                             r"image, ebv"):
        model.fit({"image": x[0], "z": x[1]}, y, verbose=0)
    with pytest.raises(DeepfieldError, match=r"loss: no output named 'zz'"):
        model.compile(loss={"zz": "mse"})


def test_a_single_output_functional_model_trains_as_a_sequential():
    inp = df.Input((3,))
    model = df.Model(inp, Dense(1, name="z")(inp))
    seq = df.Sequential([Dense(1, name="z")], input_shape=(3,)).build()
    seq.load_state_dict(model.state_dict())
    x, y = RNG.normal(size=(16, 3)), RNG.normal(size=(16, 1))
    for m in (model, seq):
        m.compile(optimizer=df.optimizers.SGD(learning_rate=0.1), loss={"z": "mse"} if m is model else "mse",
                  metrics=["mae"], device="cpu")
    a = model.fit({"input_layer": x}, {"z": y}, epochs=2, verbose=0, seed=0, batch_size=4).history
    b = seq.fit(x, y, epochs=2, verbose=0, seed=0, batch_size=4).history
    assert a == b


# -- summary ------------------------------------------------------------------------------------

def test_summary_rows_connections_and_counts_are_keras_s():
    model, k_model = residual_two_input_pair()
    summary = df.summarize(model)
    k_rows = [(layer.name, type(layer).__name__) for layer in k_model.layers]
    assert [(r.name, r.type) for r in summary.rows] == k_rows
    assert [r.params for r in summary.rows] == [layer.count_params() for layer in k_model.layers]
    assert summary.total == k_model.count_params() == 690
    rows = {r.name: r for r in summary.rows}
    assert rows["join"].connected == ("flat[0][0]", "ebv[0][0]")
    assert rows["shared"].connected == ("pre[0][0]", "shared[0][0]")
    assert rows["z"].connected == ("shared[1][0]",) and rows["image"].connected == ()
    assert rows["pool"].output_shape == (4, 4, 4)
    assert rows["pre"].mult_adds == 65 * 6 and rows["shared"].mult_adds == 2 * 6 * 6
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "Connected to" in text and "│ join (Concatenate)  │ (None, 65)" in text
    assert "flat[0][0], ebv[0][0]" in text
    assert " Total params: 690 " in text


# -- files --------------------------------------------------------------------------------------

def test_save_and_load_give_the_same_outputs_and_a_keras_form_graph(tmp_path):
    model, _ = residual_two_input_pair()
    inner_in = df.Input((3,), name="inner_in")
    inner = df.Model(inner_in, Dense(2, name="code")(inner_in), name="inner")
    rest = df.Input((3,), name="rest")
    outer = df.Model({"pair_image": model.inputs[0], "ebv": model.inputs[1], "rest": rest},
                     {"z": model.outputs[0], "code": inner(rest)})
    outer.save(tmp_path)
    loaded = df.Functional.load(tmp_path)
    assert type(loaded) is df.Functional and loaded.input_names == ["pair_image", "ebv", "rest"]
    x = {"pair_image": torch.randn(3, 2, 8, 8), "ebv": torch.randn(3, 1), "rest": torch.randn(3, 3)}
    with torch.no_grad():
        a, b = outer(x), loaded(x)
    assert list(a) == list(b) == ["z", "code"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    config = json.loads((tmp_path / "model.json").read_text())["config"]
    join = next(layer for layer in config["layers"] if layer["name"] == "join")
    assert join["class_name"] == "Concatenate" and join["config"]["axis"] == 1
    assert [arg["config"]["keras_history"] for arg in join["inbound_nodes"][0]["args"][0]] == [["flat", 0, 0],
                                                                                                ["ebv", 0, 0]]
    shared = next(layer for layer in config["layers"] if layer["name"] == "shared")
    assert len(shared["inbound_nodes"]) == 2
    assert config["output_layers"] == {"z": ["z", 0, 0], "code": ["inner", 0, 0]}


def test_a_functional_folder_is_not_loaded_as_a_sequential(tmp_path):
    inp = df.Input((3,))
    df.Model(inp, Dense(1)(inp)).save(tmp_path)
    with pytest.raises(DeepfieldError, match="it holds a Functional model, not a Sequential"):
        df.Sequential.load(tmp_path)


def test_a_config_naming_an_unknown_layer_is_refused_without_running_anything(tmp_path):
    from deepfield.models.functional import Functional
    inp = df.Input((3,), name="x")
    config = df.Model(inp, Dense(1, name="d")(inp)).get_config()
    config["layers"][1]["class_name"] = "os.system"
    with pytest.raises(DeepfieldError, match="unknown layer"):
        Functional.from_config(config)


def test_torch_functions_and_arithmetic_on_symbolic_tensors_say_to_use_layers():
    inp = df.Input((4,))
    with pytest.raises(DeepfieldError, match="torch.relu was called on a symbolic tensor"):
        torch.nn.ReLU()(inp)
    with pytest.raises(DeepfieldError, match=r"use the merging layers, Add\(\)\(\[a, b\]\)"):
        inp + inp


def test_an_encoder_and_its_autoencoder_share_layers_as_in_keras():
    inp = df.Input((6,))
    code = Dense(2, name="code")(inp)
    decode = Dense(6, name="decode")
    autoencoder = df.Model(inp, decode(code))
    encoder = df.Model(inp, code)
    code_in = df.Input((2,))
    decoder = df.Model(code_in, decode(code_in))
    x = torch.randn(4, 6)
    with torch.no_grad():
        torch.testing.assert_close(autoencoder(x), decoder(encoder(x)))
    assert encoder.code is autoencoder.code and decoder.decode is autoencoder.decode


def test_monte_carlo_dropout_samples_a_functional_model():
    inp = df.Input((4,))
    model = df.Model(inp, Dense(3, activation="softmax")(Dropout(0.5)(Dense(8, activation="relu")(inp))))
    draws = model.predict(RNG.normal(size=(10, 4)), mc_samples=8, return_samples=True, verbose=0)
    assert draws.samples.shape == (8, 10, 3) and draws.samples.std(0).max() > 0


def test_a_bayesianized_functional_model_runs_its_new_layers_and_saves_them(tmp_path):
    from deepfield.models.bayesian import BayesianDense, bayesianize
    inp = df.Input((4,))
    model = df.Model(inp, Dense(2, name="out")(Dense(8, activation="relu", name="hidden")(inp)))
    x = torch.randn(3, 4)
    with torch.no_grad():
        before = model(x)
    bayesianize(model)
    assert isinstance(model.out, BayesianDense)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # eval: the means, the old weights
    assert [r.type for r in df.summarize(model).rows] == ["InputLayer", "BayesianDense", "BayesianDense"]
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))  # sampled weights: the new layers are the ones called
    model.save(tmp_path)
    loaded = df.Functional.load(tmp_path)
    assert isinstance(loaded.hidden, BayesianDense)


def test_a_nested_model_with_a_dict_of_outputs_feeds_the_outer_graph_in_order():
    inp = df.Input((4,))
    heads = df.Model(inp, {"a": Dense(2, name="a")(inp), "b": Dense(3, name="b")(inp)}, name="heads")
    outer_in = df.Input((4,))
    a, b = heads(outer_in)
    model = df.Model(outer_in, Concatenate()([a, b]))
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([heads.a(x), heads.b(x)], 1))


def test_validation_split_and_sample_counts_of_several_inputs():
    model, _ = residual_two_input_pair()
    model.compile(optimizer="sgd", loss="mse", device="cpu")
    x, y = data(8)
    history = model.fit(x, y, validation_split=0.25, verbose=0, seed=0).history
    assert {"val_loss", "val_z_loss", "val_cls_loss"} <= set(history)
    with pytest.raises(DeepfieldError, match=r"x\['image'\] has 8 samples but x\['ebv'\] has 7; they must match"):
        model.fit([x[0], x[1][:7]], y, verbose=0)


def test_an_input_of_the_wrong_shape_is_named():
    model, _ = residual_two_input_pair()
    model.compile(optimizer="sgd", loss="mse", device="cpu")
    x, y = data(4)
    with pytest.raises(DeepfieldError, match=r"x\['ebv'\] has samples of shape \(2,\); the model's input 'ebv' "
                                             r"takes \(1,\)"):
        model.fit([x[0], np.zeros((4, 2))], y, verbose=0)


def test_one_input_and_output_are_written_as_keras_writes_them(tmp_path):
    inp = df.Input((4,), name="x")
    model = df.Model(inp, Dense(2, name="d")(inp))
    k_in = keras.Input((4,), name="x")
    k_config = keras.Model(k_in, keras.layers.Dense(2, name="d")(k_in)).get_config()
    config = model.get_config()
    assert config["input_layers"] == list(k_config["input_layers"]) == ["x", 0, 0]
    assert config["output_layers"] == list(k_config["output_layers"]) == ["d", 0, 0]
    k_dense = next(layer for layer in k_config["layers"] if layer["name"] == "d")
    dense = next(layer for layer in config["layers"] if layer["name"] == "d")
    k_arg = k_dense["inbound_nodes"][0]["args"][0]
    assert dense["inbound_nodes"][0]["args"][0] == {"class_name": k_arg["class_name"], "config": {
        "shape": list(k_arg["config"]["shape"]), "dtype": k_arg["config"]["dtype"],
        "keras_history": list(k_arg["config"]["keras_history"])}}
    model.save(tmp_path)
    assert df.Functional.load(tmp_path).get_config() == config


def _two_outputs():
    inputs = df.Input((4,), name="x")
    model = df.Model(inputs, [Dense(1, name="a")(inputs), Dense(1, name="b")(inputs)])
    return model.compile(optimizer="sgd", loss="mse")


def test_sample_weights_on_several_outputs_are_refused_in_one_line():
    x = np.random.default_rng(0).random((8, 4), dtype=np.float32)
    with pytest.raises(DeepfieldError, match="weigh a model with one output"):
        _two_outputs().fit(x, [x[:, :1], x[:, 1:2]], epochs=1, verbose=0, sample_weight=np.ones(8))


def test_weighted_validation_data_of_a_two_input_model_is_packed_like_the_training_data():
    rng = np.random.default_rng(0)
    left, right = df.Input((2,), name="left"), df.Input((2,), name="right")
    model = df.Model([left, right], Dense(1, name="a")(Concatenate()([left, right])))
    model.compile(optimizer="sgd", loss="mse")
    x, y = [rng.random((8, 2), dtype=np.float32) for _ in range(2)], rng.random((8, 1), dtype=np.float32)
    weights = np.r_[np.zeros(4), np.ones(4)]
    history = model.fit(x, y, epochs=1, verbose=0, shuffle=False, validation_data=(x, y, weights))
    # Keras: validation loss = sum(w * l) / N over the validation samples
    per_sample = ((model.predict(x, verbose=0) - y) ** 2).reshape(-1)
    assert history.history["val_loss"][0] == pytest.approx(float(np.sum(weights * per_sample) / 8), rel=1e-5)


def test_inference_frees_each_activation_after_its_last_reader():
    # a skip keeps its tensor until the merge reads it; a tensor read once is gone when the next layer runs
    import weakref

    x = df.Input((4,))
    first = Dense(3, name="first")(x)
    second = Dense(3, name="second")(first)
    model = df.Model(x, Add(name="add")([Dense(3, name="third")(second), first]))
    made: dict[str, weakref.ref] = {}
    alive: dict[str, bool] = {}
    for name in ("first", "second"):
        model.get_layer(name).register_forward_hook(lambda m, i, out, name=name: made.update({name: weakref.ref(out)}))
    model.get_layer("third").register_forward_pre_hook(
        lambda m, i: alive.update({n: r() is not None for n, r in made.items()}))
    with torch.no_grad():
        model(torch.randn(2, 4))
    assert alive == {"first": True, "second": True}  # first: the Add still needs it; second: third reads it now
    model.get_layer("add").register_forward_pre_hook(lambda m, i: alive.update(second=made["second"]() is not None))
    with torch.no_grad():
        model(torch.randn(2, 4))
    assert alive["second"] is False
