"""``make demo``: the course's backpropagation example, then a real small training run.

1. One training step of the course's 2-2-2 sigmoid network, neuron by neuron.
2. A small CNN learns spheroids from disks on toy galaxy stamps: its summary,
   the training history, the held-out accuracy, and the model saved as a run
   folder (model.json + weights.safetensors) and read back.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from deepfield.analysis.trace import course_example, render_trace, run_trace
from deepfield.data.toy import CLASSES, toy_galaxies
from deepfield.models import Activation, Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from deepfield.training import Sequential


def demo_cnn(input_shape: tuple[int, int, int]) -> Sequential:
    """Two conv blocks and a dense head: a small cousin of the course's galaxy CNN."""
    return Sequential([
        Conv2D(16, 3, padding="same", kernel_initializer="he_normal", input_shape=input_shape),
        Activation("relu"),
        MaxPooling2D(2),
        Conv2D(32, 3, padding="same", kernel_initializer="he_normal"),
        Activation("relu"),
        MaxPooling2D(2),
        Flatten(),
        Dropout(0.25),
        Dense(32, activation="relu", kernel_initializer="he_normal"),
        Dense(1, activation="sigmoid"),
    ], name="demo_cnn")


def run_demo(out: Path, epochs: int = 8, seed: int = 0, console: Console | None = None) -> dict[str, float]:
    """Run both parts, write the run folder ``out``; returns the held-out metrics."""
    console = console or Console()
    console.rule("[bold]1. Backpropagation, neuron by neuron (the course's worked example)")
    render_trace(run_trace(course_example()), console)

    console.rule("[bold]2. A CNN learns galaxy morphology on toy stamps")
    torch.manual_seed(seed)
    images, labels = toy_galaxies(1200, size=32, seed=seed)
    n_test = 200
    x_train, y_train = images[:-n_test], labels[:-n_test].astype(np.float32)
    x_test, y_test = images[-n_test:], labels[-n_test:].astype(np.float32)
    console.print(f"{len(x_train)} training and {n_test} test stamps of 1×32×32 pixels, classes {CLASSES}")

    model = demo_cnn(images.shape[1:])
    model.summary()
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, validation_split=0.2, seed=seed)
    scores = model.evaluate(x_test, y_test, batch_size=200)
    console.print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))

    model.save(out)
    reloaded = Sequential.load(out)
    same = np.array_equal(reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0))
    console.print(f"model saved to {out}/ (model.json + weights.safetensors); reloaded predictions identical: {same}")
    return scores
