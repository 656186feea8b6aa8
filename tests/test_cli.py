"""The command line. The tests marked "a real process" start ``python -m deepfield.cli.app`` as a shell
does, so the exit code and stderr are what a user sees; the others call the same ``main`` in this process
(``cli``, tests/conftest.py: the same parsing, messages and exit codes, without a second start of torch)."""
import json
import subprocess
import sys

import pytest


def deepfield(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """``deepfield ARGS`` in a real process (in ``cwd``)."""
    return subprocess.run([sys.executable, "-m", "deepfield.cli.app", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def here(cli, tmp_path, monkeypatch):
    """``cli`` in the test's ``tmp_path``: relative paths are read and written there."""
    monkeypatch.chdir(tmp_path)
    return cli


def test_summary_of_the_lecture_cnn_preset():  # a real process: the exit code and stdout a shell sees
    run = deepfield("summary", "lecture-cnn", "--input-shape", "1x64x64")
    assert run.returncode == 0, run.stderr
    assert "Total params: 2,330,209" in run.stdout
    assert "(None, 128, 16, 16)" in run.stdout


def test_summary_lists_the_layers_inside_blocks_by_dotted_name(here):
    run = here("summary", "resnet", "--input-shape", "1x16x16", "--layers")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "  stage2_block1 (ResidualBlock)" in lines and "    stage2_block1.conv2 (Conv2D)" in lines
    assert "      stage2_block1.projection.conv2d (Conv2D)" in lines and "conv2d.activation" not in run.stdout


def test_trace_json_reproduces_the_course_example(here):
    run = here("trace", "--json")
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
def test_bad_input_is_one_line_and_nonzero_exit(args, message, here):
    run = here(*args)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_summary_reads_a_saved_model_folder(tmp_path, here):
    from deepfield.models import zoo
    from deepfield.models.serialization import save_model

    save_model(zoo.get("mlp", input_shape=(10,)).build(), tmp_path / "run")
    run = here("summary", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    assert "Total params: 4,929" in run.stdout  # (10*64+64) + (64*64+64) + (64+1)


def test_tampered_weights_in_a_saved_model_are_one_line(tmp_path):  # a real process: exit 2, one line, no traceback
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


def test_inspect_images_reads_a_galaxy10_layout(tmp_path, here):
    import h5py
    import numpy as np

    with h5py.File(tmp_path / "g10.h5", "w") as f:
        f["images"] = np.zeros((5, 8, 8, 3), np.uint8) + 7
        f["ans"] = np.array([0, 1, 1, 2, 1])
    run = here("inspect", "images", str(tmp_path / "g10.h5"), "--bands", "g,r,z", "--channels", "last",
               "--labels", "ans")
    assert run.returncode == 0, run.stderr
    assert "5 objects, stamps 3 x 8 x 8" in run.stdout
    assert "0: 1, 1: 3, 2: 1" in run.stdout


def test_inspect_cutout_cubes_in_the_primary_hdu_with_a_label_table(tmp_path, here):
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS

    (tmp_path / "cutouts").mkdir()
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval, wcs.wcs.crpix = ["RA---TAN", "DEC--TAN"], [150.0, 2.0], [4.5, 4.5]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    for k in range(4):
        fits.PrimaryHDU(np.ones((3, 8, 8), np.float32), header=wcs.to_header()).writeto(tmp_path / f"cutouts/{k}.fits")
    (tmp_path / "labels.csv").write_text("objid,class,mag_r\n0,spiral,20\n1,elliptical,21\n2,spiral,22\n"
                                         "3,spiral,23\n")
    run = here("inspect", "images", "cutouts", "--bands", "g,r,i")
    assert run.returncode == 2 and "has no HDU 'g' for band 'g'; its HDUs are 0:PRIMARY" in run.stderr
    run = here("inspect", "images", "cutouts", "--bands", "g,r,i", "--hdus", "0", "--labels", "labels.csv",
               "--id-column", "objid", "--label-column", "class")
    assert run.returncode == 0, run.stderr
    assert "4 objects, stamps 3 x 8 x 8 (C, H, W), bands g, r, i" in run.stdout
    assert "labels: elliptical: 1, spiral: 3" in run.stdout
    assert "positions (ra, dec): 4 of 4 objects, ra 150.00000 .. 150.00000" in run.stdout
    assert "columns (predict --keep): objid, class, mag_r, ra, dec" in run.stdout


def test_inspect_reports_bad_files_in_one_line(tmp_path, here):
    (tmp_path / "cut.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 100)  # truncated header
    run = here("inspect", "images", str(tmp_path / "cut.fits"), "--bands", "g")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "cut.fits" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    (tmp_path / "bad.csv").write_text("id,mag_g,mag_err_g\n1,22.1,0.1\n2,22.x,0.1\n")
    run = here("inspect", "catalogue", str(tmp_path / "bad.csv"), "--bands", "g")
    assert run.returncode == 2
    assert "bad.csv: column 'mag_g' line 3 (data row 2) is '22.x', not a number" in run.stderr


def test_inspect_catalogue_reports_the_cleaning(tmp_path, here):
    (tmp_path / "cat.csv").write_text("id,mag_g,mag_err_g,mag_r,mag_err_r\n"
                                      "1,22.1,0.05,21.5,0.04\n2,99,99,23.0,0.2\n3,nan,nan,22.2,0.1\n")
    run = here("inspect", "catalogue", str(tmp_path / "cat.csv"), "--bands", "g,r")
    assert run.returncode == 0, run.stderr
    assert "sentinel 99 in mag_g: 1 values" in run.stdout
    assert "rows with any non-detection: 2" in run.stdout


def test_simulate_then_inspect_round_trip(tmp_path, here):
    import h5py
    import numpy as np

    for name in ("a.h5", "b.h5"):
        run = here("simulate", "morphology", "--n", "10", "--size", "24", "--seed", "3",
                   "--out", str(tmp_path / name), "--workers", "1")
        assert run.returncode == 0, run.stderr
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a["images"].shape == (10, 3, 24, 24)
        assert np.array_equal(a["images"][:], b["images"][:])  # same seed, same file
    run = here("inspect", "images", str(tmp_path / "a.h5"), "--labels", "labels")
    assert "10 objects, stamps 3 x 24 x 24" in run.stdout and "spheroid: 2" in run.stdout


def test_simulate_bad_options_are_one_line(tmp_path, here):
    run = here("simulate", "quality", "--n", "4", "--out", str(tmp_path / "q.h5"), "--artefacts", "ufo")
    assert run.returncode == 2 and "unknown artefact 'ufo'" in run.stderr
    run = here("simulate", "morphology", "--n", "4", "--out", str(tmp_path / "m.h5"), "--snr", "20")
    assert run.returncode == 2 and "--snr '20' must be two numbers" in run.stderr
    assert not (tmp_path / "m.h5").exists() and not (tmp_path / "q.h5").exists()


def test_inspect_skip_bad_lists_the_bad_objects_beside_the_output(tmp_path, here):
    import numpy as np

    stamps = np.ones((4, 1, 6, 6), np.float32)
    stamps[2] = np.nan  # an all-NaN stamp
    np.save(tmp_path / "stamps.npy", stamps)
    run = here("inspect", "images", str(tmp_path / "stamps.npy"), "--bands", "r", "--channels", "first",
               "--skip-bad")
    assert run.returncode == 0, run.stderr
    assert "3 objects" in run.stdout and "1 objects skipped" in run.stdout
    lines = (tmp_path / "stamps.skipped.csv").read_text().splitlines()
    assert lines[0] == "# 1 object skipped" and "[2]" in lines[2]
    run = here("inspect", "images", str(tmp_path / "stamps.npy"), "--bands", "r", "--channels", "first")
    assert run.returncode == 2 and "stamps.npy[2]" in run.stderr


def test_train_evaluate_predict_report_from_the_command_line(tmp_path, here):
    from deepfield.data.simulate import simulate_morphology

    simulate_morphology(90, tmp_path / "sky.h5", size=16, seed=4, workers=1, progress=False)
    (tmp_path / "run.yaml").write_text(
        "task: morphology\nout: run\ndata: {path: sky.h5}\n"
        "model: {preset: resnet, options: {filters: [8], blocks: 1}}\ntraining: {epochs: 3}\n")
    run = here("train", "run.yaml", "training.epochs=1")
    assert run.returncode == 0, run.stderr
    assert "report: run/report.html" in run.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert f"test accuracy {metrics['accuracy']:.4g} (one deterministic pass)" in run.stdout  # the report's headline
    assert len((tmp_path / "run" / "history.csv").read_text().strip().splitlines()) == 2  # override took
    run = here("evaluate", "run", "--data", "sky.h5")
    assert run.returncode == 0 and "accuracy:" in run.stdout
    assert (tmp_path / "run" / "evaluations" / "sky" / "metrics.json").is_file()
    run = here("predict", "run", "sky.h5", "--out", "preds.csv")
    assert run.returncode == 0, run.stderr
    lines = (tmp_path / "preds.csv").read_text().splitlines()
    assert lines[0].startswith("id,predicted,p_spheroid") and len(lines) == 91
    # the same stamps channels last, bands i, r, g, no names; a table lends a column to keep
    import h5py
    import numpy as np
    from astropy.table import Table

    with h5py.File(tmp_path / "sky.h5") as f, h5py.File(tmp_path / "last.h5", "w") as g:
        g["images"] = np.moveaxis(f["images"][:][:, ::-1], 1, -1)
    Table({"id": np.arange(90), "name": [f"gal{k}" for k in range(90)]}).write(tmp_path / "names.csv")
    run = here("predict", "run", "last.h5", "--out", "last.fits", "--channels", "last", "--bands", "i,r,g",
               "--labels", "names.csv", "--id-column", "id", "--keep", "name")
    assert run.returncode == 0, run.stderr
    first, other = Table.read(tmp_path / "preds.csv", format="ascii.csv"), Table.read(tmp_path / "last.fits")
    assert other.colnames[:3] == ["id", "name", "predicted"] and other["name"][89] == "gal89"
    np.testing.assert_allclose(other["p_disk"], first["p_disk"], rtol=1e-5, atol=1e-6)
    run = here("predict", "run", "last.h5", "--out", "x.csv", "--keep", "name")
    assert run.returncode == 2 and "say channels='first'" in run.stderr
    run = here("features", "run", "sky.h5", "--out", "features.csv")
    assert run.returncode == 0, run.stderr
    header = (tmp_path / "features.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["id", "f0"] and len(header) == 1 + 8  # resnet with 8 filters: pooled width 8
    run = here("features", "run", "sky.h5", "--out", "f.csv", "--layer", "nope")
    assert run.returncode == 2 and "has no layer 'nope'" in run.stderr
    (tmp_path / "run" / "report.html").unlink()
    assert here("report", "run").returncode == 0
    assert (tmp_path / "run" / "report.html").stat().st_size > 10_000


def test_train_with_a_bad_config_is_one_line(tmp_path):  # a real process: the config is read before torch loads
    (tmp_path / "bad.yaml").write_text("task: morphology\ndata: {path: sky.h5}\ntraining: {epochs: ten}\n")
    run = deepfield("train", "bad.yaml", cwd=tmp_path)
    assert run.returncode == 2
    assert "bad.yaml: training.epochs: Input should be a valid integer" in run.stderr
    run = deepfield("train", "bad.yaml", "training.epochs=2", cwd=tmp_path)
    assert run.returncode == 2 and "sky.h5: no such file or folder" in run.stderr


def test_simulate_spectra_then_the_preset_summary_for_their_shape(tmp_path, here):
    run = here("simulate", "spectra", "--n", "12", "--length", "64", "--seed", "1", "--out", str(tmp_path / "s.h5"))
    assert run.returncode == 0, run.stderr
    assert "12 spectra of 64 pixels" in run.stdout and (tmp_path / "s.h5").is_file()
    run = here("summary", "spectra1d", "--input-shape", "1x400")
    assert run.returncode == 0, run.stderr
    assert "input (None, 1, 400)" in run.stdout and "Total params: 84,657" in run.stdout
    run = here("simulate", "spectra", "--n", "4", "--out", str(tmp_path / "t.h5"), "--snr", "30,3")
    assert run.returncode == 2 and "--snr" in run.stderr and len(run.stderr.strip().splitlines()) == 1
