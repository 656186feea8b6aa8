"""A saved model or run that nothing can spoil (issue 15, model files): a model.json without checksums,
edited, pointing outside its folder or holding absurd values is refused with one line naming the file
and the key, from Python (DeepfieldError) and from the command line (exit 2, no traceback)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Conv2D, Dense, Flatten
from deepfield.models.sequential import Sequential
from deepfield.models.serialization import content_digest, load_model, save_model
from deepfield.tasks.run import load_run
from probes import refused


def deepfield(*args, cwd=None):
    """The command line in its own process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "deepfield.cli.app", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def edit(folder, change, resign=False):
    """Change ``folder/model.json`` by ``change(document)``; ``resign`` recomputes its checksum
    (a deliberate edit, or a file written by another program), so the checks behind it are reached."""
    path = folder / "model.json"
    document = json.loads(path.read_text())
    change(document)
    if resign:
        document["sha256"] = content_digest(document)
    path.write_text(json.dumps(document))


def layer(index, **values):
    return lambda d: d["config"]["layers"][index]["config"].update(values)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = Sequential([Conv2D(2, 3, input_shape=(1, 8, 8)), Flatten(), Dense(3, activation="softmax")]).build()
    save_model(model, tmp_path / "model")
    return model, tmp_path / "model"


X = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(1))


# -- checksums --------------------------------------------------------------------------------

def test_the_checksum_covers_the_architecture_and_the_weights_entry(saved):
    _, folder = saved
    document = json.loads((folder / "model.json").read_text())
    assert document["format_version"] == 2 and len(document["sha256"]) == 64 and len(document["weights"]["sha256"]) == 64
    body = {k: v for k, v in document.items() if k != "sha256"}
    import hashlib
    assert document["sha256"] == hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.mark.parametrize("drop", [["sha256"], ["weights.sha256", "sha256"]])
def test_a_model_json_without_checksum_is_refused_unless_trusted(saved, drop):
    model, folder = saved
    edit(folder, lambda d: [d["weights"].pop(k.split(".")[1]) if "." in k else d.pop(k) for k in drop])
    with pytest.raises(DeepfieldError, match=r"model.json: has no checksum, so a damaged or edited file would load "
                                             r"unnoticed; if you trust this file, load it with trust=True \(on the "
                                             r"command line: --trust-unchecked\)"):
        load_model(folder)
    trusted = load_model(folder, trust=True)
    assert torch.equal(trusted(X), model(X))


def test_flipped_weights_are_refused_even_when_model_json_is_trusted(saved):
    model, folder = saved
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-40:] = bytes(b ^ 0x80 for b in data[-40:])  # sign bits of the last weights
    weights.write_bytes(bytes(data))
    with pytest.raises(DeepfieldError, match="weights.safetensors: weights do not match the checksum recorded in model.json"):
        load_model(folder)
    edit(folder, lambda d: d.pop("sha256"))  # trusting model.json does not skip the weights' own checksum
    with pytest.raises(DeepfieldError, match="weights do not match the checksum"):
        load_model(folder, trust=True)


@pytest.mark.parametrize("change", [layer(2, activation="relu"), layer(2, units=4), layer(0, strides=2),
                                    lambda d: d["weights"].update(sha256="0" * 64)])
def test_an_edited_architecture_is_refused_whatever_the_trust(saved, change):
    _, folder = saved
    edit(folder, change)
    for trust in (False, True):
        with pytest.raises(DeepfieldError, match=r"model.json: does not match its checksum \(the architecture or the "
                                                 r"weights entry was changed after it was saved\)"):
            load_model(folder, trust=trust)


def test_a_model_saved_by_deepfield_0_1_still_loads_and_its_weights_are_checked(saved):
    """Format 1 checksummed the weights only: such files load without trust, the weights still verified."""
    model, folder = saved
    edit(folder, lambda d: (d.pop("sha256"), d.update(format_version=1)))
    assert torch.equal(load_model(folder)(X), model(X))
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DeepfieldError, match="weights do not match the checksum"):
        load_model(folder)
    edit(folder, lambda d: d["weights"].pop("sha256"))
    with pytest.raises(DeepfieldError, match="has no checksum"):
        load_model(folder)


# -- the weights file stays inside the folder -----------------------------------------------------

@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.safetensors", "sub/../../outside.safetensors", "", "."])
def test_weights_file_outside_the_folder_is_refused(saved, name):
    _, folder = saved
    shutil.copy(folder / "weights.safetensors", folder.parent / "outside.safetensors")
    edit(folder, lambda d: d["weights"].update(file=name), resign=True)
    with pytest.raises(DeepfieldError, match=r"model.json: \"weights\": \{\"file\": .*\} must name a file inside"):
        load_model(folder)


def test_weights_reached_by_a_link_leading_out_are_refused(saved):
    _, folder = saved
    shutil.move(folder / "weights.safetensors", folder.parent / "outside.safetensors")
    os.symlink(folder.parent / "outside.safetensors", folder / "weights.safetensors")
    with pytest.raises(DeepfieldError, match="must name a file inside"):
        load_model(folder)


def test_weights_in_a_subfolder_of_the_model_are_allowed(saved):
    model, folder = saved
    (folder / "w").mkdir()
    shutil.move(folder / "weights.safetensors", folder / "w" / "weights.safetensors")
    edit(folder, lambda d: d["weights"].update(file="w/weights.safetensors"), resign=True)
    assert torch.equal(load_model(folder)(X), model(X))


# -- malformed values: one line naming the file and the key ----------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(weights="x"), "\"weights\" must be {\"file\": NAME, \"sha256\": HEX}, got 'x'"),
    (lambda d: d.update(weights={"file": 3}), "\"weights\" must be {\"file\": NAME"),
    (lambda d: d.update(config=None), "\"config\" must be an object (the architecture), got None"),
    (lambda d: d.update(format_version="abc"), "\"format_version\" must be a positive integer, got 'abc'"),
    (lambda d: d.update(format_version=True), "\"format_version\" must be a positive integer, got True"),
    (lambda d: d.update(format_version=7), "written by a newer deepfield (format 7)"),
    (lambda d: d.update(class_name="os.system"), "\"class_name\" must be one of Sequential, Functional, Preset, got 'os.system'"),
    (lambda d: d.update(class_name=None), "\"class_name\" must be one of Sequential, Functional, Preset, got None"),
    (lambda d: d.update(sha256=5), "\"sha256\" must be a hexadecimal string, got 5"),
])
def test_malformed_document_values_are_named(saved, change, message):
    _, folder = saved
    edit(folder, change)
    with pytest.raises(DeepfieldError) as error:
        load_model(folder, trust=True)
    assert str(error.value) == f"{folder / 'model.json'}: {message}" or message in str(error.value)
    assert str(error.value).startswith(f"{folder / 'model.json'}: ")


@pytest.mark.parametrize("change, message", [
    (layer(0, filters=1e30), "Conv2D filters must be an integer from 1 to 2147483648, got 1e+30"),
    (layer(0, filters="a"), "Conv2D filters must be an integer from 1 to 2147483648, got 'a'"),
    (layer(0, filters=2.5), "Conv2D filters must be an integer from 1 to 2147483648, got 2.5"),
    (layer(0, filters=True), "Conv2D filters must be an integer from 1 to 2147483648, got True"),
    (layer(2, units=-3), "Dense units must be an integer from 1 to 2147483648, got -3"),
    (layer(0, kernel_size=0), "Conv2D kernel/pool size must be positive, got (0, 0)"),
    (layer(0, kernel_size="3"), "Conv2D kernel_size must be an integer"),
    (layer(0, strides=[1, 1e300]), "Conv2D strides must be an integer from"),
    (layer(2, units=10**9), "the network would hold 73,000,000,020 parameters ('dense' alone 73,000,000,000)"),
    (lambda d: d["config"].update(input_shape=[1, 4096, 4096], layers=[
        {"class_name": "Conv2D", "config": {"filters": 100_000, "kernel_size": 1}}]),
     "layer 'conv2d' would compute 1,677,721,600,000 numbers for one sample"),
    (lambda d: d["config"].update(input_shape=[1, 10**6, 10**6]), "input_shape [1, 1000000, 1000000] holds "
                                                                    "1,000,000,000,000 numbers per sample"),
    (lambda d: d["config"].update(input_shape="abc"), "input_shape entry must be an integer from 1 to 2147483648, got 'a'"),
    (lambda d: d["config"]["layers"].__setitem__(0, {"class_name": "Foo", "config": {}}), "unknown layer 'Foo'"),
    (lambda d: d["config"]["layers"].__setitem__(1, "Flatten"), "\"config\" does not describe a network"),
    (layer(2, bogus=1), "layer Dense: bad config"),
    (lambda d: d["config"].update(layers=None), "model config has no 'layers' list"),
])
def test_absurd_or_wrong_layer_values_are_refused_before_allocating(saved, change, message):
    _, folder = saved
    edit(folder, change, resign=True)
    with pytest.raises(DeepfieldError) as error:
        load_model(folder)
    assert str(error.value).startswith(f"{folder / 'model.json'}: ") and message in str(error.value), str(error.value)


# -- the command line ----------------------------------------------------------------------------

def test_summary_of_spoiled_model_files_is_one_line_and_exit_2(saved, cli):
    _, folder = saved
    pristine = json.loads((folder / "model.json").read_text())
    probes = [
        (lambda d: d.pop("sha256"), False, "has no checksum"),
        (layer(2, activation="relu"), False, "does not match its checksum"),
        (lambda d: d["weights"].update(file="/etc/passwd"), False, "must name a file inside"),
        (lambda d: d.update(weights="x"), False, "\"weights\" must be"),
        (lambda d: d.update(config=None), False, "\"config\" must be an object"),
        (lambda d: d.update(format_version="abc"), False, "\"format_version\" must be a positive integer"),
        (layer(0, filters=1e30), True, "Conv2D filters must be an integer"),
    ]
    for change, resign, message in probes:
        (folder / "model.json").write_text(json.dumps(pristine))
        edit(folder, change, resign)
        refused(cli("summary", folder), message)
    refused(deepfield("summary", folder), "Conv2D filters must be an integer")  # and in a process of its own
    (folder / "model.json").write_text(json.dumps(pristine))
    edit(folder, lambda d: d.pop("sha256"))
    run = cli("summary", folder, "--trust-unchecked")
    assert run.returncode == 0 and "Total params: 239" in run.stdout, run.stderr



def test_a_run_without_checksum_predicts_only_when_trusted(tiny_run, tmp_path, cli):
    run, sky = tiny_run  # the session's run (tests/conftest.py), copied before any edit
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    edit(copy, lambda d: d.pop("sha256"))
    with pytest.raises(DeepfieldError, match="has no checksum"):
        load_run(copy)
    refused(cli("predict", copy, sky, "--out", tmp_path / "p.csv"), f"{copy / 'model.json'}: has no checksum")
    assert not (tmp_path / "p.csv").exists()
    ok = cli("predict", copy, sky, "--out", tmp_path / "p.csv", "--trust-unchecked")
    assert ok.returncode == 0, ok.stderr
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 41
    assert np.allclose(load_run(copy, trust=True).predict(sky)["p_spheroid"], load_run(run).predict(sky)["p_spheroid"])


def test_a_run_whose_weights_file_points_at_its_data_is_refused(tiny_run, tmp_path, cli):
    run, sky = tiny_run  # the session's run (tests/conftest.py), copied before any edit
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.copy(sky, tmp_path / "sky.h5")
    edit(copy, lambda d: d["weights"].update(file="../sky.h5"), resign=True)
    for command in (["predict", copy, sky, "--out", tmp_path / "p.csv"], ["evaluate", copy],
                    ["features", copy, sky, "--out", tmp_path / "f.csv"], ["explain", copy, "--out", tmp_path / "x"]):
        refused(cli(*command), "\"weights\": {\"file\": '../sky.h5'} must name a file inside")
    assert not any((tmp_path / name).exists() for name in ("p.csv", "f.csv", "x"))
