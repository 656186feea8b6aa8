"""``deepfield simulate scene``: generated galaxies (a samples file) drawn with GalSim into noisy scenes."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from deepfield.cli.common import OVERWRITE, console, parse_numbers, split_list
from deepfield.outputs import check_output

DATASET = Annotated[str, typer.Option(help="the stamps' dataset in the samples file")]


def simulate_scene_cmd(
    samples: Annotated[Path, typer.Option(help="HDF5 file of stamps (N, C, H, W): deepfield sample's samples.h5, "
                                               "or any simulator's file with --dataset")],
    n: Annotated[int, typer.Option("--n", help="number of scenes")],
    out: Annotated[Path, typer.Option("--out", help="HDF5 file to write (atomically), the blends layout")],
    dataset: DATASET = "samples",
    size: Annotated[int, typer.Option(help="scene side in pixels")] = 256,
    sources: Annotated[str, typer.Option(help="sources per scene: a count, or low,high")] = "5,15",
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same file")] = 0,
    psf_fwhm: Annotated[Optional[float], typer.Option(help="a broader target PSF FWHM (arcsec); default: the "
                                                           "stamps as they are")] = None,
    stamp_psf_fwhm: Annotated[Optional[float], typer.Option(help="FWHM (arcsec) of the PSF in the stamps, if the "
                                                                 "file does not say")] = None,
    visits: Annotated[float, typer.Option(help="LSST visits of the noise (nJy stamps)")] = 100.0,
    noise_sigma: Annotated[Optional[str], typer.Option(help="noise per pixel and band in the stamps' unit, "
                                                            "comma-separated (instead of --visits)")] = None,
    bands: Annotated[Optional[str], typer.Option(help="the stamps' bands, if the file does not name them")] = None,
    pixel_scale: Annotated[Optional[float], typer.Option(help="arcsec per pixel, if the file does not say")] = None,
    workers: Annotated[Optional[int], typer.Option(help="processes (default: all cores)")] = None,
    overwrite: OVERWRITE = False,
) -> None:
    """Generated galaxies drawn into scenes with sky noise: images, each source alone, segmentation, truth."""
    check_output(out, inputs=[samples], overwrite=overwrite)
    from deepfield.data.simulate.generated import read_samples
    from deepfield.data.simulate.scene import simulate_scene

    stamps = read_samples(samples, dataset, bands=split_list(bands), pixel_scale=pixel_scale, psf_fwhm=stamp_psf_fwhm)
    path = simulate_scene(stamps, n, out, size=size, sources=tuple(parse_numbers(sources, "--sources")), seed=seed,
                          psf_fwhm=psf_fwhm,
                          visits=visits, noise_sigma=parse_numbers(noise_sigma, "--noise-sigma", float) or None,
                          workers=workers)
    console.print(f"wrote {path}: {n} scenes of {size}x{size} with {sources.replace(',', ' to ')} sources of "
                  f"{len(stamps.stamps)} generated stamps", highlight=False)
