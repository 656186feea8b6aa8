"""Train a small dropout MLP with BackupAndRestore; run as a subprocess by test_resume.py.

    python resume_script.py --backup DIR --out WEIGHTS.safetensors --csv HISTORY.csv [--delay SECONDS]

``--delay`` sleeps after every batch so that the test can SIGKILL the run mid-epoch.
Prints ``RESUMED <epoch> <batch>`` when it continued from a backup.
"""
from __future__ import annotations

import argparse
import time

import torch
from safetensors.torch import save_file

from deepfield.models import Dense, Dropout
from deepfield.training import BackupAndRestore, Callback, CSVLogger, Sequential

SAMPLES, BATCH, EPOCHS, SAVE_EVERY = 112, 16, 6, 3  # 7 batches per epoch: backups fall mid-epoch


class Slow(Callback):
    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.delay)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backup", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    gen = torch.Generator().manual_seed(123)
    x = torch.randn(SAMPLES, 6, generator=gen)
    y = x[:, :2].sum(dim=1, keepdim=True) - x[:, 2:3]
    model = Sequential([Dense(32, activation="relu"), Dropout(0.3), Dense(32, activation="relu"), Dropout(0.3),
                        Dense(1)], input_shape=(6,))
    model.compile(optimizer="adam", loss="mse", device="cpu")
    backup = BackupAndRestore(args.backup, save_freq=SAVE_EVERY)
    callbacks = [CSVLogger(args.csv), backup, *([Slow(args.delay)] if args.delay else [])]
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, seed=7, verbose=0, callbacks=callbacks)
    if backup.restored_from is not None:
        print("RESUMED", *backup.restored_from, flush=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)


if __name__ == "__main__":
    main()
