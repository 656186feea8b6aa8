"""Attribution maps: the known answer of the quadrant network, IG's completeness, the modified ReLU
backward against a hand computation and against captum, and a model left as it was."""
import captum.attr
import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from quadrant import SIZE, in_quadrant, quadrant_data, quadrant_model
from torch import nn

from deepfield.analysis.explain import deconvnet, guided_backprop, integrated_gradients, saliency
from deepfield.analysis.explain.attribution import gaussian_blur
from deepfield.errors import DeepfieldError
from deepfield.layers import Activation, Dense, Dropout, Flatten
from deepfield.models.sequential import Sequential


def ig_map(model, x, target, **kwargs):
    return integrated_gradients(model, x, target, **kwargs).attributions


METHODS = {"saliency": saliency, "integrated_gradients": ig_map, "guided_backprop": guided_backprop,
           "deconvnet": deconvnet}


def class1_stamps(bands=1, n=60):
    x, y = quadrant_data(n, seed=7, bands=bands)
    return x[y == 1]


def logits_of(model, x):
    """The quadrant network's pre-softmax scores, by running its layers by hand."""
    h = torch.as_tensor(x)
    with torch.no_grad():
        for layer in list(model)[:-1]:
            h = layer(h)
        return F.linear(h, model[-1].weight, model[-1].bias).numpy()


# --- the known answer ------------------------------------------------------------------------------

@pytest.mark.parametrize("bands", [1, 2])
def test_the_quadrant_network_learned_its_task(bands):
    x, y = quadrant_data(400, seed=99, bands=bands)
    assert (quadrant_model(bands=bands).predict(x, verbose=0).argmax(1) == y).mean() > 0.95


# Chance is 0.25 (the quadrant's share of the pixels); seeds 0-4 of the network, 1 and 2 bands,
# gave means of 0.53-0.70 (saliency), 0.63-0.75 (IG), 0.66-0.85 (guided backprop, deconvnet).
@pytest.mark.parametrize("bands", [1, 2])
@pytest.mark.parametrize(("name", "share"), [("saliency", 0.5), ("integrated_gradients", 0.6),
                                             ("guided_backprop", 0.6), ("deconvnet", 0.6)])
def test_maps_of_class_1_put_their_mass_on_the_top_left_quadrant(name, share, bands):
    x = class1_stamps(bands)
    maps = METHODS[name](quadrant_model(bands=bands), x, 1)
    assert maps.shape == x.shape and maps.dtype == np.float32
    assert in_quadrant(maps).mean() > share


def test_saliency_is_the_absolute_gradient_of_the_output_or_of_the_logit():
    model, x = quadrant_model(), class1_stamps()[:5]
    xt = torch.as_tensor(x).requires_grad_()
    (grad,) = torch.autograd.grad(model(xt)[:, 1].sum(), xt)
    np.testing.assert_allclose(saliency(model, x, 1), grad.abs().numpy(), rtol=1e-5, atol=1e-8)
    s = saliency(model, x, 1, logits=True)
    assert not np.allclose(s, grad.abs().numpy())
    xt = torch.as_tensor(x).requires_grad_()
    h = xt
    for layer in list(model)[:-1]:
        h = layer(h)
    (grad,) = torch.autograd.grad(F.linear(h, model[-1].weight, model[-1].bias)[:, 1].sum(), xt)
    np.testing.assert_allclose(s, grad.abs().numpy(), rtol=1e-5, atol=1e-8)


# --- integrated gradients --------------------------------------------------------------------------

def test_integrated_gradients_are_complete_to_the_stated_tolerance():
    model, x = quadrant_model(), class1_stamps()
    ig = integrated_gradients(model, x, 1, steps=64)
    with torch.no_grad():
        fx = model(torch.as_tensor(x))[:, 1].numpy().astype(np.float64)
        fb = model(torch.zeros_like(torch.as_tensor(x)))[:, 1].numpy().astype(np.float64)
    np.testing.assert_allclose(ig.score, fx, rtol=1e-5)
    np.testing.assert_allclose(ig.baseline_score, fb, rtol=1e-5)
    expected_delta = ig.attributions.reshape(len(x), -1).sum(axis=1, dtype=np.float64) - (fx - fb)
    np.testing.assert_allclose(ig.delta, expected_delta, atol=1e-6)
    np.testing.assert_allclose(ig.relative_error, np.abs(expected_delta) / np.abs(fx - fb), rtol=1e-6)
    # 64 Gauss-Legendre points: median 0.7 %, worst 3.5 % on these stamps
    assert np.median(ig.relative_error) < 0.02 and ig.relative_error.max() < 0.1
    coarse = integrated_gradients(model, x, 1, steps=4)
    assert np.median(coarse.relative_error) > 2 * np.median(ig.relative_error)  # delta measures the quadrature


def test_integrated_gradients_in_logits_sum_to_the_logit_difference():
    model, x = quadrant_model(), class1_stamps()[:8]
    ig = integrated_gradients(model, x, 1, logits=True)
    np.testing.assert_allclose(ig.score, logits_of(model, x)[:, 1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ig.attributions.reshape(8, -1).sum(axis=1), ig.score - ig.baseline_score,
                               rtol=0.05)


def test_baselines_a_number_an_array_or_a_blurred_copy():
    model, x = quadrant_model(), class1_stamps()[:4]

    def f(inputs):
        with torch.no_grad():
            return model(torch.as_tensor(np.ascontiguousarray(inputs, dtype=np.float32)))[:, 1].numpy()

    np.testing.assert_allclose(integrated_gradients(model, x, 1, baseline=-1.0, steps=8).baseline_score,
                               f(np.full_like(x, -1.0)), rtol=1e-5)
    sky = np.random.default_rng(3).normal(size=x.shape[1:]).astype(np.float32)
    np.testing.assert_allclose(integrated_gradients(model, x, 1, baseline=sky, steps=8).baseline_score,
                               f(np.broadcast_to(sky, x.shape)), rtol=1e-5)
    np.testing.assert_allclose(integrated_gradients(model, x, 1, baseline=x[::-1].copy(), steps=8).baseline_score,
                               f(x[::-1]), rtol=1e-5)
    blurred = scipy.ndimage.gaussian_filter(x, sigma=(0, 0, SIZE / 8, SIZE / 8), mode="mirror", truncate=3.0)
    blur = integrated_gradients(model, x, 1, baseline="blur", steps=8)
    np.testing.assert_allclose(blur.baseline_score, f(blurred), rtol=1e-4, atol=1e-6)
    with pytest.raises(DeepfieldError, match="baseline of shape \\(3, 3\\) matches neither x"):
        integrated_gradients(model, x, 1, baseline=np.zeros((3, 3)))
    with pytest.raises(DeepfieldError, match="baseline 'sky' is unknown"):
        integrated_gradients(model, x, 1, baseline="sky")


def test_gaussian_blur_is_scipys_with_mirrored_edges_and_keeps_the_flux():
    x = np.random.default_rng(0).normal(size=(2, 3, 12, 9))
    blurred = gaussian_blur(torch.as_tensor(x), 1.5).numpy()
    np.testing.assert_allclose(blurred, scipy.ndimage.gaussian_filter(x, (0, 0, 1.5, 1.5), mode="mirror",
                                                                      truncate=3.0), atol=1e-12)
    point = np.zeros((1, 1, 15, 15))
    point[0, 0, 7, 7] = 1.0
    assert gaussian_blur(torch.as_tensor(point), 2.0).sum().item() == pytest.approx(1.0)


# --- guided backprop and deconvnet: the modified ReLU backward --------------------------------------

def two_relu_net(seed=0):
    """(1, 2, 2) → Flatten → Dense 5 relu → Dense 4 → Activation relu → Dense 2: both deepfield ReLU forms."""
    torch.manual_seed(seed)
    return Sequential([Flatten(), Dense(5, activation="relu"), Dense(4), Activation("relu"), Dense(2)],
                      input_shape=(1, 2, 2)).build()


@pytest.mark.parametrize("method", ["gradient", "guided", "deconvnet"])
def test_the_relu_backward_matches_a_hand_computation(method):
    model = two_relu_net()
    x = np.random.default_rng(1).normal(size=(6, 1, 2, 2)).astype(np.float32)
    w1, b1, w2, b2, w3 = (p.detach().double().numpy() for p in (model[1].weight, model[1].bias, model[2].weight,
                                                                 model[2].bias, model[4].weight))
    maps = []
    for sample in x.reshape(6, 4).astype(np.float64):
        a1 = w1 @ sample + b1
        a2 = w2 @ np.maximum(a1, 0) + b2
        g = w3[1]  # ∂ output 1 / ∂ relu(a2)
        for a, w in ((a2, w2), (a1, w1)):  # back through each ReLU, then its Dense
            passed = {"gradient": g * (a > 0), "guided": np.maximum(g, 0) * (a > 0),
                      "deconvnet": np.maximum(g, 0)}[method]
            g = w.T @ passed
        maps.append(g)
    expected = np.array(maps).reshape(x.shape)
    plain = saliency(model, x, 1)
    got = {"gradient": plain, "guided": guided_backprop(model, x, 1), "deconvnet": deconvnet(model, x, 1)}[method]
    np.testing.assert_allclose(np.abs(got) if method == "gradient" else got,
                               np.abs(expected) if method == "gradient" else expected, rtol=1e-5, atol=1e-6)
    if method != "gradient":
        assert not np.allclose(np.abs(got), plain, atol=1e-4)  # the modified backward is active


class TorchQuadrant(nn.Module):
    """The quadrant network's weights in plain torch layers, giving its logits; ReLUs as modules or ``F.relu`` calls."""

    def __init__(self, model, functional: bool = False, inplace: bool = False):
        super().__init__()
        conv1, conv2, dense = model.conv2d, model.conv2d_1, model.dense
        self.conv1, self.conv2 = nn.Conv2d(conv1.weight.shape[1], 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(dense.weight.shape[1], 2)
        for mine, theirs in ((self.conv1, conv1), (self.conv2, conv2), (self.fc, dense)):
            mine.load_state_dict({"weight": theirs.weight.detach(), "bias": theirs.bias.detach()})
        self.relu1, self.relu2 = nn.ReLU(inplace=inplace), nn.ReLU(inplace=inplace)
        self.functional = functional

    def forward(self, x):
        relu1, relu2 = (F.relu, torch.relu) if self.functional else (self.relu1, self.relu2)
        x = F.max_pool2d(relu1(self.conv1(x)), 2)
        x = F.max_pool2d(relu2(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


@pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU")
@pytest.mark.parametrize(("ours", "theirs"), [(guided_backprop, captum.attr.GuidedBackprop),
                                              (deconvnet, captum.attr.Deconvolution)])
def test_deepfield_and_plain_torch_models_match_captum_on_relu_modules(ours, theirs):
    """In logits: the softmax of this confident network has gradients of 1e-12 on most stamps."""
    model, x = quadrant_model(), class1_stamps()[:6]
    reference = theirs(TorchQuadrant(model)).attribute(torch.as_tensor(x).requires_grad_(), target=1)
    reference = reference.detach().numpy()
    atol = 1e-5 * np.abs(reference).max()
    assert not np.allclose(np.abs(reference), saliency(model, x, 1, logits=True), atol=atol)
    np.testing.assert_allclose(ours(model, x, 1, logits=True), reference, rtol=1e-4, atol=atol)
    for net in (TorchQuadrant(model), TorchQuadrant(model, inplace=True), TorchQuadrant(model, functional=True)):
        np.testing.assert_allclose(ours(net, x, 1), reference, rtol=1e-4, atol=atol)
    # captum itself misses the functional ReLUs: it silently gives the plain gradient there
    missed = theirs(TorchQuadrant(model, functional=True)).attribute(torch.as_tensor(x).requires_grad_(), target=1)
    assert not np.allclose(missed.detach().numpy(), reference, atol=atol)


def test_a_model_without_relu_is_an_error_for_the_modified_backward():
    model = Sequential([Flatten(), Dense(3, activation="tanh"), Dense(2)], input_shape=(1, 2, 2)).build()
    x = np.ones((2, 1, 2, 2), np.float32)
    with pytest.raises(DeepfieldError, match="guided_backprop: the model applies no ReLU.*use saliency"):
        guided_backprop(model, x, 0)
    assert saliency(model, x, 0).shape == x.shape


# --- targets, batches, errors, and the model left as it was ---------------------------------------

@pytest.mark.parametrize("name", list(METHODS))
def test_targets_per_sample_and_batches_give_the_same_maps(name):
    model, x = quadrant_model(), class1_stamps()[:6]
    method = METHODS[name]
    targets = np.array([0, 1, 1, 0, 1, 0])
    per_sample = method(model, x, targets, batch_size=4, logits=True)
    atol = 1e-5 * np.abs(per_sample).max()
    for i, t in enumerate(targets):
        np.testing.assert_allclose(per_sample[i], method(model, x[i:i + 1], int(t), logits=True)[0], rtol=1e-4,
                                   atol=atol)
    np.testing.assert_allclose(method(model, x, 1, batch_size=1, logits=True),
                               method(model, x, torch.ones(6, dtype=torch.long), logits=True), rtol=1e-4, atol=atol)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_single_output_model_needs_no_target(name):
    torch.manual_seed(0)
    model = Sequential([Flatten(), Dense(4, activation="relu"), Dense(1)], input_shape=(1, 3, 3)).build()
    x = np.random.default_rng(0).normal(size=(5, 1, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(METHODS[name](model, x, None), METHODS[name](model, x, 0))
    regressor = nn.Sequential(nn.Flatten(), nn.Linear(9, 1), nn.ReLU(), nn.Flatten(0))  # outputs (N,)
    assert METHODS[name](regressor, x, None).shape == x.shape


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize(("target", "message"), [
    (2, "target 2 is out of range: the model gives 2 output\\(s\\) per sample \\(indices 0 to 1\\)"),
    (np.array([0, 1, -1]), "target -1 is out of range"),
    (None, "target is needed: the model gives 2 outputs per sample"),
    (1.0, "target must be a class index: an int or an \\(N=3,\\) integer array, got float64"),
    (np.array([0, 1]), "target must be a class index.*got int64 of shape \\(2,\\)"),
])
def test_a_bad_target_is_named(name, target, message):
    with pytest.raises(DeepfieldError, match=f"^{name}: {message}"):
        METHODS[name](quadrant_model(), class1_stamps()[:3], target)


@pytest.mark.parametrize("name", list(METHODS))
def test_a_bad_shape_names_what_the_model_expects(name):
    model, stamp = quadrant_model(), class1_stamps()[0]
    with pytest.raises(DeepfieldError, match=f"^{name}: x of shape \\(1, 16, 16\\) does not fit the model: it "
                                             "expects a batch \\(N, ...\\) of samples of shape \\(1, 16, 16\\)$"):
        METHODS[name](model, stamp, 1)
    plain = TorchQuadrant(model)
    with pytest.raises(DeepfieldError, match=f"^{name}: x of shape \\(2, 3, 16, 16\\) does not fit the model: "
                                             "it expects .* of shape \\(1, \\.\\.\\., \\.\\.\\.\\) \\("):
        METHODS[name](plain, np.zeros((2, 3, 16, 16), np.float32), 1)


def test_logits_need_a_final_softmax():
    x = class1_stamps()[:2]
    with pytest.raises(DeepfieldError, match="^saliency: logits=True needs a model that ends with a softmax layer"):
        saliency(TorchQuadrant(quadrant_model()), x, 1, logits=True)
    mixed = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 3), nn.Softmax(dim=1), nn.Linear(3, 2))
    with pytest.raises(DeepfieldError, match="^integrated_gradients: logits=True needs the model's last step to be "
                                             "its softmax layer; something follows it"):
        integrated_gradients(mixed, x, 1, logits=True)


def no_hooks(model):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
               for m in model.modules())


@pytest.mark.parametrize("name", list(METHODS))
def test_the_model_keeps_its_flags_weights_and_no_hooks_also_after_an_error(name):
    model = Sequential([Flatten(), Dense(6, activation="relu"), Dropout(0.5), Dense(2, activation="softmax")],
                       input_shape=(1, 3, 3)).build()
    model.train()
    model[2].eval()  # a mixed state comes back as it was
    flags = [m.training for m in model.modules()]
    weights = [p.detach().clone() for p in model.parameters()]
    x = np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32)
    first = METHODS[name](model, x, 1, logits=True)
    np.testing.assert_array_equal(first, METHODS[name](model, x, 1, logits=True))  # dropout was off
    with pytest.raises(DeepfieldError):
        METHODS[name](model, x, 5, logits=True)
    with pytest.raises(DeepfieldError):
        METHODS[name](model, x[:, :, :2], 1, logits=True)
    assert [m.training for m in model.modules()] == flags
    assert no_hooks(model)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))
