"""Augmentation of training batches: true symmetries, seeded per batch, training only, shapes checked; targets
moved with their inputs (image targets, integer label maps), value-changing entries refused then."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deepfield.errors import DeepfieldError
from deepfield.models import Dense, Dropout, Flatten
from deepfield.training import Engine, Sequential
from deepfield.training.augment import BatchAugment


def images(n: int = 32, channels: int = 2, size: int = 5) -> torch.Tensor:
    """(n, channels, size, size) with every pixel value distinct, so each sample's symmetry can be read off."""
    return torch.randperm(n * channels * size * size, generator=torch.Generator().manual_seed(0)).float().view(
        n, channels, size, size)


def symmetries(sample: np.ndarray) -> list[np.ndarray]:
    """The eight images of the square ``sample`` (C, H, W) under D4, from numpy: 4 rotations, then flipped."""
    turns = [np.rot90(sample, k, axes=(-2, -1)) for k in range(4)]
    return turns + [np.flip(t, axis=-1) for t in turns]


def which_symmetry(out: np.ndarray, sample: np.ndarray) -> int:
    """The index in :func:`symmetries` that ``out`` is, or -1."""
    return next((k for k, s in enumerate(symmetries(sample)) if np.array_equal(out, s)), -1)


def test_dihedral_gives_each_sample_a_true_rotation_or_flip_drawn_uniformly():
    x = images(400, size=4)
    out = BatchAugment(["dihedral"])(x, seed=3, epoch=0, step=0)
    assert out.shape == x.shape and out.dtype == x.dtype
    found = [which_symmetry(o, s) for o, s in zip(out.numpy(), x.numpy())]
    assert -1 not in found  # every output is one of the 8 symmetries of its own input
    counts = np.bincount(found, minlength=8)
    assert counts.min() > 25 and counts.max() < 80  # each of the 8 near 400 / 8 = 50 times


def test_same_seed_epoch_and_step_give_the_same_batch_and_others_differ():
    x = images()
    augment = BatchAugment(["dihedral", {"name": "shift", "max_shift": 1}, {"name": "gaussian_noise", "sigma": 0.1}])
    first = augment(x, seed=5, epoch=2, step=7)
    assert torch.equal(first, BatchAugment(augment.get_config())(x, seed=5, epoch=2, step=7))
    assert torch.equal(first, augment(x, seed=5, epoch=2, step=7))
    for other in [dict(seed=6, epoch=2, step=7), dict(seed=5, epoch=3, step=7), dict(seed=5, epoch=2, step=8)]:
        assert not torch.equal(first, augment(x, **other)), other


def test_a_process_holding_part_of_a_global_batch_augments_its_rows_as_one_process_would():
    x = images()
    augment = BatchAugment(["dihedral", {"name": "shift", "max_shift": 1}, {"name": "gaussian_noise", "sigma": 0.1}])
    whole = augment(x, seed=5, epoch=2, step=7)
    half = len(x) // 2
    assert torch.equal(augment(x[:half], seed=5, epoch=2, step=7, part=(0, len(x))), whole[:half])
    assert torch.equal(augment(x[half:], seed=5, epoch=2, step=7, part=(half, len(x))), whole[half:])
    # a rank without samples runs a stand-in copy of the last row
    assert torch.equal(augment(x[-1:], seed=5, epoch=2, step=7, part=(len(x), len(x))), whole[-1:])


def test_augmenting_does_not_draw_from_the_global_rng():
    torch.manual_seed(0)
    BatchAugment(["dihedral", {"name": "gaussian_noise", "sigma": 1.0}])(images(), seed=0, epoch=0, step=0)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


class Recorder(nn.Module):
    """A linear classifier that keeps every input it sees, apart in training and in eval mode."""

    def __init__(self, features: int):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        self.train_inputs: list[torch.Tensor] = []
        self.eval_inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (self.train_inputs if self.training else self.eval_inputs).append(x.detach().clone())
        return self.linear(x.flatten(1))


def test_fit_augments_training_batches_only():
    x, x_val = images(24), images(40)[24:]
    y, y_val = torch.zeros(24, 1), torch.zeros(16, 1)
    model = Recorder(2 * 5 * 5)
    engine = Engine(model, loss="mse", optimizer="sgd", device="cpu", channels_last=False)
    engine.fit(x, y, batch_size=8, epochs=2, shuffle=False, validation_data=(x_val, y_val), seed=1, verbose=0,
               augment=["dihedral"])
    trained = torch.cat(model.train_inputs)
    assert len(trained) == 2 * 24
    found = [which_symmetry(o, s) for o, s in zip(trained.numpy(), torch.cat([x, x]).numpy())]
    assert -1 not in found and len(set(found)) > 4  # symmetries of the batch's own samples, not all the same
    model.eval_inputs.clear()
    engine.evaluate(x_val, y_val, verbose=0)
    engine.predict(x_val, verbose=0)
    whole = [seen for seen in model.eval_inputs if len(seen) == 16]  # (the others: one-sample shape probes)
    assert len(whole) == 2 and all(torch.equal(seen, x_val) for seen in whole)


def test_validation_inside_fit_is_not_augmented():
    x_val = images(16)
    model = Recorder(2 * 5 * 5)
    Engine(model, loss="mse", optimizer="sgd", device="cpu").fit(
        images(8), torch.zeros(8, 1), batch_size=16, epochs=2, validation_data=(x_val, torch.zeros(16, 1)),
        seed=0, verbose=0, augment=["dihedral", {"name": "gaussian_noise", "sigma": 0.5}])
    validation = [seen for seen in model.eval_inputs if len(seen) == 16]
    assert len(validation) == 2 and all(torch.equal(seen, x_val) for seen in validation)


def dropout_images_model() -> Sequential:
    net = Sequential([Flatten(), Dense(16, activation="relu"), Dropout(0.3), Dense(1)], input_shape=(2, 5, 5))
    return net.compile(optimizer="adam", loss="mse", device="cpu")


def test_the_same_seed_trains_the_same_weights_and_zero_noise_changes_nothing():
    x, y = images(24) / 100, torch.linspace(-1, 1, 24)[:, None]

    def weights(augment):
        model = dropout_images_model()
        torch.manual_seed(0)
        model.fit(x, y, batch_size=8, epochs=2, seed=4, verbose=0, augment=augment)
        return list(model.state_dict().values())

    augment = ["dihedral", {"name": "gaussian_noise", "sigma": 0.2}]
    plain, noisy = weights(None), weights(augment)
    assert all(torch.equal(a, b) for a, b in zip(noisy, weights(augment)))
    assert not all(torch.equal(a, b) for a, b in zip(plain, noisy))
    # no noise: the weights of no augmentation, so the dropout stream was left alone
    assert all(torch.equal(a, b) for a, b in zip(plain, weights([{"name": "gaussian_noise", "sigma": 0.0}])))


def test_spectra_take_shifts_along_the_wavelength_axis_and_noise():
    x = torch.arange(6 * 2 * 20, dtype=torch.float32).view(6, 2, 20)
    out = BatchAugment([{"name": "shift", "max_shift": 3}])(x, seed=0, epoch=0, step=0)
    assert out.shape == x.shape
    shifts = []
    for o, s in zip(out, x):
        shift = next(d for d in range(-3, 4) if torch.equal(o, s.roll(d, dims=-1)))  # both bands by the same d
        shifts.append(shift)
    assert len(set(shifts)) > 1
    padded = BatchAugment([{"name": "shift", "max_shift": 3, "mode": "pad"}])(x, seed=0, epoch=0, step=0)
    assert (padded != 0).sum(dim=-1).min() >= 20 - 3 - 1  # moved along L only, never blanked by a vertical move
    noisy = BatchAugment([{"name": "gaussian_noise", "sigma": [0.1, 1.0]}])(x, seed=0, epoch=0, step=0)
    assert (noisy - x)[:, 0].std() < 0.3 < 0.7 < (noisy - x)[:, 1].std()  # one sigma per band


@pytest.mark.parametrize("specs, shape, message", [
    (["dihedral"], (2, 20), "augment: dihedral turns and flips images (C, H, W); the samples are spectra of "
                            "shape (2, 20): use shift and gaussian_noise"),
    (["dihedral"], (2, 6, 4), "augment: dihedral: random rotations need square images, got 6x4"),
    ([{"name": "gaussian_noise", "sigma": [1, 2, 3]}], (2, 5, 5), "augment: gaussian_noise: sigma has 3 bands, "
                                                                   "the image has 2"),
    (["shift"], (7,), "augment: the samples have shape (7,), rows of features: augmentation applies to images "
                      "(C, H, W) and spectra (C, L)"),
])
def test_augmentations_that_do_not_fit_the_data_are_refused_before_training(specs, shape, message):
    model = Sequential([Flatten(), Dense(1)], input_shape=shape).compile(optimizer="sgd", loss="mse", device="cpu")
    with pytest.raises(DeepfieldError) as error:
        model.fit(torch.zeros(4, *shape), torch.zeros(4, 1), epochs=1, verbose=0, augment=specs)
    assert str(error.value) == message
    assert model.engine.optimizer.iterations == 0


@pytest.mark.parametrize("specs, message", [
    (["flip"], "training.augment: entry 1: unknown transform 'flip'; expected one of:"),
    (["dihedral", {"name": "shift", "max": 2}], "training.augment: entry 2: shift: unexpected argument 'max'; "
                                                "expected: max_shift, mode"),
    (["asinh"], "training.augment: entry 1: asinh is not a random augmentation (it would change the training "
                "batches only); augmentations: dihedral, gaussian_noise, shift"),
    ([{"sigma": 1}], "training.augment: entry 1: a transform config is a mapping with a 'name' key"),
    ([{"name": "gaussian_noise"}], "training.augment: entry 1: gaussian_noise: missing argument 'sigma'"),
])
def test_bad_entries_name_the_option_and_the_entry(specs, message):
    with pytest.raises(DeepfieldError) as error:
        BatchAugment(specs, name="training.augment")
    assert str(error.value).startswith(message)


MOVING = ["dihedral", {"name": "shift", "max_shift": 2, "mode": "pad"}, "RandomFlip", "RandomRotation90"]


def test_an_image_target_takes_the_same_symmetry_as_its_input_sample_by_sample():
    x = images(200, size=4)
    y = x[:, :1] * 10 + 1  # a pixel-wise function of x: it still holds after the same move, no other
    augment = BatchAugment(["dihedral"], targets=True)
    out_x, out_y = augment.pair(x, y, seed=3, epoch=1, step=2)
    assert out_y.shape == y.shape and out_y.dtype == y.dtype
    torch.testing.assert_close(out_y, out_x[:, :1] * 10 + 1, rtol=0, atol=0)
    found = [which_symmetry(o, s) for o, s in zip(out_x.numpy(), x.numpy())]
    assert -1 not in found and len(set(found)) == 8
    assert torch.equal(out_x, augment(x, seed=3, epoch=1, step=2))  # x's draws, as without targets
    again = BatchAugment(augment.get_config(), targets=True).pair(x, y, seed=3, epoch=1, step=2)
    assert torch.equal(again[0], out_x) and torch.equal(again[1], out_y)
    assert not torch.equal(augment.pair(x, y, seed=3, epoch=1, step=3)[1], out_y)


def test_a_label_map_stays_integer_and_moves_with_its_stamp_under_every_pixel_moving_entry():
    x = images(64, size=6)
    labels = (x[:, 0] % 5).long()  # (N, H, W) classes read off the stamp's first band
    out_x, out_y = BatchAugment(MOVING, targets=True).pair(x, labels, seed=0, epoch=0, step=0)
    assert out_y.shape == labels.shape and out_y.dtype == torch.int64
    inside = out_x[:, 0] != 0  # the shift's padding is 0 in every channel: background in the map
    assert torch.equal(out_y[inside], (out_x[:, 0][inside] % 5).long()) and torch.all(out_y[~inside] == 0)
    assert not torch.equal(out_y, labels)


def test_a_process_holding_part_of_a_global_batch_moves_its_pairs_as_one_process_would():
    x = images(32)
    y = -x
    augment = BatchAugment(MOVING[:2], targets=True)
    whole_x, whole_y = augment.pair(x, y, seed=5, epoch=2, step=7)
    part_x, part_y = augment.pair(x[16:], y[16:], seed=5, epoch=2, step=7, part=(16, 32))
    assert torch.equal(part_x, whole_x[16:]) and torch.equal(part_y, whole_y[16:])


@pytest.mark.parametrize("entries, message", [
    (["dihedral", {"name": "gaussian_noise", "sigma": 0.1}],
     "training.augment: entry 2: gaussian_noise changes pixel values, not only their places, and the targets move "
     "with the inputs here (it would corrupt them); take dihedral, shift, RandomFlip, RandomRotation90"),
    ([{"name": "RandomZoom", "height_factor": 0.1}], "training.augment: entry 1: RandomZoom changes pixel values"),
])
def test_entries_that_change_values_are_refused_with_targets_in_one_line(entries, message):
    with pytest.raises(DeepfieldError) as error:
        BatchAugment(entries, name="training.augment", targets=True)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    BatchAugment(entries, name="training.augment")  # taken when only the inputs move


def test_targets_of_another_size_are_refused():
    with pytest.raises(DeepfieldError, match=r"^augment: the targets \(4, 1\) are not images or label maps"):
        BatchAugment(["dihedral"], targets=True).pair(images(4), torch.zeros(4, 1), seed=0, epoch=0, step=0)


class Identity(nn.Module):
    """x times one trainable scale (1 at the start): the loss sees the augmented input beside its target."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def test_fit_moves_the_targets_with_the_inputs_when_asked():
    x = images(24)
    y = x[:, :1] * 2
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def loss(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:  # Keras's order
        seen.append((pred.detach().clone(), target.clone()))
        return ((pred[:, :1] * 2 - target) ** 2).mean() * 0  # no update: the scale stays 1

    def fit(targets: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        seen.clear()
        Engine(Identity(), loss=loss, optimizer="sgd", device="cpu", channels_last=False).fit(
            x, y, batch_size=8, epochs=1, seed=1, verbose=0, augment=BatchAugment(["dihedral"], targets=targets))
        return list(seen)

    assert all(torch.equal(pred[:, :1] * 2, target) for pred, target in fit(True))
    assert not all(torch.equal(pred[:, :1] * 2, target) for pred, target in fit(False))
    with pytest.raises(DeepfieldError, match="^augment: the targets move with the inputs, which sample_weight"):
        Engine(Identity(), loss="mse", optimizer="sgd", device="cpu").fit(
            x, y, epochs=1, verbose=0, sample_weight=torch.ones(24), augment=BatchAugment(["dihedral"], targets=True))
