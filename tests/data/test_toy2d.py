"""Toy 2-D sets: shapes, balance, seeds, the geometry each promises; the CSV reader."""
import numpy as np
import pytest

from deepfield.data.toy2d import NAMES, make_toy, read_toy_csv
from deepfield.errors import DeepfieldError


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [200, 201])
def test_shapes_types_and_balanced_labels(name, n):
    x, y = make_toy(name, n=n, seed=1)
    assert x.shape == (n, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert y.shape == (n,) and y.dtype == np.int64
    counts = np.bincount(y)
    assert len(counts) == 2 and abs(counts[0] - counts[1]) <= 1


@pytest.mark.parametrize("name", NAMES)
def test_the_seed_decides_the_set(name):
    a, b, c = make_toy(name, seed=4), make_toy(name, seed=4), make_toy(name, seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_xor_labels_follow_the_quadrant_rule_even_with_wide_blobs():
    for noise in (0.35, 1.0):
        x, y = make_toy("xor", n=500, noise=noise, seed=2)
        np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] < 0).astype(np.int64))
    x, _ = make_toy("xor", n=400, noise=0.0)
    assert np.allclose(np.abs(x), 1.0)  # noiseless: the four blob centres (±1, ±1)


def test_noiseless_circles_and_spirals_lie_on_their_curves():
    x, y = make_toy("circles", n=300, noise=0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(r[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(r[y == 1], 0.5, atol=1e-6)
    x, y = make_toy("spirals", n=300, noise=0.0)
    r = np.hypot(x[:, 0], x[:, 1])
    # on the arm: angle = 3.5 pi r (+ pi for class 1), modulo a full turn
    expected = 3.5 * np.pi * r + np.pi * y
    off = np.angle(np.exp(1j * (np.arctan2(x[:, 1], x[:, 0]) - expected)))
    np.testing.assert_allclose(off, 0.0, atol=1e-5)


def test_bad_names_and_sizes_are_named():
    with pytest.raises(DeepfieldError, match="unknown toy data set 'donut'.*moons"):
        make_toy("donut")
    with pytest.raises(DeepfieldError, match="n must be an integer >= 4"):
        make_toy("moons", n=2)
    with pytest.raises(DeepfieldError, match="noise"):
        make_toy("moons", noise=-1)


def test_the_csv_reader_round_trips(tmp_path):
    x, y = make_toy("moons", n=50, seed=3)
    path = tmp_path / "points.csv"
    rows = ["label,x2,x1"] + [f"{label},{b!r},{a!r}" for (a, b), label in zip(x.tolist(), y.tolist())]
    path.write_text("\n".join(rows) + "\n")
    x2, y2 = read_toy_csv(path)
    np.testing.assert_array_equal(x2, x)  # x1, x2 found by name, whatever their order
    np.testing.assert_array_equal(y2, y)
    assert x2.dtype == np.float32 and y2.dtype == np.int64


def test_without_x1_x2_the_first_two_other_columns_are_the_features(tmp_path):
    path = tmp_path / "colours.csv"
    path.write_text("g_r,r_i,z,label\n0.5,0.25,9,1.0\n1.5,-0.5,9,0\n")
    x, y = read_toy_csv(path)
    np.testing.assert_array_equal(x, [[0.5, 0.25], [1.5, -0.5]])
    np.testing.assert_array_equal(y, [1, 0])


def test_bad_files_get_one_line_errors_naming_file_and_column(tmp_path):
    path = tmp_path / "bad.csv"
    with pytest.raises(DeepfieldError, match="no such file"):
        read_toy_csv(path)
    path.write_text("x1,x2,class\n1,2,0\n")
    with pytest.raises(DeepfieldError, match=r"bad\.csv: no column 'label' \(columns: x1, x2, class\)"):
        read_toy_csv(path)
    path.write_text("x1,label\n1,0\n")
    with pytest.raises(DeepfieldError, match="two feature columns"):
        read_toy_csv(path)
    path.write_text("x1,x2,label\n1,2,0\n1,oops,1\n")
    with pytest.raises(DeepfieldError, match=r"bad\.csv: row 3, column 'x2': 'oops' is not a number"):
        read_toy_csv(path)
    path.write_text("x1,x2,label\n1,2,0.5\n")
    with pytest.raises(DeepfieldError, match="column 'label': labels must be integers"):
        read_toy_csv(path)
    path.write_text("x1,x2,label\n")
    with pytest.raises(DeepfieldError, match="no rows"):
        read_toy_csv(path)
