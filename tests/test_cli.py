"""The command line: real subprocesses, so exit codes and stderr are what a user sees."""
import json
import subprocess
import sys

import pytest


def deepfield(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepfield.cli.app", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_summary_of_the_lecture_cnn_preset():
    run = deepfield("summary", "lecture-cnn", "--input-shape", "1x64x64")
    assert run.returncode == 0, run.stderr
    assert "Total params: 2,330,209" in run.stdout
    assert "(None, 128, 16, 16)" in run.stdout


def test_trace_json_reproduces_the_course_example():
    run = deepfield("trace", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert round(result["loss"]["total"], 6) == 0.298371
    assert round(result["gradients"]["w5"], 6) == 0.082167
    updated = [round(result["updated"][f"w{i}"], 6) for i in (5, 6, 7, 8)]
    assert updated == [0.358916, 0.408666, 0.511301, 0.561370]
    assert round(result["updated"]["w1"], 6) == 0.149781


@pytest.mark.parametrize(
    "args, message",
    [
        (("summary", "lecture-cnn", "--input-shape", "1x64xx"), "--input-shape '1x64xx' must be positive integers"),
        (("summary", "resnet9000"), "unknown model preset 'resnet9000'"),
        (("trace", "--spec", "missing.json"), "missing.json"),
    ],
)
def test_bad_input_is_one_line_and_nonzero_exit(args, message, tmp_path):
    run = deepfield(*args, cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_summary_reads_a_saved_model_folder(tmp_path):
    from deepfield.models import zoo
    from deepfield.models.serialization import save_model

    save_model(zoo.get("mlp", input_shape=(10,)).build(), tmp_path / "run")
    run = deepfield("summary", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    assert "Total params: 4,929" in run.stdout  # (10*64+64) + (64*64+64) + (64+1)


def test_tampered_weights_in_a_saved_model_are_one_line(tmp_path):
    from deepfield.models import zoo
    from deepfield.models.serialization import save_model

    save_model(zoo.get("mlp", input_shape=(10,)).build(), tmp_path / "run")
    weights = tmp_path / "run" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x55
    weights.write_bytes(bytes(data))
    run = deepfield("summary", str(tmp_path / "run"))
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "do not match the checksum" in run.stderr
