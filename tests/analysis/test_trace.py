"""The glass-box trace of one training step, checked against the course and by hand."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from deepfield.analysis.trace import (
    MAX_TRACE_WEIGHTS,
    TraceResult,
    course_example,
    load_trace_spec,
    render_trace,
    run_trace,
    trace_spec_from_dict,
)
from deepfield.errors import DeepfieldError


@pytest.fixture(scope="module")
def course() -> TraceResult:
    """The course's worked example, traced once for the whole module."""
    return run_trace(course_example())


def _truncate3(value: float) -> float:
    """The course slides' 3-digit view: digits after the third decimal dropped, not rounded."""
    return math.floor(value * 1000) / 1000


# --------------------------------------------------------------------------------------------
# The course example
# --------------------------------------------------------------------------------------------


def test_course_forward_pass(course: TraceResult) -> None:
    """in_h1 = 0.3775, out_h1 = 0.593270, out_o1 = 0.751365, out_o2 = 0.772928."""
    assert round(course.neuron("h1").net_input, 6) == 0.3775
    assert round(course.neuron("h1").output, 6) == 0.593270
    assert round(course.neuron("o1").net_input, 3) == 1.106
    assert round(course.neuron("o1").output, 6) == 0.751365
    assert round(course.neuron("o2").output, 6) == 0.772928
    assert course.neuron("o1").weights == ("w5", "w6") and course.neuron("o1").bias == "b2"
    assert course.neuron("h2").weights == ("w3", "w4") and course.neuron("h2").bias == "b1"


def test_course_loss(course: TraceResult) -> None:
    """L_o1 = 0.274, L_o2 = 0.023, L_total = 0.298371."""
    assert round(course.loss_terms["L_o1"], 6) == 0.274811
    assert round(course.loss_terms["L_o2"], 6) == 0.023560
    assert round(course.loss_total, 6) == 0.298371


def test_course_w5_chain_rule(course: TraceResult) -> None:
    """dL/dw5 = 0.741365 x 0.186816 x 0.593270 = 0.082167 (the slides: 0.741 x 0.186 x 0.593)."""
    w5 = course.parameter("w5")
    (term,) = w5.chain
    assert term.neuron == "o1"
    factors = (term.dL_dout, term.dout_din, term.din_dparam)
    assert [round(f, 6) for f in factors] == [0.741365, 0.186816, 0.593270]
    assert [_truncate3(f) for f in factors] == [0.741, 0.186, 0.593]
    assert [round(f, 3) for f in factors] == [0.741, 0.187, 0.593]
    assert round(w5.gradient, 6) == 0.082167
    assert term.product == pytest.approx(w5.gradient, rel=1e-12)


def test_course_w1_chain_rule_is_back_propagated(course: TraceResult) -> None:
    """dL/dout_h1 sums the two outputs h1 feeds: dL/din_o1 * w5 + dL/din_o2 * w7."""
    (term,) = course.parameter("w1").chain
    h1, o1, o2 = course.neuron("h1"), course.neuron("o1"), course.neuron("o2")
    assert term.neuron == "h1"
    assert [t.neuron for t in h1.backprop] == ["o1", "o2"]
    assert [t.din_dout for t in h1.backprop] == pytest.approx([0.40, 0.50], abs=1e-15)
    assert [t.dL_din for t in h1.backprop] == pytest.approx([o1.dL_din, o2.dL_din], abs=1e-15)
    assert term.dL_dout == pytest.approx(o1.dL_din * 0.40 + o2.dL_din * 0.50, abs=1e-15)
    assert round(term.dL_dout, 6) == 0.036350
    assert round(term.dout_din, 6) == 0.241301
    assert term.din_dparam == pytest.approx(0.05, abs=1e-15)  # din_h1/dw1 = i1


def test_course_update(course: TraceResult) -> None:
    """One step with lr 0.5 gives the course's new weights."""
    updated = {p.name: round(p.updated, 6) for p in course.parameters}
    assert updated["w5"] == 0.358916
    assert updated["w6"] == 0.408666
    assert updated["w7"] == 0.511301
    assert updated["w8"] == 0.561370
    assert updated["w1"] == 0.149781
    assert updated["w2"] == 0.199561
    assert updated["w3"] == 0.249751
    assert updated["w4"] == 0.299502
    assert [p.name for p in course.parameters] == ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8", "b1", "b2"]
    assert len(course.parameter("b2").chain) == 2  # one shared bias feeds both outputs


def test_default_spec_is_the_course_example(course: TraceResult) -> None:
    """run_trace() without a spec traces the course example."""
    assert run_trace().to_dict() == course.to_dict()


# --------------------------------------------------------------------------------------------
# An independent hand computation
# --------------------------------------------------------------------------------------------


def _random_spec(loss: str) -> dict[str, Any]:
    """A 3-4-2 network, per-neuron biases, tanh hidden, sigmoid output, random numbers."""
    rng = np.random.default_rng(7)
    return {
        "inputs": rng.normal(size=3).tolist(),
        "targets": rng.uniform(size=2).tolist(),
        "learning_rate": 0.3,
        "loss": loss,
        "layers": [
            {"weights": rng.normal(size=(4, 3)).tolist(), "bias": rng.normal(size=4).tolist(), "activation": "tanh"},
            {"weights": rng.normal(size=(2, 4)).tolist(), "bias": rng.normal(size=2).tolist(), "activation": "sigmoid"},
        ],
    }


@pytest.mark.parametrize("loss", ["half_sse", "mse"])
def test_matches_hand_computation(loss: str) -> None:
    """Gradients and updates equal a formula-by-formula numpy backpropagation to 1e-10."""
    spec = _random_spec(loss)
    x, t, lr = np.array(spec["inputs"]), np.array(spec["targets"]), spec["learning_rate"]
    W1, b1 = np.array(spec["layers"][0]["weights"]), np.array(spec["layers"][0]["bias"])
    W2, b2 = np.array(spec["layers"][1]["weights"]), np.array(spec["layers"][1]["bias"])

    # forward: in = W out_prev + b, out = f(in)
    in_h = W1 @ x + b1
    out_h = np.tanh(in_h)
    in_o = W2 @ out_h + b2
    out_o = 1.0 / (1.0 + np.exp(-in_o))
    # loss and dL/dout_o
    if loss == "half_sse":
        L = np.sum(0.5 * (t - out_o) ** 2)
        dL_dout_o = -(t - out_o)
    else:
        L = np.sum((t - out_o) ** 2) / len(t)
        dL_dout_o = -2.0 * (t - out_o) / len(t)
    # chain rule: sigmoid' = s(1-s), tanh' = 1 - tanh^2
    dout_din_o = out_o * (1.0 - out_o)
    delta_o = dL_dout_o * dout_din_o
    dL_dW2 = np.outer(delta_o, out_h)  # din_o/dw = out_h
    dL_db2 = delta_o  # din_o/db = 1
    dL_dout_h = W2.T @ delta_o  # summed over the outputs each hidden neuron feeds
    dout_din_h = 1.0 - out_h**2
    delta_h = dL_dout_h * dout_din_h
    dL_dW1 = np.outer(delta_h, x)  # din_h/dw = i
    dL_db1 = delta_h

    expected_grad = {f"w{n + 1}": g for n, g in enumerate(np.concatenate([dL_dW1.ravel(), dL_dW2.ravel()]))}
    expected_grad |= {f"b_h{j + 1}": g for j, g in enumerate(dL_db1)} | {f"b_o{j + 1}": g for j, g in enumerate(dL_db2)}
    values = np.concatenate([W1.ravel(), W2.ravel(), b1, b2])

    result = run_trace(spec)
    assert result.loss_total == pytest.approx(L, abs=1e-12)
    assert [p.name for p in result.parameters] == list(expected_grad)
    for parameter, value in zip(result.parameters, values):
        assert parameter.gradient == pytest.approx(expected_grad[parameter.name], abs=1e-10), parameter.name
        assert parameter.updated == pytest.approx(value - lr * expected_grad[parameter.name], abs=1e-10), parameter.name
    for j in range(4):
        h = result.neuron(f"h{j + 1}")
        assert (h.net_input, h.output) == pytest.approx((in_h[j], out_h[j]), abs=1e-12)
        assert (h.dL_dout, h.dout_din) == pytest.approx((dL_dout_h[j], dout_din_h[j]), abs=1e-12)
    # w14 = weight from h2 into o1: factors dL/dout_o1, dout_o1/din_o1, out_h2
    (term,) = result.parameter("w14").chain
    assert term.neuron == "o1"
    expected = (dL_dout_o[0], dout_din_o[0], out_h[1])
    assert (term.dL_dout, term.dout_din, term.din_dparam) == pytest.approx(expected, abs=1e-12)


def test_deep_network_names_and_finite_differences() -> None:
    """Two hidden layers (relu, tanh), a linear output, mixed biases: names and gradients."""
    rng = np.random.default_rng(3)
    spec = {
        "inputs": [0.4, -0.7],
        "targets": [0.25],
        "loss": "mse",
        "learning_rate": 0.1,
        "layers": [
            {"weights": rng.normal(size=(3, 2)).tolist(), "bias": 0.1, "activation": "relu"},
            {"weights": rng.normal(size=(2, 3)).tolist(), "bias": [0.2, -0.3], "activation": "tanh"},
            {"weights": rng.normal(size=(1, 2)).tolist(), "activation": "linear"},
        ],
    }
    result = run_trace(spec)
    assert [n.name for n in result.neurons] == ["h1", "h2", "h3", "h4", "h5", "o1"]
    assert [p.name for p in result.parameters] == [f"w{n}" for n in range(1, 15)] + ["b1", "b_h4", "b_h5"]
    assert result.neuron("h4").weights == ("w7", "w8", "w9") and result.neuron("h4").sources == ("h1", "h2", "h3")
    assert result.neuron("o1").bias is None

    def loss_with(name: str, shift: float) -> float:
        """The loss after moving one parameter by ``shift``."""
        moved = json.loads(json.dumps(spec))
        number = int(name[1:]) if name.startswith("w") else None
        if number is not None:
            for layer in moved["layers"]:
                weights = layer["weights"]
                size = len(weights) * len(weights[0])
                if number <= size:
                    weights[(number - 1) // len(weights[0])][(number - 1) % len(weights[0])] += shift
                    break
                number -= size
        elif name == "b1":
            moved["layers"][0]["bias"] += shift
        else:
            moved["layers"][1]["bias"][int(name[-1]) - 4] += shift
        return run_trace(moved).loss_total

    eps = 1e-6
    for parameter in result.parameters:
        numeric = (loss_with(parameter.name, eps) - loss_with(parameter.name, -eps)) / (2 * eps)
        assert parameter.gradient == pytest.approx(numeric, abs=1e-8), parameter.name


def test_local_derivative_when_upstream_gradient_is_zero() -> None:
    """A hidden neuron whose outgoing weights are 0 has dL/dout = 0 but still its own sigmoid'."""
    spec = {
        "inputs": [0.5, -1.0],
        "targets": [0.3],
        "layers": [
            {"weights": [[0.2, 0.4], [-0.6, 0.1]], "bias": 0.0, "activation": "sigmoid"},
            {"weights": [[0.0, 0.8]], "bias": 0.1, "activation": "sigmoid"},
        ],
    }
    h1 = run_trace(spec).neuron("h1")
    s = 1.0 / (1.0 + math.exp(-(0.2 * 0.5 - 0.4)))
    assert h1.dL_dout == 0.0
    assert h1.dout_din == pytest.approx(s * (1.0 - s), abs=1e-15)


# --------------------------------------------------------------------------------------------
# JSON in and out, errors
# --------------------------------------------------------------------------------------------


def test_json_file_round_trip(tmp_path: Path, course: TraceResult) -> None:
    """A spec written to a file loads back and traces to the same numbers; to_dict is JSON."""
    path = tmp_path / "course.json"
    path.write_text(json.dumps(course_example().model_dump()), encoding="utf-8")
    result = run_trace(load_trace_spec(path))
    data = json.loads(json.dumps(result.to_dict()))
    assert data == course.to_dict()
    assert {"forward", "loss", "gradients", "chain_rule", "updated", "learning_rate"} <= set(data)
    assert set(data["gradients"]) == set(data["updated"]) == {f"w{n}" for n in range(1, 9)} | {"b1", "b2"}
    assert round(data["loss"]["total"], 6) == 0.298371
    assert round(data["forward"]["h1"]["in"], 6) == 0.3775
    (w5,) = data["chain_rule"]["w5"]
    assert [round(w5[k], 6) for k in ("dL_dout", "dout_din", "din_dparam")] == [0.741365, 0.186816, 0.593270]
    assert round(data["updated"]["w5"], 6) == 0.358916
    assert data["learning_rate"] == 0.5


def _course_dict() -> dict[str, Any]:
    """The course spec as plain JSON data, to break in the error tests."""
    return course_example().model_dump()


def _with(change: str) -> dict[str, Any]:
    """The course spec with one thing wrong."""
    data = _course_dict()
    if change == "shape":
        data["layers"][1]["weights"] = [[0.4, 0.45, 0.1], [0.5, 0.55, 0.1]]
    elif change == "activation":
        data["layers"][0]["activation"] = "softmax"
    elif change == "targets":
        data["targets"] = [0.01, 0.99, 0.5]
    elif change == "number":
        data["inputs"] = [0.05, "ten"]
    elif change == "bias":
        data["layers"][0]["bias"] = [0.35, 0.35, 0.35]
    elif change == "loss":
        data["loss"] = "cross_entropy"
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", "layers[1].weights: each row must have 2 numbers"),
        ("activation", "layers[0].activation: unknown activation 'softmax'"),
        ("targets", "targets: has 3 values but the last layer has 2 outputs"),
        ("number", "inputs[1]: input should be a valid number"),
        ("bias", "layers[0].bias: has 3 values for 2 neurons"),
        ("loss", "loss: unknown loss 'cross_entropy'"),
    ],
)
def test_bad_spec_file_names_file_and_problem(tmp_path: Path, change: str, message: str) -> None:
    """Each wrong spec gives one DeepfieldError line with the file name and what is wrong."""
    path = tmp_path / "my_net.json"
    path.write_text(json.dumps(_with(change)), encoding="utf-8")
    with pytest.raises(DeepfieldError) as info:
        load_trace_spec(path)
    text = str(info.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    """Broken JSON and a missing file are DeepfieldErrors naming the file."""
    path = tmp_path / "broken.json"
    path.write_text('{"inputs": [0.05, 0.10],', encoding="utf-8")
    with pytest.raises(DeepfieldError, match=r"broken\.json: not valid JSON"):
        load_trace_spec(path)
    with pytest.raises(DeepfieldError, match=r"absent\.json: no such trace spec file"):
        load_trace_spec(tmp_path / "absent.json")


def test_too_many_weights_points_to_summary() -> None:
    """More than MAX_TRACE_WEIGHTS weights is refused, suggesting the summary."""
    size = MAX_TRACE_WEIGHTS // 8 + 1
    spec = {"inputs": [0.0] * 8, "targets": [0.0] * size, "layers": [{"weights": [[0.1] * 8] * size}]}
    with pytest.raises(DeepfieldError, match=r"big\.json: .*at most 64.*summary\(\)"):
        trace_spec_from_dict(spec, source="big.json")


# --------------------------------------------------------------------------------------------
# The text report
# --------------------------------------------------------------------------------------------


def test_render_writes_the_course_slides(course: TraceResult) -> None:
    """The report has the four sections and the w5 chain rule line with its numbers."""
    console = Console(record=True, width=80, color_system=None)
    render_trace(course, console)
    text = console.export_text()
    for section in ("FORWARD PASS", "LOSS", "BACKWARD PASS", "UPDATE"):
        assert section in text
    lines = text.splitlines()
    w5 = "∂L/∂w5 = ∂L/∂out_o1 × ∂out_o1/∂in_o1 × ∂in_o1/∂w5 = 0.741365 × 0.186816 × 0.593270 = 0.082167"
    in_h1 = "in_h1 = w1 × i1 + w2 × i2 + b1 = 0.150000 × 0.050000 + 0.200000 × 0.100000 + 0.350000 = 0.377500"
    assert w5 in lines
    assert in_h1 in lines
    assert "L_total = L_o1 + L_o2 = 0.274811 + 0.023560 = 0.298371" in lines
    assert "w5 ← w5 - λ × ∂L/∂w5 = 0.400000 - 0.5 × 0.082167 = 0.358916" in lines
