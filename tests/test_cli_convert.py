"""``deepfield convert``: a Keras file to a deepfield model folder and back, one line and exit 2 on a bad file."""
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
L = keras.layers

from deepfield.training import Sequential  # noqa: E402


def small_cnn():
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((10, 10, 2)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
                              L.Flatten(), L.Dense(3)])
    for weight in model.weights:
        weight.assign(rng.normal(size=tuple(weight.shape)).astype(np.float32))
    return model


def test_convert_writes_a_model_folder_with_equal_outputs_and_back(cli, tmp_path):
    theirs = small_cnn()
    theirs.save(tmp_path / "cnn.keras")
    done = cli("convert", tmp_path / "cnn.keras", tmp_path / "cnn")
    assert done.returncode == 0, done.stderr
    assert "Sequential of 4 layers, input (2, 10, 10) channels first" in done.stdout
    ours = Sequential.load(tmp_path / "cnn")
    x = np.random.default_rng(1).normal(size=(4, 10, 10, 2)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(np.moveaxis(x, -1, 1)), keras.ops.convert_to_numpy(theirs(x)),
                               atol=1e-5, rtol=1e-5)

    done = cli("convert", tmp_path / "cnn", tmp_path / "back.keras")
    assert done.returncode == 0, done.stderr
    back = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(back(x)), keras.ops.convert_to_numpy(theirs(x)),
                               atol=1e-5, rtol=1e-5)


def test_convert_writes_a_functional_model_folder(cli, tmp_path):
    from deepfield.training import Functional

    image, table = keras.Input((6, 6, 1), name="image"), keras.Input((2,), name="table")
    joined = L.Concatenate()([L.Flatten()(L.Conv2D(2, 3)(image)), table])
    theirs = keras.Model([image, table], L.Dense(1)(joined))
    theirs.save(tmp_path / "two.keras")
    done = cli("convert", tmp_path / "two.keras", tmp_path / "two")
    assert done.returncode == 0 and "df.Functional.load" not in done.stderr, done.stderr
    assert "deepfield.Functional.load" in done.stdout
    ours = Functional.load(tmp_path / "two")
    x = np.random.default_rng(1).normal(size=(3, 6, 6, 1)).astype(np.float32)
    t = np.random.default_rng(2).normal(size=(3, 2)).astype(np.float32)
    ours.eval()
    with torch.no_grad():
        got = ours(torch.from_numpy(np.moveaxis(x, -1, 1).copy()), torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs([x, t])), atol=1e-5, rtol=1e-5)


def test_convert_refuses_a_bad_file_and_never_replaces_what_exists(cli, tmp_path):
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 truncated")
    done = cli("convert", tmp_path / "bad.keras", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "bad.keras: not a readable .keras archive" in done.stderr
    assert not (tmp_path / "out").exists()

    small_cnn().save(tmp_path / "cnn.keras")
    assert cli("convert", tmp_path / "cnn.keras", tmp_path / "cnn").returncode == 0
    before = (tmp_path / "cnn" / "weights.safetensors").read_bytes()
    done = cli("convert", tmp_path / "cnn.keras", tmp_path / "cnn")
    assert done.returncode == 2 and "holds a saved model already; pass --overwrite" in done.stderr
    assert (tmp_path / "cnn" / "weights.safetensors").read_bytes() == before
    done = cli("convert", tmp_path / "cnn.keras", tmp_path / "cnn.keras")
    assert done.returncode == 2 and "this is an input of the command" in done.stderr
    done = cli("convert", tmp_path / "cnn", tmp_path / "cnn.keras")
    assert done.returncode == 2 and "this file exists; pass --overwrite" in done.stderr

    run = tmp_path / "run"  # a run folder: convert writes nothing into it, even with --overwrite
    run.mkdir()
    (run / "config.yaml").write_text("task: morphology\n")
    (run / "metrics.json").write_text("{}")
    done = cli("convert", tmp_path / "cnn.keras", run, "--overwrite")
    assert done.returncode == 2 and "inside the run folder" in done.stderr
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.json"]
