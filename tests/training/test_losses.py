"""Losses against numpy formulas, logits against probabilities, and their error messages."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.training import losses
from deepfield.training.losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    SmoothedSparseCrossentropy,
    SparseCategoricalCrossentropy,
)

RNG = np.random.default_rng(11)
N, C = 64, 5


def t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(x)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_regression_losses_match_numpy() -> None:
    pred, true = RNG.normal(size=(N, 3)) * 2, RNG.normal(size=(N, 3))
    err = pred - true
    expected = {
        "mse": np.mean(err**2),
        "mae": np.mean(np.abs(err)),
        "huber": np.mean(np.where(np.abs(err) <= 1, 0.5 * err**2, np.abs(err) - 0.5)),
        "half_sse": np.mean(np.sum(0.5 * err**2, axis=1)),
    }
    for name, value in expected.items():
        assert losses.get(name)(t(pred), t(true)).item() == pytest.approx(value, rel=1e-12)
    delta = 0.3
    huber = np.mean(np.where(np.abs(err) <= delta, 0.5 * err**2, delta * (np.abs(err) - delta / 2)))
    assert Huber(delta=delta)(t(pred), t(true)).item() == pytest.approx(huber, rel=1e-12)


def test_half_sse_is_the_course_worked_example() -> None:
    """One sample: outputs (0.751, 0.773) against targets (0.01, 0.99) give L_total = 0.298."""
    output = torch.tensor([[0.75136507, 0.772928465]], dtype=torch.float64, requires_grad=True)
    loss = losses.get("half_sse")(output, torch.tensor([[0.01, 0.99]], dtype=torch.float64))
    assert loss.item() == pytest.approx(0.298371109, abs=1e-9)
    loss.backward()
    assert output.grad[0, 0].item() == pytest.approx(0.741, abs=1e-3)  # dL/dout_o1 on the slide


def test_binary_crossentropy_matches_numpy_and_keras_clipping() -> None:
    logits = RNG.normal(size=(N, 1)) * 3
    labels = (RNG.random(N) < 0.4).astype(float)  # (N,) labels against (N, 1) outputs
    p = sigmoid(logits)[:, 0]
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    from_probs = losses.get("binary_crossentropy")(t(sigmoid(logits)), t(labels))
    from_logits = BinaryCrossentropy(from_logits=True)(t(logits), t(labels))
    assert from_probs.item() == pytest.approx(expected, rel=1e-9)
    assert from_logits.item() == pytest.approx(expected, rel=1e-9)
    # A saturated wrong prediction costs -log(1e-7), as in Keras, not infinity.
    saturated = losses.get("binary_crossentropy")(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert saturated.item() == pytest.approx(-np.log(1e-7), rel=1e-5)


def test_categorical_crossentropies_match_numpy_from_probabilities_and_logits() -> None:
    logits = RNG.normal(size=(N, C)) * 2
    classes = RNG.integers(0, C, size=N)
    one_hot = np.eye(C)[classes]
    expected = -np.mean(np.log(softmax(logits)[np.arange(N), classes]))
    values = [
        losses.get("categorical_crossentropy")(t(softmax(logits)), t(one_hot)),
        CategoricalCrossentropy(from_logits=True)(t(logits), t(one_hot)),
        losses.get("sparse_categorical_crossentropy")(t(softmax(logits)), t(classes)),
        SparseCategoricalCrossentropy(from_logits=True)(t(logits), t(classes)),
    ]
    for value in values:
        assert value.item() == pytest.approx(expected, rel=1e-9)


def test_categorical_probabilities_are_renormalised_like_keras() -> None:
    probabilities = torch.tensor([[0.2, 0.2], [0.6, 0.2]], dtype=torch.float64)
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    expected = -(np.log(0.5) + np.log(0.25)) / 2
    assert losses.get("categorical_crossentropy")(probabilities, labels).item() == pytest.approx(expected)


def test_losses_are_differentiable_and_accept_integer_labels() -> None:
    pred = torch.rand(8, 1, requires_grad=True)
    loss = losses.get("binary_crossentropy")(pred, torch.randint(0, 2, (8,)))
    loss.backward()
    assert pred.grad is not None and loss.dtype == torch.float32


def test_get_names_instances_configs_and_unknown_names() -> None:
    assert isinstance(losses.get("mean_squared_error"), losses.MeanSquaredError)
    assert isinstance(losses.get("Huber"), Huber)
    instance = CategoricalCrossentropy(from_logits=True)
    assert losses.get(instance) is instance
    assert instance.name == "categorical_crossentropy"
    assert instance.get_config() == {"from_logits": True}
    rebuilt = losses.get({"class_name": "CategoricalCrossentropy", "config": instance.get_config()})
    assert rebuilt.from_logits
    module = torch.nn.MSELoss()
    assert losses.get(module) is module  # torch's own order, (input, target)
    function = torch.nn.functional.mse_loss
    assert isinstance(losses.get(function), losses.KerasFunction)  # a function is called f(y_true, y_pred)
    with pytest.raises(DeepfieldError, match="unknown loss 'mse2'; expected one of: binary_crossentropy"):
        losses.get("mse2")
    with pytest.raises(DeepfieldError, match="loss must be a name"):
        losses.get(3)


@pytest.mark.parametrize(
    ("loss", "pred_shape", "labels", "message"),
    [
        (
            "binary_crossentropy", (32, 1), torch.zeros(32, 3),
            r"^binary_crossentropy: labels of shape \(32, 3\) do not match predictions of shape \(32, 1\)$",
        ),
        ("mse", (32, 2), torch.zeros(32), r"^mse: labels of shape \(32,\) do not match predictions of shape \(32, 2\)$"),
        (
            "categorical_crossentropy", (32, 10), torch.zeros(32, dtype=torch.long),
            r"labels of shape \(32,\) .* \(32, 10\); for integer class labels use sparse_categorical_crossentropy",
        ),
        (
            "sparse_categorical_crossentropy", (32, 10), torch.zeros(32),
            r"^sparse_categorical_crossentropy: labels must be integer class indices, got dtype float32$",
        ),
        (
            "sparse_categorical_crossentropy", (32, 10), torch.zeros(32, 10, dtype=torch.long),
            r"expected one integer label per sample, shape \(32,\), got labels of shape \(32, 10\) "
            r"\(one-hot labels\? use categorical_crossentropy\)",
        ),
        (
            "sparse_categorical_crossentropy", (32,), torch.zeros(32, dtype=torch.long),
            r"predictions need a class axis",
        ),
        (
            "sparse_categorical_crossentropy", (4, 3), torch.tensor([0, 1, 3, 2]),
            r"^sparse_categorical_crossentropy: labels must be class indices in \[0, 3\) for 3 "
            r"predicted classes, got values from 0 to 3$",
        ),
    ],
)
def test_label_errors_name_the_loss_expected_and_got(loss, pred_shape, labels, message) -> None:
    with pytest.raises(DeepfieldError, match=message):
        losses.get(loss)(torch.rand(pred_shape), labels)


def test_sparse_labels_accept_n_by_1_and_small_integer_dtypes() -> None:
    pred = torch.softmax(torch.randn(6, 4), dim=1)
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    loss = losses.get("sparse_categorical_crossentropy")
    reference = loss(pred, labels)
    assert torch.equal(loss(pred, labels.reshape(6, 1)), reference)
    assert torch.equal(loss(pred, labels.to(torch.uint8)), reference)


@pytest.mark.parametrize("from_logits", [False, True])
def test_out_of_range_label_in_a_later_batch_still_gives_the_message_on_cpu(from_logits: bool) -> None:
    loss = SparseCategoricalCrossentropy(from_logits=from_logits)
    loss(torch.rand(4, 3), torch.tensor([0, 1, 2, 1]))  # first batch: range checked
    with pytest.raises(DeepfieldError, match=r"class indices in \[0, 3\) .* got values from 0 to 7"):
        loss(torch.rand(4, 3), torch.tensor([0, 7, 2, 1]))
    with pytest.raises(DeepfieldError, match=r"got values from -100 to 2"):  # not torch's ignore_index
        loss(torch.rand(4, 3), torch.tensor([0, -100, 2, 1]))


def test_smoothed_sparse_crossentropy_is_the_soft_label_crossentropy_of_its_kernel_rows() -> None:
    probabilities = torch.softmax(torch.tensor(RNG.normal(size=(N, C))), dim=1)
    labels = torch.tensor(RNG.integers(0, C, N))
    kernel = torch.tensor(RNG.random((C, C)))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    smoothed = SmoothedSparseCrossentropy(kernel)(probabilities, labels)
    soft = CategoricalCrossentropy()(probabilities, kernel[labels])
    assert float(smoothed) == pytest.approx(float(soft), rel=1e-6)
    identity = SmoothedSparseCrossentropy(torch.eye(C))(probabilities, labels)
    assert float(identity) == pytest.approx(float(SparseCategoricalCrossentropy()(probabilities, labels)), rel=1e-6)
    with pytest.raises(DeepfieldError, match=r"kernel must be square \(C, C\), got \(5, 4\)"):
        SmoothedSparseCrossentropy(torch.ones(C, C - 1))
