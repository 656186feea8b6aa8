"""The README's fine-tuning example runs as written and trains the dense head only."""
import numpy as np
import torch

from deepfield.layers import Conv2D, Dense, Flatten
from deepfield.training import Sequential


def test_the_fine_tuning_example_freezes_the_convolutional_part(tmp_path, monkeypatch, readme_python):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    Sequential([Conv2D(4, 3, input_shape=(1, 16, 16)), Flatten(), Dense(1, activation="sigmoid")]).build().save(
        "runs/my-cnn")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 16, 16)).astype(np.float32)
    namespace = {"x_survey": x, "y_survey": (x.mean(axis=(1, 2, 3)) > 0).astype(np.float32)}
    saved = Sequential.load("runs/my-cnn")
    exec(compile(readme_python("layer.trainable = False"), "README.md", "exec"), namespace)
    model = namespace["model"]
    torch.testing.assert_close(model.conv2d.weight, saved.conv2d.weight, rtol=0, atol=0)
    assert not torch.equal(model.dense.weight, saved.dense.weight)
    assert set(namespace["history"].history) >= {"loss", "auc", "val_loss"}
