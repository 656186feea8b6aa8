"""A run whose loss goes NaN stops at once, keeps its finite checkpoints, saves no model and says what to try."""
import sys

import pytest
import yaml

from deepfield.cli.app import main
from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from deepfield.tasks.pipeline import best_finite_epoch, train

from probes import regression


def document(table, out, learning_rate):
    return regression(table, out, epochs=6, batch_size=16, optimizer="sgd", learning_rate=learning_rate)


def test_a_diverging_run_stops_at_the_first_nan_batch_and_saves_no_model(table, tmp_path):
    with pytest.raises(DeepfieldError) as error:
        train(load_config(None, document=document(table, tmp_path / "run", 1e6)), verbose=0)
    message = str(error.value)
    assert "training diverged at epoch 1, batch " in message and ("(loss nan)" in message or "(loss inf)" in message)
    assert "no epoch finished with a finite loss" in message and "try a smaller learning rate" in message
    run = tmp_path / "run"
    assert not (run / "weights.safetensors").exists() and not (run / "model.json").exists()
    assert not (run / "checkpoints" / "best").exists()  # a NaN epoch is no improvement
    history = run / "history.csv"
    assert not history.exists() or len(history.read_text().splitlines()) <= 1  # no NaN row


def test_the_message_names_the_best_finite_epoch(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,val_loss\n0,2.0,1.5\n1,1.0,0.7\n2,0.9,0.8\n3,nan,nan\n")
    assert best_finite_epoch(history) == 2
    history.write_text("epoch,loss,val_loss\n0,nan,nan\n")
    assert best_finite_epoch(history) is None


def test_the_cli_exits_2_with_one_line(table, tmp_path, capsys, monkeypatch):
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump(document(table, tmp_path / "run", 1e6)))
    monkeypatch.setattr(sys, "argv", ["deepfield", "train", str(config)])
    with pytest.raises(SystemExit) as done:
        main()
    err = capsys.readouterr().err
    assert done.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert "training diverged at epoch" in err and "Traceback" not in err
