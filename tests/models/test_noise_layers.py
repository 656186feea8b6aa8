"""GaussianNoise, GaussianDropout, AlphaDropout: identity outside training (as Keras), the noise's statistics
while training (Keras's formulas), Monte-Carlo sampling with them, configs and errors."""
import json

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.layers import AlphaDropout, Dense, GaussianDropout, GaussianNoise
from deepfield.models.sequential import Sequential as PlainSequential
from deepfield.training import Sequential
from deepfield.training.mc_dropout import sample_outputs

from keras_layer_reference import keras, run_keras

rng = np.random.default_rng(4)


@pytest.mark.parametrize("ours, theirs", [
    (GaussianNoise(0.3), keras.layers.GaussianNoise(0.3)),
    (GaussianDropout(0.4), keras.layers.GaussianDropout(0.4)),
    (AlphaDropout(0.2), keras.layers.AlphaDropout(0.2)),
])
def test_identity_outside_training_as_keras(ours, theirs):
    x = rng.normal(size=(3, 2, 4)).astype(np.float32)
    np.testing.assert_array_equal(ours.eval()(torch.from_numpy(x)).numpy(), run_keras(theirs, x, training=False))


def _moments(layer, x):
    torch.manual_seed(0)
    y = layer.train()(x)
    return y, float(y.mean()), float(y.var())


def test_training_noise_has_keras_statistics():
    x = torch.full((400, 500), 2.0)
    y, mean, var = _moments(GaussianNoise(0.3), x)
    assert mean == pytest.approx(2.0, abs=3e-3) and var == pytest.approx(0.09, rel=0.02)
    y, mean, var = _moments(GaussianDropout(0.4), x)
    assert mean == pytest.approx(2.0, abs=6e-3) and var == pytest.approx(4 * 0.4 / 0.6, rel=0.02)
    # AlphaDropout keeps SELU's fixed point: inputs of mean 0 and variance 1 stay so
    standard = torch.randn(400, 500, generator=torch.Generator().manual_seed(5))
    for rate in (0.1, 0.3):
        y, mean, var = _moments(AlphaDropout(rate), standard)
        assert mean == pytest.approx(0.0, abs=6e-3) and var == pytest.approx(1.0, rel=0.01)
        kept = torch.isclose(y, AlphaDropout(rate)._a * standard + AlphaDropout(rate)._b)
        assert float(kept.float().mean()) == pytest.approx(1 - rate, abs=5e-3)


def test_alpha_dropout_of_keras_matches_ours_in_distribution():
    """Keras's own AlphaDropout in training (its noise) has the values ours has: the kept inputs scaled by a,
    shifted by b, and one dropped value a * alpha' + b."""
    x = rng.normal(size=(200, 300)).astype(np.float32)
    theirs = run_keras(keras.layers.AlphaDropout(0.25, seed=1), x, training=True)
    ours = AlphaDropout(0.25)
    torch.manual_seed(1)
    got = ours.train()(torch.from_numpy(x)).numpy()
    dropped_value = ours._a * ours._alpha_p + ours._b
    for y in (theirs, got):
        kept = np.isclose(y, ours._a * x + ours._b, atol=1e-6)
        assert np.allclose(y[~kept], dropped_value, atol=1e-6)
        assert kept.mean() == pytest.approx(0.75, abs=0.01)


def test_alpha_dropout_noise_shape_drops_whole_channels():
    layer = AlphaDropout(0.5, noise_shape=(None, 3, 1))
    y = layer.train()(torch.randn(8, 3, 10))
    for row in y:
        for channel in row:
            kept = torch.isclose(channel, torch.full_like(channel, layer._a * layer._alpha_p + layer._b))
            assert kept.all() or not kept.any()


def gaussian_dropout_net():
    torch.manual_seed(0)
    return Sequential([Dense(16, activation="relu"), GaussianDropout(0.3), GaussianNoise(0.1), Dense(2)],
                      input_shape=(4,))


def test_mc_sampling_spreads_with_gaussian_dropout_and_prediction_does_not():
    model = gaussian_dropout_net()
    x = rng.normal(size=(20, 4)).astype(np.float32)
    plain = model.predict(x, verbose=0)
    np.testing.assert_array_equal(plain, model.predict(x, verbose=0))  # no noise outside sampling
    mc = model.predict(x, verbose=0, mc_samples=30, kind="values", return_samples=True)
    assert (mc.std > 1e-3).all()
    assert np.abs(mc.mean - plain).max() < 3 * mc.std.max()
    again = model.predict(x, verbose=0, mc_samples=30, kind="values", return_samples=True)
    np.testing.assert_array_equal(mc.samples, again.samples)  # seeded draws
    np.testing.assert_array_equal(plain, model.predict(x, verbose=0))  # MC left nothing switched on


def test_mc_draws_do_not_depend_on_grouping():
    model = gaussian_dropout_net()
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    whole = sample_outputs(model, [x], 8, seed=3)
    one_by_one = torch.cat([sample_outputs(model, [x[i:i + 1]], 8, seed=3) for i in range(6)], dim=1)
    torch.testing.assert_close(whole, one_by_one)
    first_three = sample_outputs(model, [x], 3, seed=3)
    torch.testing.assert_close(first_three, whole[:3])


def test_alpha_dropout_alone_lets_mc_sample():
    torch.manual_seed(0)
    model = Sequential([Dense(8, activation="selu"), AlphaDropout(0.2), Dense(1)], input_shape=(3,))
    draws = sample_outputs(model, [torch.randn(5, 3)], 10, seed=0)
    assert float(draws.std(0).min()) > 0


def test_json_round_trip():
    model = PlainSequential([GaussianNoise(0.2, seed=3), GaussianDropout(0.1),
                             AlphaDropout(0.3, noise_shape=[None, 1])], input_shape=(5,))
    config = json.loads(json.dumps(model.get_config()))
    again = PlainSequential.from_config(config)
    assert again.get_config() == config
    assert again[2].noise_shape_arg == (None, 1) and again[0].seed == 3


@pytest.mark.parametrize("make, message", [
    (lambda: GaussianNoise(-1), "GaussianNoise stddev must be a non-negative number, got -1"),
    (lambda: GaussianDropout(1.0), "GaussianDropout rate must be a number in [0, 1), got 1.0"),
    (lambda: AlphaDropout("half"), "AlphaDropout rate must be a number in [0, 1), got 'half'"),
    (lambda: AlphaDropout(0.1, noise_shape="all"), "AlphaDropout noise_shape must be a list of positive sizes"),
    (lambda: AlphaDropout(0.1, noise_shape=(None, 2))(torch.zeros(2, 3)), "noise_shape [None, 2] does not broadcast"),
])
def test_bad_arguments_give_one_line(make, message):
    with pytest.raises(DeepfieldError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)
