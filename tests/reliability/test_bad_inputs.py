"""Bad inputs that crashed (issue 15, crashes): each is one clear line naming the file and the key,
from Python (DeepfieldError) and from the command line (exit 2, no traceback), and is refused before
any work is done."""
import subprocess
import sys

import numpy as np
import pytest

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import load_config
from probes import refused

GOOD = "task: morphology\ndata: {path: sky.h5}\n"


# -- config files -----------------------------------------------------------------------------

def test_a_binary_config_file_is_not_a_text_file(tmp_path, cli):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" + bytes(range(256)))
    with pytest.raises(DeepfieldError, match=r"run.yaml: not a text file \(UTF-8\)"):
        load_config(path)
    refused(cli("train", path), "run.yaml: not a text file (UTF-8)")


def test_a_latin1_config_file_is_not_a_text_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(GOOD.encode() + "# galaxies of Göttingen\n".encode("latin-1"))
    with pytest.raises(DeepfieldError, match=r"run.yaml: not a text file \(UTF-8\)"):
        load_config(path)


def bomb(levels=9, width=10):
    """Billion laughs: ``levels`` lists of ``width`` aliases of the one before, 10**9 strings expanded."""
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return lines, f"*a{levels}"


def test_a_yaml_bomb_is_refused_without_expanding_it(tmp_path, cli):
    lines, last = bomb()
    path = tmp_path / "run.yaml"
    path.write_text("x-anchors:\n" + "\n".join("  " + line for line in lines)
                    + f"\ntask: morphology\ndata: {{path: sky.h5}}\ntraining: {{batch_size: {last}}}\n")
    with pytest.raises(DeepfieldError, match=r"run.yaml: .*aliases.* expand"):
        load_config(path)
    refused(cli("train", path), "run.yaml", "aliases")


def test_a_yaml_bomb_in_an_override_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(GOOD)
    lines, last = bomb()
    text = "{" + ", ".join(line.replace(": ", ": ", 1) for line in lines) + f", z: {last}}}"
    with pytest.raises(DeepfieldError, match="aliases"):
        load_config(path, [f"training.batch_size={text}"])


def test_a_long_bad_value_is_shown_shortened(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(GOOD + f"training: {{batch_size: [{', '.join(['123456789'] * 10_000)}]}}\n")
    with pytest.raises(DeepfieldError, match="training.batch_size") as error:
        load_config(path)
    assert len(str(error.value)) < 400, str(error.value)


def test_a_folder_given_as_the_config_file(tmp_path, cli):
    with pytest.raises(DeepfieldError, match="is a folder, not a config file"):
        load_config(tmp_path)
    refused(cli("train", tmp_path), str(tmp_path), "is a folder")


def test_a_config_file_of_control_characters_is_not_a_text_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(b"task: morphology\n\x00\x01\x02\x03")
    with pytest.raises(DeepfieldError, match=r"run.yaml: not a text file \(UTF-8\)"):
        load_config(path)


# -- demo ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("epochs", [-1, 0])
def test_demo_refuses_bad_epochs_before_simulating_the_sky(tmp_path, cli, monkeypatch, epochs):
    import deepfield.tasks.demo as demo

    def never(*args, **kwargs):
        raise AssertionError("simulated the sky before checking the config")
    monkeypatch.setattr(demo, "simulate_morphology", never)
    refused(cli("demo", "--epochs", epochs, "--out", tmp_path / "d"), "training.epochs", f"got {epochs}")
    assert not (tmp_path / "d").exists()


# -- catalogues ---------------------------------------------------------------------------------

def photoz_csv(path, n=40, bad_row=16):
    """A CSV catalogue of ``n`` objects, ``'n/a'`` as mag_r of the data row ``bad_row`` (0-based),
    which is line ``bad_row + 2`` of the file (after the header)."""
    rng = np.random.default_rng(0)
    lines = ["id,redshift,mag_g,mag_err_g,mag_r,mag_err_r,mag_i,mag_err_i"]
    for i in range(n):
        mags = 22 + rng.normal(size=3)
        cells = [str(i), f"{0.1 + 0.02 * i:.3f}"] + [f"{m:.3f},0.05" for m in mags]
        if i == bad_row:
            cells[3] = "n/a,0.05"
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_csv_reader_names_the_row_of_the_file(tmp_path):
    from deepfield.tasks.photoz import PhotoZ
    path = photoz_csv(tmp_path / "cat.csv")
    config = load_config(None, document={"task": "photoz", "data": {"path": str(path), "bands": "g,r,i",
                                                                     "target": "redshift"},
                                          "model": {"preset": "mlp"}})
    with pytest.raises(DeepfieldError, match=r"cat.csv: column 'mag_r' .*line 18 \(data row 17\).* 'n/a'"):
        PhotoZ().prepare(config)


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    """A small tabular run (one epoch), trained through the command line's code."""
    from deepfield.tasks.run import train
    folder = tmp_path_factory.mktemp("tabular")
    rng = np.random.default_rng(0)
    rows = [f"{i},{a:.3f},{b:.3f},{a - b:.3f}" for i, (a, b) in enumerate(rng.normal(size=(60, 2)))]
    (folder / "tab.csv").write_text("id,a,b,z\n" + "\n".join(rows) + "\n")
    return train(load_config(None, document={"task": "tabular", "out": str(folder / "run"), "seed": 0,
                                             "data": {"path": str(folder / "tab.csv"), "target": "z"},
                                             "model": {"preset": "mlp"}, "training": {"epochs": 1}}), verbose=0)


def test_predicting_a_catalogue_of_no_rows(tabular_run, tmp_path, cli):
    (tmp_path / "empty.csv").write_text("id,a,b,z\n")
    refused(cli("predict", tabular_run, tmp_path / "empty.csv", "--out", tmp_path / "p.csv"),
            "empty.csv: no objects to read (0 rows")
    assert not (tmp_path / "p.csv").exists()


def test_a_folder_where_train_expects_a_catalogue_file(tmp_path, cli):
    (tmp_path / "cat.csv").mkdir()
    (tmp_path / "run.yaml").write_text(f"task: tabular\ndata: {{path: {tmp_path / 'cat.csv'}, target: z}}\n"
                                       "model: {preset: mlp}\n")
    refused(cli("train", tmp_path / "run.yaml", f"out={tmp_path / 'run'}"),
            "cat.csv: is a folder, not a catalogue file")


# -- errors name the file and the key -------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -3, "half"])
def test_a_bad_batch_size_names_the_file_and_the_key(tmp_path, cli, value):
    path = tmp_path / "run.yaml"
    path.write_text(GOOD)
    with pytest.raises(DeepfieldError, match=r"run.yaml: training.batch_size: .*(greater than|'full')"):
        load_config(path, [f"training.batch_size={value}"])


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    from deepfield.data.simulate import simulate_morphology
    return simulate_morphology(40, tmp_path_factory.mktemp("sky") / "sky.h5", size=16, seed=1, workers=1,
                               progress=False)


def test_labels_out_of_range_name_the_file_and_the_key(sky, tmp_path):
    import shutil

    import h5py

    from deepfield.tasks.pipeline import TASKS
    bad = tmp_path / "validation.h5"
    shutil.copy(sky, bad)
    with h5py.File(bad, "r+") as f:
        f["labels"][3] = 7
    config = load_config(None, document={"task": "morphology", "data": {"path": str(sky), "validation": str(bad)}})
    with pytest.raises(DeepfieldError, match=r"validation.h5: data.labels: .*7.* 5 classes"):
        TASKS["morphology"]().prepare(config)


@pytest.mark.parametrize("preset, message", [("euclid-quality", "at least 22×22 pixels"),
                                             ("dieleman", "at least 45×45 pixels")])
def test_a_stamp_size_the_preset_cannot_take_names_the_file_and_the_key(sky, tmp_path, cli, preset, message):
    path = tmp_path / "run.yaml"
    path.write_text(f"task: morphology\ndata: {{path: {sky}}}\nmodel: {{preset: {preset}}}\ntraining: {{epochs: 1}}\n")
    refused(cli("train", path, f"out={tmp_path / 'run'}"), "sky.h5", "16×16", "model.preset", message)


# -- full disks, file-size limits, read-only folders ------------------------------------------------

def limited(size):
    """``preexec_fn`` of a process whose files may not grow past ``size`` bytes (``ulimit -f``)."""
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_file_size_limit_stops_train_with_one_line_naming_the_file(tabular_run, tmp_path):
    config = tabular_run / "config.yaml"
    run = subprocess.run([sys.executable, "-m", "deepfield.cli.app", "train", config, f"out={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=300, preexec_fn=limited(2000))
    refused(run, str(tmp_path / "run"), ".safetensors: the file-size limit (2000 bytes) stopped the write")
    assert not list((tmp_path / "run").rglob(".*.tmp"))


def test_a_file_size_limit_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    code = ("import sys; from deepfield.atomic import write_bytes; from deepfield.errors import DeepfieldError\n"
            "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            f"try: write_bytes({str(target)!r}, bytes(10_000))\n"
            "except DeepfieldError as e: print(e); sys.exit(2)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         preexec_fn=limited(1000))
    assert run.returncode == 2, run.stderr
    assert f"{target}: the file-size limit (1000 bytes) stopped the write after 1000 bytes" in run.stdout
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_a_full_disk_names_the_file_and_the_free_space(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from deepfield import atomic

    def full(self, data):
        self.open("wb").write(data[:300])
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda folder: shutil_usage(total=10**9, used=10**9, free=0))
    with pytest.raises(DeepfieldError, match=r"history.json: the disk is full \(0 bytes free there; it needs at "
                                             r"least 300 bytes more\)"):
        atomic.write_bytes(tmp_path / "history.json", bytes(1000))
    assert list(tmp_path.iterdir()) == []


def shutil_usage(**sizes):
    import shutil
    return shutil._ntuple_diskusage(**sizes)


def test_a_read_only_run_folder_names_the_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    from deepfield import atomic

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # as root, a chmod'ed folder would not refuse
    with pytest.raises(DeepfieldError, match=r"run/config.yaml: cannot write here \(read-only file system\)"):
        atomic.write_text(tmp_path / "run" / "config.yaml", "task: tabular\n")


def test_a_yaml_bomb_in_a_run_config_is_refused_by_the_report(tabular_run, tmp_path):
    import shutil

    from deepfield.report.html import write_report
    run = tmp_path / "run"
    shutil.copytree(tabular_run, run)
    lines, last = bomb()
    (run / "config.yaml").write_text("\n".join(lines) + f"\nname: {last}\n")
    with pytest.raises(DeepfieldError, match=r"config.yaml: its aliases"):
        write_report(run)
