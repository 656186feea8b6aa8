"""Class models: the ascent raises the class score from noise and from a real stamp, finds the quadrant
the network looks at, is reproducible, and leaves the model as it was."""
import numpy as np
import pytest
import torch
from quadrant import SIZE, in_quadrant, quadrant_data, quadrant_model
from torch import nn

from deepfield.analysis.explain import ClassModel, class_model
from deepfield.errors import DeepfieldError
from deepfield.layers import Dense, Dropout, Flatten
from deepfield.models.sequential import Sequential

SHAPE = (1, SIZE, SIZE)


def class0_stamp() -> np.ndarray:
    x, y = quadrant_data(20, seed=5)
    return x[y == 0][0]


@pytest.mark.parametrize("logits", [False, True])
def test_the_ascent_raises_the_class_score_from_noise(logits):
    result = class_model(quadrant_model(), 1, SHAPE, logits=logits)
    assert isinstance(result, ClassModel) and result.image.shape == SHAPE and result.target == 1
    assert result.scores.shape == (200,)
    if logits:  # the logit climbs from below 0 to far above it (seen: -0.7 → 119)
        assert result.start_score < 0 < 10 < result.final_score
    else:  # the probability from ~0.2 to ~1
        assert result.start_score < 0.5 and result.final_score > 0.99
    assert result.scores[-10:].mean() > result.scores[:10].mean()


def quadrant_sums(image: np.ndarray) -> np.ndarray:
    """The sum of ``image`` (C, H, W) over each quadrant: top-left, top-right, bottom-left, bottom-right."""
    h = image.shape[-1] // 2
    return np.array([image[:, rows, cols].sum() for rows in (slice(0, h), slice(h, None))
                     for cols in (slice(0, h), slice(h, None))])


@pytest.mark.parametrize("logits", [False, True])
def test_from_a_real_stamp_of_the_other_class_the_ascent_adds_flux_in_the_top_left_quadrant(logits):
    """Seen for seeds 0-3 of the network: flux added 22-28 (probability) or 290-400 (logit) in the
    top-left quadrant, at most 42 in any other (the blur also removes some of the stamp's sources)."""
    stamp = class0_stamp()
    result = class_model(quadrant_model(), 1, start=stamp, logits=logits)
    if logits:
        assert result.start_score < 0 < 10 < result.final_score
    else:
        assert result.start_score < 0.01 and result.final_score > 0.99  # seen: 0.000 → 1.000
    added = quadrant_sums(result.image - stamp)
    assert added[0] > 0 and added.argmax() == 0


def test_the_class_1_image_puts_its_energy_in_the_top_left_quadrant():
    """Seeds 0-3 of the network, 1 and 2 bands, probabilities and logits: 0.89-1.00 (chance 0.25)."""
    image = class_model(quadrant_model(), 1, SHAPE).image
    assert in_quadrant(image[None] ** 2)[0] > 0.6


def test_the_result_is_reproducible_for_a_seed():
    first = class_model(quadrant_model(), 1, SHAPE, steps=30, seed=3)
    again = class_model(quadrant_model(), 1, SHAPE, steps=30, seed=3)
    other = class_model(quadrant_model(), 1, SHAPE, steps=30, seed=4)
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.scores, again.scores)
    assert not np.allclose(first.image, other.image)


def test_the_regularisers_act():
    """A larger L2 weight gives a fainter image (seen: ×0.25-0.46 from λ = 0 to 0.01); without blur
    and jitter the image is rougher (seen: ×6-15 in the relative power of pixel-to-pixel steps)."""
    model = quadrant_model()

    def energy(l2):
        return np.square(class_model(model, 1, SHAPE, logits=True, l2=l2).image).sum()

    assert energy(1e-2) < 0.7 * energy(0.0)

    def roughness(image):
        return np.square(np.diff(image, axis=-1)).sum() / np.square(image).sum()

    smooth = class_model(model, 1, SHAPE, logits=True).image
    rough = class_model(model, 1, SHAPE, logits=True, blur_every=0, jitter=0).image
    assert roughness(rough) > 3 * roughness(smooth)


def test_the_model_keeps_its_flags_weights_and_no_hooks():
    torch.manual_seed(0)
    model = Sequential([Flatten(), Dense(8, activation="relu"), Dropout(0.5), Dense(2, activation="softmax")],
                       input_shape=(1, 4, 4)).build().train()
    weights = [p.detach().clone() for p in model.parameters()]
    result = class_model(model, 0, steps=20, logits=True)  # the shape the model declares
    assert result.image.shape == (1, 4, 4)
    with pytest.raises(DeepfieldError):
        class_model(model, 3, steps=5)
    assert all(m.training for m in model.modules())
    assert all(not (m._forward_hooks or m._forward_pre_hooks) for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), weights))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(target=2), "^class_model: target 2 is out of range: the model gives 2 output"),
    (dict(target=None), "^class_model: target is needed"),
    (dict(target=1, start=np.zeros((SIZE, SIZE))), "^class_model: start of shape \\(16, 16\\) is not one stamp"),
    (dict(target=1, start=np.zeros((2, SIZE, SIZE))), "^class_model: the start image \\(input_shape or start\\) of "
     "shape \\(1, 2, 16, 16\\) does not fit the model: it expects .* of shape \\(1, 16, 16\\)$"),
    (dict(target=1, start="sky"), "^class_model: start 'sky' is unknown"),
    (dict(target=1, steps=-1), "^class_model: steps must be a non-negative integer, got -1"),
    (dict(target=1, lr=0.0), "^class_model: lr must be a positive number, got 0.0"),
    (dict(target=1, blur_sigma=-1), "^class_model: blur_sigma must be a non-negative number, got -1"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(DeepfieldError, match=message):
        class_model(quadrant_model(), input_shape=None if "start" in kwargs else SHAPE, **kwargs)


def test_a_plain_module_needs_an_input_shape():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(DeepfieldError, match="^class_model: input_shape is needed"):
        class_model(net, 1)
    assert class_model(net, 1, (1, 2, 2), steps=5, blur_sigma=0.0).image.shape == (1, 2, 2)
