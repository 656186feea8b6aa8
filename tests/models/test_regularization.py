"""Regularisers and constraints against Keras 3: the penalties, the constrained weights, and a few SGD steps
of a regularised, constrained network (losses and weights) compared with Keras's fit."""
import json

import numpy as np
import pytest
import torch

import deepfield as df
from deepfield.errors import DeepfieldError
from deepfield.models import (
    ActivityRegularization, BayesianDense, Conv2D, Dense, GlobalAveragePooling2D, constraints, regularizers,
)
from deepfield.models.bayesian import bayesianize
from deepfield.models.sequential import Sequential as PlainSequential
from deepfield.training import Sequential

from keras_layer_reference import keras

rng = np.random.default_rng(1)


@pytest.mark.parametrize("ours, theirs", [
    ("l1", "l1"), ("l2", "l2"), ("l1l2", "l1l2"), (regularizers.L1L2(0.1, 0.3), keras.regularizers.L1L2(0.1, 0.3)),
    ({"class_name": "L2", "config": {"l2": 0.5}}, {"class_name": "L2", "config": {"l2": 0.5}}),
])
def test_penalties_equal_keras(ours, theirs):
    w = rng.normal(size=(4, 3)).astype(np.float32)
    expected = float(keras.ops.convert_to_numpy(keras.regularizers.get(theirs)(w)))
    assert float(regularizers.get(ours)(torch.from_numpy(w))) == pytest.approx(expected, rel=1e-6)


def test_keras_names_and_defaults():
    assert regularizers.get("l2").l2 == 0.01 and regularizers.get("L1").l1 == 0.01
    assert regularizers.get("l1l2").get_config() == {"l1": 0.0, "l2": 0.0}  # Keras 3's l1l2
    assert regularizers.get("l1_l2").get_config() == {"l1": 0.01, "l2": 0.01}  # the Keras docs' l1_l2
    assert constraints.get("max_norm").get_config() == {"max_value": 2, "axis": 0}
    assert constraints.get("unit_norm").get_config() == {"axis": 0}


# (constraint, keras constraint, keras kernel shape, deepfield layout)
CONSTRAINTS = [
    (constraints.MaxNorm(0.7), keras.constraints.MaxNorm(0.7), (5, 3), constraints.DENSE),
    (constraints.UnitNorm(1), keras.constraints.UnitNorm(1), (5, 3), constraints.DENSE),
    (constraints.NonNeg(), keras.constraints.NonNeg(), (5, 3), constraints.DENSE),
    (constraints.MinMaxNorm(0.5, 0.8, 0.7), keras.constraints.MinMaxNorm(0.5, 0.8, 0.7), (5, 3), constraints.DENSE),
    (constraints.MaxNorm(1.0, [0, 1, 2]), keras.constraints.MaxNorm(1.0, [0, 1, 2]), (3, 3, 2, 4),
     constraints.conv_layout(2)),
    (constraints.UnitNorm([0, 1]), keras.constraints.UnitNorm([0, 1]), (3, 2, 2, 4), constraints.conv_layout(2)),
    (constraints.MaxNorm(0.5, [0, 1]), keras.constraints.MaxNorm(0.5, [0, 1]), (3, 3, 2, 3),
     constraints.depthwise_layout(2, 3)),
]


@pytest.mark.parametrize("ours, theirs, shape, layout", CONSTRAINTS)
def test_constraints_on_channels_first_weights_equal_keras_on_its_kernel(ours, theirs, shape, layout):
    kernel = rng.normal(size=shape).astype(np.float32)
    expected = keras.ops.convert_to_numpy(theirs(kernel))
    if layout.groups_of:  # depthwise (*k, C, m) -> (C*m, 1, *k)
        torch_weight = torch.from_numpy(kernel).permute(2, 3, 0, 1).reshape(-1, 1, *shape[:2])
    else:
        inverse = sorted(range(len(shape)), key=layout.permutation.__getitem__)
        torch_weight = torch.from_numpy(kernel).permute(inverse)
    assert torch.equal(layout.to_keras(torch_weight), torch.from_numpy(kernel))
    got = layout.from_keras(ours(layout.to_keras(torch_weight)), torch_weight.shape)
    np.testing.assert_allclose(layout.to_keras(got).numpy(), expected, atol=1e-6)


def _keras_twin(model, keras_layers, x, y, batch_size, epochs, lr=0.1):
    """Keras's fit of the same network (weights copied) with SGD: (history losses, kernels)."""
    kmodel = keras.Sequential([keras.Input(x.shape[1:]), *keras_layers])
    for ours, theirs in zip(model.children(), keras_layers):
        theirs.set_weights([ours.weight.detach().numpy().T, ours.bias.detach().numpy()])
    kmodel.compile(optimizer=keras.optimizers.SGD(lr), loss="mse")
    history = kmodel.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return history.history["loss"], [layer.get_weights()[0].T for layer in keras_layers]


@pytest.mark.parametrize("batch_size", [16, 6])
def test_regularised_constrained_dense_trains_as_keras(batch_size):
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = rng.normal(size=(16, 2)).astype(np.float32)
    torch.manual_seed(0)
    args = [dict(kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.05), activity_regularizer="l1l2"),
            dict(kernel_regularizer=regularizers.L1L2(0.01, 0.02), kernel_constraint=constraints.MaxNorm(0.6),
                 bias_constraint="non_neg", activity_regularizer=regularizers.L2(0.1))]
    model = Sequential([Dense(4, activation="tanh", **args[0]), Dense(2, **args[1])], input_shape=(5,))
    model.build()
    keras_args = [dict(kernel_regularizer="l2", bias_regularizer=keras.regularizers.L1(0.05),
                       activity_regularizer="l1l2"),
                  dict(kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                       kernel_constraint=keras.constraints.MaxNorm(0.6), bias_constraint="non_neg",
                       activity_regularizer=keras.regularizers.L2(0.1))]
    keras_layers = [keras.layers.Dense(4, activation="tanh", **keras_args[0]), keras.layers.Dense(2, **keras_args[1])]
    expected_losses, expected_kernels = _keras_twin(model, keras_layers, x, y, batch_size, epochs=4)
    model.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.1}}, loss="mse")
    history = model.fit(x, y, batch_size=batch_size, epochs=4, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected_losses, rtol=1e-5)
    for layer, kernel in zip(model.children(), expected_kernels):
        np.testing.assert_allclose(layer.weight.detach().numpy(), kernel, atol=1e-6)
    assert torch.linalg.vector_norm(model[1].weight, dim=1).max() <= 0.6 + 1e-6


def test_without_regularisers_the_training_step_is_left_alone():
    model = Sequential([Dense(2)], input_shape=(3,))
    model.build()
    assert regularizers.loss_terms(model) == []
    step = object()
    assert constraints.after_each_step(step, model) is step


def test_conv_kernel_constraint_per_filter_as_keras():
    conv = Conv2D(3, 3, kernel_constraint=constraints.MaxNorm(0.5, axis=[0, 1, 2]))
    conv(torch.zeros(1, 2, 5, 5))
    constraints.apply(conv)
    assert torch.linalg.vector_norm(conv.weight.flatten(1), dim=1).max() <= 0.5 + 1e-6


def test_configs_round_trip_through_json():
    model = PlainSequential([Conv2D(2, 3, kernel_regularizer=regularizers.L1L2(0.1, 0.2), bias_constraint="non_neg",
                                    kernel_constraint=constraints.UnitNorm([0, 1, 2])),
                             Dense(3, activity_regularizer="l2")], input_shape=(1, 5, 5))
    config = json.loads(json.dumps(model.get_config()))
    conv = config["layers"][0]["config"]
    assert conv["kernel_regularizer"] == {"class_name": "L1L2", "config": {"l1": 0.1, "l2": 0.2}}
    assert conv["kernel_constraint"] == {"class_name": "UnitNorm", "config": {"axis": [0, 1, 2]}}
    again = PlainSequential.from_config(config)
    assert again.get_config() == config
    assert repr(again[0].weight_regularizers["weight"]) == "L1L2(l1=0.1, l2=0.2)"


def test_bayesianize_keeps_working_on_regularised_layers():
    model = PlainSequential([Dense(3, kernel_regularizer="l2", input_shape=(4,)), Dense(1)])
    model.build()
    bayesianize(model)
    assert regularizers.loss_terms(model) == []  # the KL term is the regulariser of a Bayesian layer


@pytest.mark.parametrize("make, message", [
    (lambda: Dense(2, kernel_regularizer="l3"), "unknown regularizer 'l3'"),
    (lambda: regularizers.L2(-1), "L2 l2 must be a non-negative number, got -1"),
    (lambda: Dense(2, kernel_constraint="max"), "unknown constraint 'max'"),
    (lambda: constraints.MaxNorm(axis="rows"), "MaxNorm axis must be an int or a list of ints"),
    (lambda: regularizers.get({"class_name": "L2", "config": {"l3": 1}}), "regularizer class L2: bad config"),
])
def test_bad_arguments_give_one_line(make, message):
    with pytest.raises(DeepfieldError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bayesian_layers_take_the_arguments_only_as_none():
    assert BayesianDense(2, kernel_regularizer=None).units == 2
    with pytest.raises(DeepfieldError, match=r"BayesianDense takes no kernel_constraint \(its KL term"):
        BayesianDense(2, kernel_constraint="non_neg")


def test_frozen_weights_are_neither_regularised_nor_constrained():
    model = PlainSequential([Dense(2, kernel_regularizer="l2", bias_regularizer="l1", kernel_constraint="unit_norm")],
                            input_shape=(3,))
    model.build()
    model[0].weight.requires_grad_(False)
    assert len(regularizers.loss_terms(model)) == 1  # the bias's
    before = model[0].weight.detach().clone()
    step = constraints.after_each_step(lambda: None, model)
    step()
    assert torch.equal(model[0].weight, before)


def test_regularised_constrained_convolution_trains_as_keras():
    x = rng.normal(size=(8, 2, 6, 6)).astype(np.float32)
    y = rng.normal(size=(8, 1)).astype(np.float32)
    torch.manual_seed(0)
    model = Sequential([Conv2D(3, 3, kernel_regularizer="l2", kernel_constraint=constraints.MaxNorm(0.3, [0, 1, 2])),
                        GlobalAveragePooling2D(), Dense(1)], input_shape=(2, 6, 6))
    model.build()
    conv = keras.layers.Conv2D(3, 3, kernel_regularizer="l2", data_format="channels_first",
                               kernel_constraint=keras.constraints.MaxNorm(0.3, [0, 1, 2]))
    dense = keras.layers.Dense(1)
    kmodel = keras.Sequential([keras.Input((2, 6, 6)), conv,
                               keras.layers.GlobalAveragePooling2D(data_format="channels_first"), dense])
    conv.set_weights([constraints.conv_layout(2).to_keras(model[0].weight).detach().numpy(),
                      model[0].bias.detach().numpy()])
    dense.set_weights([model[2].weight.detach().numpy().T, model[2].bias.detach().numpy()])
    kmodel.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    expected = kmodel.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    model.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.5}}, loss="mse",
                  precision="fp32")  # as Keras: "auto" trains convolutions in bf16 on CPUs with AMX
    history = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(constraints.conv_layout(2).to_keras(model[0].weight).detach().numpy(),
                               conv.get_weights()[0], atol=1e-6)


def test_keras_spellings_on_the_package_face():
    assert df.regularizers.l2(1e-4).get_config() == {"l2": 1e-4}
    assert df.regularizers.l1_l2(l1=0.1).get_config() == {"l1": 0.1, "l2": 0.0}  # Keras 3: the class
    assert df.constraints.max_norm(3).get_config() == {"max_value": 3, "axis": 0}
    dense = df.layers.Dense(2, kernel_regularizer=df.regularizers.L2(0.1), kernel_constraint=df.constraints.NonNeg())
    assert isinstance(dense.weight_constraints["weight"][0], constraints.NonNeg)


def test_activity_regularization_layer_trains_as_keras():
    x = rng.normal(size=(12, 3)).astype(np.float32)
    y = rng.normal(size=(12, 1)).astype(np.float32)
    torch.manual_seed(0)
    model = Sequential([Dense(4), ActivityRegularization(l1=0.05, l2=0.1), Dense(1)], input_shape=(3,))
    model.build()
    first, second = keras.layers.Dense(4), keras.layers.Dense(1)
    kmodel = keras.Sequential([keras.Input((3,)), first, keras.layers.ActivityRegularization(l1=0.05, l2=0.1), second])
    for ours, theirs in ((model[0], first), (model[2], second)):
        theirs.set_weights([ours.weight.detach().numpy().T, ours.bias.detach().numpy()])
    kmodel.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    expected = kmodel.fit(x, y, batch_size=5, epochs=3, shuffle=False, verbose=0).history["loss"]
    model.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.1}}, loss="mse")
    history = model.fit(x, y, batch_size=5, epochs=3, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], expected, rtol=1e-5)
    assert PlainSequential.from_config(json.loads(json.dumps(model.get_config())))[1].l2 == 0.1


def test_activity_penalty_is_taken_once_and_not_kept():
    layer = Dense(2, activity_regularizer=regularizers.L1(1.0))
    x = torch.ones(4, 3)
    term, = regularizers.loss_terms(layer)
    assert float(term()) == 0.0  # nothing recorded before a forward pass
    y = layer.train()(x)
    assert float(term()) == pytest.approx(float(y.abs().sum()) / 4)
    assert "activity_loss" not in layer.__dict__


@pytest.mark.parametrize("ours, theirs", [
    (dict(kernel_regularizer=regularizers.L2(1.0)), dict(kernel_regularizer=keras.regularizers.L2(1.0))),
    (dict(activity_regularizer=regularizers.L2(1.0)), dict(activity_regularizer=keras.regularizers.L2(1.0))),
])
def test_evaluate_and_val_loss_include_the_penalties_as_keras(ours, theirs):
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = np.zeros((8, 1), np.float32)
    kmodel = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, kernel_initializer="ones", **theirs)])
    kmodel.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    expected_eval = kmodel.evaluate(x, y, batch_size=8, verbose=0)
    expected = kmodel.fit(x, y, epochs=1, batch_size=8, verbose=0, validation_data=(x, y), shuffle=False).history
    model = Sequential([Dense(1, kernel_initializer="ones", **ours)], input_shape=(3,))
    model.compile(optimizer={"class_name": "sgd", "config": {"learning_rate": 0.01}}, loss="mse")
    assert model.evaluate(x, y, batch_size=8, verbose=0)["loss"] == pytest.approx(expected_eval, rel=1e-5)
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0, validation_data=(x, y), shuffle=False).history
    for key in ("loss", "val_loss"):
        assert history[key] == pytest.approx(expected[key], rel=1e-5)
