"""The playground's folders: figures, animations and summary.json, from Python and the command line (``cli``:
its ``main`` in this process, tests/conftest.py)."""
import json

from PIL import Image

from deepfield.report.html import write_report
from deepfield.tasks.playground import optimizers_playground


def test_optimizers_playground_writes_paths_animation_and_summary(tmp_path):
    summary = optimizers_playground("quadratic", tmp_path, ["sgd", "adam", "newton"], steps=10, start=(-1.0, 2.0),
                                    animation=".gif")
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"paths.png", "paths.gif", "losses.png"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"title": "Optimisers on quadratic",
                                                                  **json.loads(json.dumps(summary))}
    write_report(tmp_path)  # the report sits above the tasks: the command line asks for it (title from metrics.json)
    html = (tmp_path / "report.html").read_text()
    assert "Optimiser paths on the loss surface" in html and "<h1>Optimisers on quadratic</h1>" in html
    assert "Test part" not in html and "<caption>Summary</caption>" in html  # a playground has no test part
    assert summary["start"] == [-1.0, 2.0] and set(summary["optimizers"]) == {"sgd", "adam", "newton"}
    assert summary["optimizers"]["newton"]["steps_to_tolerance"] == 1  # a quadratic: one Newton step
    assert summary["optimizers"]["newton"]["end"] == [1.0, 0.5]
    assert Image.open(tmp_path / "figures" / "paths.gif").n_frames == 11  # the start, then one frame per step


def test_the_command_line_prints_the_table_and_names_bad_input(tmp_path, cli):
    base = ["playground", "optimizers"]
    done = cli(*base, "--surface", "quadratic", "--optimizers", "sgd,newton", "--lr", "0.1", "--steps", "5",
               "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "steps to tolerance" in done.stdout and "newton" in done.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["optimizers"]["sgd"]["learning_rate"] == 0.1
    bad = cli(*base, "--surface", "nosuch", "--out", tmp_path / "x")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nosuch" in bad.stderr


def test_learn_sweep_and_depth_folders(tmp_path):
    from deepfield.tasks.playground import depth_playground, learn_playground, sweep_playground, toy_data

    x, y = toy_data("xor", n=120, seed=1)
    learned = learn_playground(x, y, tmp_path / "learn", animation=".gif", epochs=20, frames=4, hidden=(8,))
    assert Image.open(tmp_path / "learn" / "figures" / "boundary.gif").n_frames == 4
    assert learned["frame_epochs"][0] == 0 and len(learned["frame_accuracy"]) == 4
    swept = sweep_playground(x, y, tmp_path / "sweep", learning_rates=[0.1, 1000.0], initializers=["glorot_uniform"],
                             batch_sizes=["full"], steps=20)
    assert [run["diverged"] for run in swept["runs"]] == [False, True]
    assert (tmp_path / "sweep" / "figures" / "sweep.png").is_file()
    deep = depth_playground(tmp_path / "depth", variants=["sigmoid", "relu+he"], depth=6, epochs=2)
    ratios = {name: row["first_to_last"] for name, row in deep["variants"].items()}
    assert ratios["sigmoid"] < 0.1 * ratios["relu+he"]  # the vanishing gradient, and its cure
    assert "Vanishing gradients" in write_report(tmp_path / "depth").read_text()


def test_toy_data_names_what_it_takes(tmp_path):
    import pytest

    from deepfield.errors import DeepfieldError
    from deepfield.tasks.playground import toy_data

    with pytest.raises(DeepfieldError, match="choose moons, circles, spirals, xor or a .csv"):
        toy_data("blobs")


def test_the_readme_spirals_example_does_what_the_readme_says(tmp_path, cli):
    """The README's `playground learn` spirals command, as written (fewer frames, its own folder): 100 %
    training accuracy; the same network with the default glorot_uniform stalls near 65 %."""
    import re
    import shlex
    from pathlib import Path

    from deepfield.analysis.learning.playground import learn_2d
    from deepfield.tasks.playground import toy_data

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = re.search(r"^deepfield playground learn --data spirals .*$", readme, re.M).group(0)
    assert "ends at 100 % training accuracy" in readme and "stalls at about 65 %" in readme
    args = shlex.split(line)[1:] + ["--frames", "2", "--out", str(tmp_path)]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert "training accuracy 1.000" in done.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["final_accuracy"] == 1.0
    x, y = toy_data("spirals", seed=0)
    glorot = learn_2d(x, y, hidden=(16, 16), activation="tanh", epochs=300, frames=2, grid=10)
    assert 0.6 < glorot.frame_accuracy[-1] < 0.7


def test_the_readme_depth_claims_hold_at_the_default_seed():
    """README, playground depth: sigmoid's first-to-last gradient ratio is a few millionths; He
    initialisation or batch normalisation keeps it within a factor of 3."""
    from deepfield.analysis.learning.depth import depth_study
    from deepfield.data.toy2d import make_toy
    from deepfield.tasks.playground import DEPTH_POINTS

    x, y = make_toy("moons", n=DEPTH_POINTS, seed=0)  # the playground's default data
    ratios = {name: run.first_to_last for name, run in depth_study(x, y, depth=10, seed=0).runs.items()}
    assert 1e-6 < ratios["sigmoid"] < 1e-5
    for cured in ("relu+he", "relu+he+bn", "sigmoid+bn"):
        assert 1 / 3 < ratios[cured] < 3, cured
