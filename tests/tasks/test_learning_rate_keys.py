"""``training.learning_rate`` and ``training.optimizer.learning_rate`` are one value: either alone works,
both given is an error naming the two keys (config validation, and exit 2 from the command line)."""
import pytest

from deepfield.errors import DeepfieldError
from deepfield.tasks.base import make_optimizer
from deepfield.tasks.config import load_config

BASE = "task: tabular\ndata: {path: x.csv}\n"


def config(tmp_path, training):
    path = tmp_path / "run.yaml"
    path.write_text(BASE + f"training: {training}\n")
    return path


@pytest.mark.parametrize("training, rate", [
    ("{learning_rate: 0.02}", 0.02),
    ("{optimizer: {name: adam, learning_rate: 0.03}}", 0.03),
    ("{optimizer: {name: sgd, lr: 0.04}}", 0.04),  # the course's Keras 2 spelling
    ("{optimizer: adam, learning_rate: 0.05}", 0.05),
])
def test_either_spelling_alone_sets_the_rate(tmp_path, training, rate):
    assert make_optimizer(load_config(config(tmp_path, training))).learning_rate == rate


@pytest.mark.parametrize("inner", ["learning_rate", "lr"])
def test_both_spellings_are_an_error_naming_the_two_keys(tmp_path, inner):
    path = config(tmp_path, f"{{learning_rate: 0.01, optimizer: {{name: adam, {inner}: 0.1}}}}")
    with pytest.raises(DeepfieldError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f"{path}: training: ")
    assert "training.learning_rate" in message and f"training.optimizer.{inner}" in message
    assert "\n" not in message


def test_both_spellings_exit_2_from_the_command_line(tmp_path, cli):
    path = config(tmp_path, "{learning_rate: 0.01, optimizer: {name: adam, learning_rate: 0.1}}")
    done = cli("train", path)  # refused before anything is read or written
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "training.learning_rate" in lines[0] and "training.optimizer.learning_rate" in lines[0]
