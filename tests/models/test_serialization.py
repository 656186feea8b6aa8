"""Saving and loading models: JSON architecture + safetensors weights, and every way it can go wrong."""
import json

import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import Conv2D, Dense, Flatten
from deepfield.models.sequential import Sequential
from deepfield.models.serialization import load_model, save_model


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = Sequential([Conv2D(3, 3, input_shape=(1, 6, 6)), Flatten(), Dense(2)]).build()
    save_model(model, tmp_path / "run")
    return model, tmp_path / "run"


def test_round_trip_gives_identical_predictions(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "weights.safetensors"]
    loaded = load_model(folder)
    x = torch.randn(4, 1, 6, 6)
    assert torch.equal(model(x), loaded(x))
    doc = json.loads((folder / "model.json").read_text())
    assert [layer["class_name"] for layer in doc["config"]["layers"]] == ["Conv2D", "Flatten", "Dense"]
    assert len(doc["weights"]["sha256"]) == 64


def test_missing_weights_file(saved):
    _, folder = saved
    (folder / "weights.safetensors").unlink()
    with pytest.raises(DeepfieldError, match="weights.safetensors: weights file not found"):
        load_model(folder)


def test_tampered_weights_are_refused(saved):
    _, folder = saved
    path = folder / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(DeepfieldError, match="do not match the checksum"):
        load_model(folder)


def test_corrupt_weights_file_is_one_clear_error(saved, tmp_path):
    _, folder = saved
    doc = json.loads((folder / "model.json").read_text())
    doc["weights"].pop("sha256"), doc.pop("sha256")  # no checksums (trusted): the reader itself must notice
    (folder / "model.json").write_text(json.dumps(doc))
    (folder / "weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(DeepfieldError, match="not a readable safetensors weights file"):
        load_model(folder, trust=True)


def test_weights_of_another_model_are_refused(saved, tmp_path):
    _, folder = saved
    other = Sequential([Conv2D(5, 3, input_shape=(1, 6, 6)), Flatten(), Dense(2)]).build()
    save_model(other, tmp_path / "other")
    doc = json.loads((folder / "model.json").read_text())
    doc["weights"].pop("sha256"), doc.pop("sha256")
    (folder / "model.json").write_text(json.dumps(doc))
    (folder / "weights.safetensors").write_bytes((tmp_path / "other" / "weights.safetensors").read_bytes())
    with pytest.raises(DeepfieldError, match="weight 'conv2d.weight' has shape"):
        load_model(folder, trust=True)


def test_bad_architecture_files(saved):
    _, folder = saved
    (folder / "model.json").write_text("{not json")
    with pytest.raises(DeepfieldError, match="model.json: not valid JSON"):
        load_model(folder)
    (folder / "model.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DeepfieldError, match="not a deepfield model file"):
        load_model(folder)
    doc = {"format": "deepfield.model", "format_version": 1, "class_name": "Sequential",
           "config": {"name": "m", "input_shape": [3], "layers": [{"class_name": "Danse", "config": {}}]}}
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(DeepfieldError, match="unknown layer 'Danse'"):
        load_model(folder, trust=True)


def test_missing_folder(tmp_path):
    with pytest.raises(DeepfieldError, match="architecture file not found"):
        load_model(tmp_path / "nowhere")


# -- presets that are not a Sequential: saved as the zoo call that makes them ----------------


@pytest.fixture
def saved_preset(tmp_path):
    from deepfield.models import zoo

    torch.manual_seed(2)
    model = zoo.get("pasquet", input_shape=(2, 8, 8), n_bins=5, dense_units=6, use_ebv=True)
    save_model(model, tmp_path / "photoz")
    return model, tmp_path / "photoz"


def test_preset_round_trip_is_saved_by_name_and_arguments(saved_preset):
    model, folder = saved_preset
    doc = json.loads((folder / "model.json").read_text())
    assert doc["class_name"] == "Preset"
    assert doc["config"] == {"preset": "pasquet", "kwargs": {
        "input_shape": [2, 8, 8], "n_bins": 5, "z_min": 0.0, "z_max": 0.4, "use_ebv": True, "dense_units": 6,
        "output_activation": "softmax"}}
    loaded = load_model(folder)
    x, ebv = torch.randn(3, 2, 8, 8), torch.rand(3, 1)
    model.eval(), loaded.eval()
    assert torch.equal(model(x, ebv), loaded(x, ebv))


def test_tampered_preset_weights_are_refused(saved_preset):
    _, folder = saved_preset
    path = folder / "weights.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DeepfieldError, match="do not match the checksum"):
        load_model(folder)


def test_preset_folder_is_not_loaded_as_a_sequential(saved_preset):
    _, folder = saved_preset
    with pytest.raises(DeepfieldError, match="holds the preset 'pasquet', not a Sequential"):
        load_model(folder, Sequential)


def test_preset_architecture_errors_name_the_file(saved_preset):
    _, folder = saved_preset
    doc = json.loads((folder / "model.json").read_text())
    doc["config"]["preset"] = "pasquette"
    doc.pop("sha256")  # edited by hand: loaded only when trusted
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(DeepfieldError, match=r"model.json: unknown model preset 'pasquette'"):
        load_model(folder, trust=True)
    doc["config"] = {"preset": "pasquet", "kwargs": {"input_shape": [2, 8, 8], "n_bins": 7, "dense_units": 6,
                                                      "use_ebv": True}}
    doc["weights"].pop("sha256")
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(DeepfieldError, match=r"weight 'output.weight' has shape \(5, 6\), the model expects \(7, 6\)"):
        load_model(folder, trust=True)
