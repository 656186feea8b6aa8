"""The ``deepfield`` command line: parses, calls the API, prints. No logic of its own.

Every user-fixable problem arrives as a DeepfieldError and is printed as one
line on stderr with exit code 2; an unexpected failure prints one line too
(set DEEPFIELD_DEBUG=1 to see the traceback).

Each command imports the modules it calls in its body: ``deepfield --help`` and the light
commands do not load scikit-learn, matplotlib, GalSim and captum (about 2 s of imports).
"""
from __future__ import annotations

import contextlib

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from deepfield.cli.common import OVERWRITE, TRUST, TTA, console, parse_range, parse_shape, split_list
from deepfield.cli.convert import convert
from deepfield.cli.playground import playground_app
from deepfield.cli.reading import KEEP, reading_options
from deepfield.cli.scene import DATASET, simulate_scene_cmd
from deepfield.errors import DeepfieldError
from deepfield.outputs import check_output
from deepfield.tasks.config import EXPLAIN_METHODS, OcclusionConfig, load_config
from deepfield.tasks.processes import TORCHRUN

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="deepfield: deep learning for astronomers, on PyTorch.",
)
inspect_app = typer.Typer(no_args_is_help=True, help="Read your data as deepfield will, and report what it finds.")
app.add_typer(inspect_app, name="inspect")
app.add_typer(playground_app, name="playground")
simulate_app = typer.Typer(no_args_is_help=True, help="The built-in simulated sky (GalSim): for when you have no data.")
app.add_typer(simulate_app, name="simulate")
simulate_app.command("scene")(simulate_scene_cmd)
app.command()(convert)


N = Annotated[int, typer.Option("--n", help="number of objects")]
OUT = Annotated[Path, typer.Option("--out", help="HDF5 file to write (atomically)")]
SEED = Annotated[int, typer.Option(help="random seed: the same seed gives the same file")]
WORKERS = Annotated[Optional[int], typer.Option(help="processes (default: all cores)")]
SIZE = Annotated[int, typer.Option(help="stamp size in pixels")]
BANDS = Annotated[str, typer.Option(help="LSST bands, comma-separated")]
SNR = Annotated[str, typer.Option(help="signal-to-noise range, low,high")]




@app.command()
def summary(
    model: Annotated[str, typer.Argument(help="a preset name (e.g. lecture-cnn) or a saved model / run folder")],
    input_shape: Annotated[Optional[str], typer.Option(help="one sample's shape, channels first: 1x64x64")] = None,
    layers: Annotated[bool, typer.Option("--layers", help="also list every layer name that `explain --layer` and "
                                                           "`features --layer` take, blocks' parts by dotted name")]
    = False,
    trust: TRUST = False,
) -> None:
    """Print a model's Keras-style summary: output shapes, parameters, multiply-adds, memory."""
    from deepfield.analysis.layer_features import layer_names
    from deepfield.models import serialization, zoo
    from deepfield.models.summary import summarize

    shape = parse_shape(input_shape) if input_shape else None
    if Path(model).is_dir():
        net = serialization.load_network(model, trust=trust)  # the architecture, not predictions: no warning
    else:
        net = zoo.get(model, **({"input_shape": shape} if shape else {}))
    summarize(net, shape).print()
    if layers:
        console.print("Layers (--layer NAME):")
        for name in layer_names(net):
            console.print(f"  {'  ' * name.count('.')}{name} ({type(net.get_submodule(name)).__name__})",
                          markup=False, highlight=False)


@app.command()
def trace(
    spec: Annotated[Optional[Path], typer.Option(help="JSON file with your own small network and sample")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
) -> None:
    """One training step of a small dense network, neuron by neuron (default: the course's example)."""
    from deepfield.analysis import trace as glass_box

    chosen = glass_box.load_trace_spec(spec) if spec else glass_box.course_example()
    result = glass_box.run_trace(chosen)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        glass_box.render_trace(result, console)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="run config (YAML); see examples/")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. training.epochs=3")] = None,
    devices: Annotated[int, typer.Option(min=1, help="processes on this machine, data-parallel: one per GPU, or "
                                                     "CPU processes sharing the cores (gloo); the global batch is "
                                                     "training.batch_size, split between them")] = 1,
    nodes: Annotated[int, typer.Option(min=1, help="machines; more than 1 needs torchrun on each machine: "
                                                   + TORCHRUN.format(nodes="M", devices="N")
                                                   + " (K = 0 .. M-1, HOST0 the address of machine 0)")] = 1,
    restart: Annotated[bool, typer.Option("--restart", help="the folder (out=) holds a run of another config: "
                                                            "discard it and train again from scratch")] = False,
) -> None:
    """Train as CONFIG says and write a run folder.

    Started again with the same config, an interrupted run resumes and a finished one is left as it is;
    with more training.epochs the run continues from its last epoch; another config is refused unless
    --restart (or a new out=).

    With --devices N the training runs data-parallel in N processes with the same results
    as one (same seed, same global batch); only the first process writes the run folder.
    """
    from deepfield.tasks.processes import train_processes

    from deepfield.report.html import write_report

    out = train_processes(config, overrides or [], devices=devices, nodes=nodes, console=console, restart=restart,
                          report=write_report)
    if out is None:  # a torchrun process other than the first: it writes nothing
        return
    from deepfield.report.html import headline

    line = headline(json.loads((out / "metrics.json").read_text()))  # the report's headline, labelled alike
    if line:
        console.print(line)
    console.print(f"run folder: {out}   report: {out / 'report.html'}")


@app.command()
def baseline(
    config: Annotated[Path, typer.Argument(help="the run config a network was trained with")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value, e.g. baselines.learners=[knn]")] = None,
) -> None:
    """Classical baselines (HOG, CAS, colours + SVM, forests, kNN) on the network's exact split."""
    from deepfield.tasks.pipeline import baselines_run

    from deepfield.report.html import write_report

    out = baselines_run(load_config(config, overrides or []), console=console, report=write_report)
    rows = json.loads((out / "metrics.json").read_text())["baselines"]
    for row in rows:
        shown = {k: v for k, v in row.items() if k in ("accuracy", "macro_auc", "sigma_nmad", "fit_time_s")}
        console.print(f"{row['model']:<32} " + "  ".join(f"{k} {v:.4g}" for k, v in shown.items()
                                                        if isinstance(v, (int, float))))
    console.print(f"report: {out / 'report.html'}")


@app.command()
@reading_options
def evaluate(
    run: Annotated[Path, typer.Argument(help="a run folder written by `deepfield train`")],
    data: Annotated[Optional[Path], typer.Option(help="another labelled file, read like the training data")] = None,
    tta: TTA = None,
    trust: TRUST = False,
    reading: Optional[dict] = None,
) -> None:
    """Metrics of a trained run on its test part, or on another labelled file."""
    from deepfield.tasks.run import evaluate_run

    metrics = evaluate_run(run, data, reading=reading, trust=trust, tta=tta)
    for key, value in metrics.items():
        if isinstance(value, (int, float)):
            console.print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


@app.command()
@reading_options
def predict(
    run: Annotated[Path, typer.Argument(help="a run folder written by `deepfield train`")],
    data: Annotated[Path, typer.Argument(help="file or folder to predict on")],
    out: Annotated[Path, typer.Option(help="predictions file: .csv, .fits or .h5 (with the input's ids)")],
    keep: KEEP = None,
    tta: TTA = None,
    trust: TRUST = False,
    overwrite: OVERWRITE = False,
    reading: Optional[dict] = None,
) -> None:
    """Predict every object of DATA with a trained run; write a table with their ids (and ra, dec, --keep).
    A denoise run and a FITS image: the whole image denoised by tiles, written as FITS with its header."""
    from deepfield.tasks.run import predict_run

    written = predict_run(run, data, out, reading=reading, keep=split_list(keep) or (), trust=trust,
                          overwrite=overwrite, tta=tta)
    console.print(f"wrote {written}")


@app.command()
def sample(
    run: Annotated[Path, typer.Argument(help="a run folder of task generate")],
    out: Annotated[Path, typer.Option(help="HDF5 file to write: samples (N, C, H, W) in the training file's unit, "
                                           "the conditions used, the seed and the run")],
    n: Annotated[Optional[int], typer.Option("--n", help="samples to draw (default: one per --conditions row)")
                 ] = None,
    condition: Annotated[Optional[str], typer.Option(help="one condition for every sample, in the units of the "
                                                          "run's data.conditions: half_light_radius=0.4,mag=-9")
                         ] = None,
    conditions: Annotated[Optional[Path], typer.Option(help="a table (FITS, CSV, HDF5, Parquet) with one row of "
                                                            "conditions per sample, columns named as the run's")
                          ] = None,
    seed: SEED = 0,
    temperature: Annotated[Optional[float], typer.Option(help="VAE: scale of the latent draws (1: the prior)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="diffusion: sampler steps")] = None,
    guidance: Annotated[Optional[float], typer.Option(help="diffusion: classifier-free guidance scale")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="samples drawn at once")] = 256,
    noise: Annotated[bool, typer.Option(help="VAE: add the training stamps' sky noise to the decoder's noise-free "
                                             "mean (--no-noise: the mean, e.g. for a GalSim scene that adds its own)")
                     ] = True,
    trust: TRUST = False,
    overwrite: OVERWRITE = False,
) -> None:
    """Draw stamps from a trained generate run (a conditional VAE, a diffusion model), with a progress bar."""
    from deepfield.tasks.run import load_run
    from deepfield.tasks.sampling import sample_to_file

    options = {k: v for k, v in dict(temperature=temperature, steps=steps, guidance=guidance).items() if v is not None}
    written = sample_to_file(load_run(run, trust=trust), out, n, condition, conditions, seed, batch_size,
                             overwrite=overwrite, noise=noise, **options)
    console.print(f"wrote {written}")


@app.command()
@reading_options
def features(
    run: Annotated[Path, typer.Argument(help="a run folder written by `deepfield train`")],
    data: Annotated[Path, typer.Argument(help="file or folder to compute features for")],
    out: Annotated[Path, typer.Option(help="features table: .csv, .fits or .h5 (with the input's ids)")],
    layer: Annotated[Optional[str], typer.Option(help="layer name (see `deepfield summary RUN --layers`); "
                                                       "default: the one before the head")] = None,
    keep: KEEP = None,
    trust: TRUST = False,
    overwrite: OVERWRITE = False,
    reading: Optional[dict] = None,
) -> None:
    """A trained network's layer as features for other learners (transfer learning)."""
    from deepfield.tasks.run import features_run

    written = features_run(run, data, out, layer, reading=reading, keep=split_list(keep) or (), trust=trust,
                           overwrite=overwrite)
    console.print(f"wrote {written}")


@app.command()
@reading_options
def explain(
    run: Annotated[Path, typer.Argument(help="a run folder written by `deepfield train`")],
    data: Annotated[Optional[Path], typer.Argument(help="stamps to explain (default: the run's test part)")] = None,
    out: Annotated[Path, typer.Option(help="folder for the figures, explain.npz and explain.json")] = Path("explain"),
    method: Annotated[str, typer.Option(help=f"comma-separated: {', '.join(EXPLAIN_METHODS)}, or all")] = "all",
    layer: Annotated[Optional[str], typer.Option(help="layer for feature maps and patches, and for filters when a "
                                                     "convolution; inside a block by dotted name, e.g. "
                                                     "stage2_block1.conv2 (`deepfield summary RUN --layers`)")] = None,
    per_class: Annotated[Optional[int], typer.Option(min=1, max=8, help="stamps shown per class")] = None,
    size: Annotated[int, typer.Option(min=1, help="occluding square's side (pixels)")] = 8,
    stride: Annotated[int, typer.Option(min=1, help="occluding square's step (pixels)")] = 4,
    fill: Annotated[float, typer.Option(help="value under the occluding square")] = 0.0,
    region: Annotated[Optional[str], typer.Option(help="an image output (denoise): the aperture x,y,r (pixels) whose "
                                                      "flux is explained; default: each stamp's source")] = None,
    window: Annotated[Optional[str], typer.Option(help="an image output: the pixel window x0:x1,y0:y1 instead")] = None,
    trust: TRUST = False,
    overwrite: OVERWRITE = False,
    reading: Optional[dict] = None,
) -> None:
    """Look inside a trained network: filters, feature maps, strongest patches, attributions, class models;
    for an image output, attributions of a region's flux."""
    from deepfield.tasks.run import explain_run

    folder = explain_run(run, data, out, split_list(method), reading=reading, layer=layer, per_class=per_class,
                         occlusion=OcclusionConfig(size=size, stride=stride, fill=fill), region=region, window=window,
                         trust=trust, overwrite=overwrite)
    console.print(f"wrote {folder / 'explain.json'} and its figures")


@app.command()
def report(run: Annotated[Path, typer.Argument(help="a run folder")]) -> None:
    """(Re)write RUN/report.html: one self-contained HTML file with every figure embedded."""
    from deepfield.folder_lock import hold
    from deepfield.report.html import write_report

    # a run folder is locked while the report is written; anything else is refused by write_report itself
    with hold(run, "deepfield report") if (run / "metrics.json").is_file() else contextlib.nullcontext():
        console.print(f"wrote {write_report(run)}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for the simulated data and the run")] = Path("runs/demo"),
    epochs: Annotated[int, typer.Option(help="training epochs (early stopping may end sooner)")] = 25,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """The main job: the backprop example, a simulated sky, a network trained on it, its report."""
    import time

    from deepfield.report.html import headline, write_report
    from deepfield.tasks.demo import run_demo

    started = time.perf_counter()
    run = run_demo(out=out, epochs=epochs, seed=seed, console=console, report=write_report)
    metrics = json.loads((run / "metrics.json").read_text())
    console.rule("[bold]Result")
    console.print(f"{headline(metrics)}: 5 classes, chance 0.2; macro AUC {metrics['macro_auc']:.4g}; "
                  f"demo took {time.perf_counter() - started:.0f} s")
    console.print(f"report: {run / 'report.html'}")


@inspect_app.command("images")
@reading_options
def inspect_images(
    path: Annotated[Path, typer.Argument(help="folder of FITS cutouts, FITS cube, HDF5, .npy or .npz")],
    skip_bad: Annotated[bool, typer.Option(help="skip bad objects; list them in NAME.skipped.csv here")] = False,
    reading: Optional[dict] = None,
) -> None:
    """Open an image set: count, stamp shape, bands, classes, positions, columns, bad objects."""
    import numpy as np
    from rich.progress import track

    from deepfield.data.images import write_skip_report
    from deepfield.tasks.config import DataConfig, LabelTable
    from deepfield.tasks.reading import open_data, with_reading

    data = with_reading(DataConfig(path=path, labels=None), {**(reading or {}),
                                                             "on_error": "skip" if skip_bad else "raise"}, True)
    labelled = data.labels is not None and not (isinstance(data.labels, LabelTable) and data.labels.column is None)
    reader = open_data(data, path, labelled=labelled)
    for index in track(range(len(reader)), description="reading every object", console=console, transient=True):
        reader.read(index)  # raises on the first bad object (skip mode found them all already)
    console.print(f"{path}: {len(reader)} objects, stamps {' x '.join(map(str, reader.shape))} (C, H, W), "
                  f"bands {', '.join(reader.bands)}", highlight=False)
    if reader.labels is not None:
        shown = [f"{name}: {count}" for name, count in reader.label_counts()]
        console.print("labels: " + ", ".join(shown[:20]) + (" ..." if len(shown) > 20 else ""), highlight=False)
    columns = reader.metadata()
    if "ra" in columns and "dec" in columns:
        with np.errstate(invalid="ignore"):
            known = np.isfinite(columns["ra"])
        console.print(f"positions (ra, dec): {int(known.sum())} of {len(known)} objects"
                      + (f", ra {np.nanmin(columns['ra']):.5f} .. {np.nanmax(columns['ra']):.5f}, dec "
                         f"{np.nanmin(columns['dec']):.5f} .. {np.nanmax(columns['dec']):.5f} deg" if known.any()
                         else ""), highlight=False)
    if columns:
        console.print(f"columns (predict --keep): {', '.join(columns)}", highlight=False)
    if reader.skipped:
        report = write_skip_report(reader.skipped, Path.cwd() / Path(path).name)
        console.print(f"[yellow]{len(reader.skipped)} objects skipped[/], listed in {escape(str(report))}")
        for skipped in reader.skipped[:10]:
            console.print(f"  {escape(skipped.where)}: {escape(skipped.reason)}", highlight=False)


@inspect_app.command("catalogue")
def inspect_catalogue(
    path: Annotated[Path, typer.Argument(help="FITS table, CSV, Parquet or HDF5 catalogue")],
    bands: Annotated[Optional[str], typer.Option(help="bands to clean: u,g,r,i,z,y")] = None,
    mag: Annotated[str, typer.Option(help="magnitude column pattern")] = "mag_{band}",
    err: Annotated[str, typer.Option(help="magnitude error column pattern")] = "mag_err_{band}",
    group: Annotated[Optional[str], typer.Option(help="HDF5 group holding the columns")] = None,
) -> None:
    """Read a catalogue: rows, columns, and (with --bands) the non-detection cleaning report."""
    from deepfield.data.catalogues import read_catalogue
    from deepfield.data.photometry import Cleaning, load_photometry

    table = read_catalogue(path, group=group)
    console.print(f"{path}: {len(table)} rows, columns: {', '.join(table.colnames)}", highlight=False)
    if bands:
        photometry = load_photometry(table, split_list(bands), mag=mag, err=err, cleaning=Cleaning())
        console.print(str(photometry.report), highlight=False)


@simulate_app.command("morphology")
def simulate_morphology_cmd(n: N, out: OUT, size: SIZE = 64, bands: BANDS = "g,r,i", seed: SEED = 0,
                            snr: SNR = "20,200", workers: WORKERS = None, overwrite: OVERWRITE = False) -> None:
    """Multi-band stamps of spheroids, disks, irregulars, point sources and mergers, with truth."""
    check_output(out, overwrite=overwrite)
    from deepfield.data.simulate import simulate_morphology

    path = simulate_morphology(n, out, size=size, bands=split_list(bands), seed=seed,
                               snr=parse_range(snr, "--snr"), workers=workers)
    console.print(f"wrote {path}: {n} stamps of {bands} x {size}x{size}")


@simulate_app.command("quality")
def simulate_quality_cmd(n: N, out: OUT, size: SIZE = 64, bands: BANDS = "g,r,i", seed: SEED = 0,
                         snr: SNR = "20,200", workers: WORKERS = None, overwrite: OVERWRITE = False,
                         spoiled_fraction: Annotated[float, typer.Option(help="fraction of spoiled stamps")] = 0.5,
                         artefacts: Annotated[str, typer.Option(help="artefact kinds, comma-separated, or all")] = "all"
                         ) -> None:
    """The same galaxies, clean or spoiled by cosmic rays, trails, bad columns, saturation, ghosts."""
    check_output(out, overwrite=overwrite)
    from deepfield.data.simulate import ARTEFACTS, simulate_quality

    path = simulate_quality(n, out, size=size, bands=split_list(bands), seed=seed, snr=parse_range(snr, "--snr"),
                            spoiled_fraction=spoiled_fraction,
                            artefacts=tuple(ARTEFACTS) if artefacts == "all" else tuple(split_list(artefacts) or ()),
                            workers=workers)
    console.print(f"wrote {path}: {n} stamps, {spoiled_fraction:.0%} spoiled")


@simulate_app.command("denoise")
def simulate_denoise_cmd(n: N, out: OUT, size: SIZE = 64, bands: BANDS = "g,r,i", seed: SEED = 0,
                         workers: WORKERS = None, overwrite: OVERWRITE = False,
                         target: Annotated[str, typer.Option(help="noiseless or deep")] = "noiseless",
                         visits: Annotated[float, typer.Option(help="LSST visits of the input's noise")] = 1.0,
                         deep_visits: Annotated[float, typer.Option(help="LSST visits of a deep target")] = 100.0,
                         target_psf: Annotated[Optional[float], typer.Option(
                             help="FWHM (arcsec) of a sharper Gaussian PSF for the target (deconvolution)")] = None,
                         mag_limit: Annotated[float, typer.Option(help="faintest AB magnitude (band mean)")] = 23.5
                         ) -> None:
    """The same galaxies shallow (input) and noise-free or deep (target), PSF and noise recorded."""
    check_output(out, overwrite=overwrite)
    from deepfield.data.simulate.denoise import simulate_denoise

    path = simulate_denoise(n, out, size=size, bands=split_list(bands) or (), seed=seed, target=target,
                            visits=visits, deep_visits=deep_visits, target_psf=target_psf, mag_limit=mag_limit,
                            workers=workers)
    console.print(f"wrote {path}: {n} pairs of {bands} x {size}x{size}, {target} targets")


@simulate_app.command("blends")
def simulate_blends_cmd(n: N, out: OUT, size: SIZE = 64, bands: BANDS = "g,r,i", seed: SEED = 0,
                        workers: WORKERS = None, overwrite: OVERWRITE = False,
                        min_sources: Annotated[int, typer.Option(help="fewest sources per stamp")] = 2,
                        max_sources: Annotated[int, typer.Option(help="most sources per stamp")] = 4,
                        star_fraction: Annotated[float, typer.Option(help="chance a source (not the first) is a "
                                                                          "star")] = 0.2,
                        separation: Annotated[str, typer.Option(help="distance from the first source, low,high")]
                        = "1,3",
                        separation_unit: Annotated[str, typer.Option(help="pixels, or hlr: the sum of the two "
                                                                          "half-light radii")] = "hlr",
                        visits: Annotated[float, typer.Option(help="LSST visits of the noise")] = 100.0,
                        mag_limit: Annotated[float, typer.Option(help="faintest AB magnitude (band mean)")] = 25.0,
                        threshold: Annotated[float, typer.Option(help="segmentation floor in noise sigmas")] = 1.0,
                        population: Annotated[Optional[Path], typer.Option(help="generated stamps (HDF5) as an extra "
                                                                                 "population")] = None,
                        population_dataset: DATASET = "samples",
                        population_fraction: Annotated[float, typer.Option(help="chance a source is one of "
                                                                                "them")] = 0.5,
                        galaxy_kinds: Annotated[str, typer.Option(help="galaxy recipes drawn, of spheroid,disk,"
                                                                       "irregular")] = "spheroid,disk"
                        ) -> None:
    """Stamps of overlapping galaxies and stars, each source alone too, with truth, segmentation and morphology."""
    check_output(out, inputs=[population], overwrite=overwrite)
    from deepfield.data.simulate.blends import simulate_blends
    from deepfield.data.simulate.generated import read_samples

    path = simulate_blends(n, out, size=size, bands=split_list(bands) or (), seed=seed, min_sources=min_sources,
                           max_sources=max_sources, star_fraction=star_fraction,
                           separation=parse_range(separation, "--separation"), separation_unit=separation_unit,
                           visits=visits, mag_limit=mag_limit, threshold=threshold, workers=workers,
                           population=None if population is None else read_samples(population, population_dataset),
                           population_fraction=population_fraction, galaxy_kinds=split_list(galaxy_kinds) or ())
    count = str(min_sources) if min_sources == max_sources else f"{min_sources} to {max_sources}"
    console.print(f"wrote {path}: {n} blends of {count} sources, {bands} x {size}x{size}")


@simulate_app.command("photoz")
def simulate_photoz_cmd(n: N, out: OUT, seed: SEED = 0, bands: BANDS = "u,g,r,i,z,y", workers: WORKERS = None,
                        mag_limit: Annotated[float, typer.Option(help="i-band magnitude limit (AB)")] = 25.3,
                        stamps: Annotated[bool, typer.Option(help="also draw matching stamps")] = False,
                        size: SIZE = 32, overwrite: OVERWRITE = False) -> None:
    """A catalogue of redshifts and LSST magnitudes from CWW templates (optionally with stamps)."""
    check_output(out, overwrite=overwrite)
    from deepfield.data.simulate import simulate_photoz

    path = simulate_photoz(n, out, seed=seed, bands="".join(split_list(bands) or ()), mag_limit=mag_limit,
                           stamps=stamps, size=size, workers=workers)
    console.print(f"wrote {path}: {n} galaxies in {bands}")


@simulate_app.command("spectra")
def simulate_spectra_cmd(n: N, out: OUT, seed: SEED = 0, snr: SNR = "3,30",
                         length: Annotated[int, typer.Option(help="pixels per spectrum (380-920 nm, log-spaced)")] = 400,
                         overwrite: OVERWRITE = False,
                         ) -> None:
    """Optical spectra of emission-line galaxies, absorption-line galaxies and quasars, with redshifts."""
    check_output(out, overwrite=overwrite)
    from deepfield.data.simulate.spectra import simulate_spectra

    path = simulate_spectra(n, out, length=length, seed=seed, snr=parse_range(snr, "--snr"))
    console.print(f"wrote {path}: {n} spectra of {length} pixels")


def main() -> None:
    """Console-script entry point: one clear line and a non-zero exit on any error."""
    err = Console(stderr=True, soft_wrap=True)  # one line, however long
    if hasattr(signal, "SIGXFSZ"):  # a file-size limit (ulimit -f): an error naming the file, not a core dump
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        app()
    except DeepfieldError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # a bug, not the user's fault: still one line unless debugging
        if os.environ.get("DEEPFIELD_DEBUG"):
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                  "(set DEEPFIELD_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
