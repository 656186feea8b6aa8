"""The README's Python examples run as written (on small random data; the run example in tests/tasks/test_load_run.py)."""
import numpy as np


def test_readme_python_example_runs(tmp_path, monkeypatch, readme_python):
    block = readme_python("model = df.Sequential()")
    block = block.replace("epochs=20", "epochs=2")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 1, 64, 64)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.float32)
    namespace = {"x": x, "y": y, "x_test": x[:16], "y_test": y[:16], "x_new": x[:4]}
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["p"].shape == (4, 1)
    assert set(namespace["history"].history) >= {"loss", "accuracy", "auc", "val_loss"}
    assert (tmp_path / "runs" / "my-cnn" / "weights.safetensors").is_file()


def test_readme_functional_example_runs(tmp_path, monkeypatch, readme_python):
    block = readme_python("df.Model([stamps, colours], [spiral, redshift])")
    rng = np.random.default_rng(0)
    namespace = {"x_stamps": rng.normal(size=(20, 3, 64, 64)).astype(np.float32),
                 "x_colours": rng.normal(size=(20, 4)).astype(np.float32),
                 "y_spiral": rng.integers(0, 2, (20, 1)).astype(np.float32),
                 "z": rng.random((20, 1)).astype(np.float32)}
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), namespace)
    assert {"loss", "spiral_loss", "redshift_loss", "spiral_accuracy", "val_loss"} <= set(namespace["history"].history)
    assert namespace["p_spiral"].shape == namespace["p_z"].shape == (20, 1)
    assert (tmp_path / "runs" / "two-heads" / "model.json").is_file()
