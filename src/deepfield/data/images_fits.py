"""FITS readers: a folder of cutouts (one object per file, or one file per band) and cubes.

Files are opened when an object is read (memory-mapped, headers loaded lazily) and
closed straight after, so a folder of any size streams. Before reading, a file must be
a whole number of 2880-byte FITS blocks and hold the data its header promises; a
truncated or non-FITS file is a bad object named by its path.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Union

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning
from astropy.wcs import WCS

from deepfield.data.images_core import (
    ArrayLayout,
    BadObject,
    CatalogueLabels,
    ImageReader,
    Labels,
    ProcessLocal,
    check_bands,
    fatal,
)
from deepfield.errors import DeepfieldError

HduKey = Union[int, str]
BLOCK = 2880  # bytes: every FITS file is a whole number of these


@contextlib.contextmanager
def open_fits(path: str, memmap: bool = True) -> Iterator[fits.HDUList]:
    """The open FITS file at ``path``, or :class:`BadObject` if it is missing, truncated or not FITS.

    ``memmap=False``: ``hdu.section[...]`` reads only the bytes asked for (and BZERO/BSCALE images read
    through it); a memory map keeps every page it touched resident while the file is open."""
    try:
        size = os.path.getsize(path)
    except OSError:
        raise BadObject(path, "file is missing") from None
    if size == 0 or size % BLOCK:
        raise BadObject(path, f"file is {size} bytes, not a whole number of {BLOCK}-byte FITS blocks "
                              "(truncated, or not a FITS file)")
    with warnings.catch_warnings():  # truncation is checked and reported by find_hdu
        warnings.filterwarnings("ignore", "File may have been truncated", AstropyUserWarning)
        try:
            hdul = fits.open(path, memmap=memmap, lazy_load_hdus=True)
        except (OSError, ValueError) as error:
            raise BadObject(path, f"not a readable FITS file ({error})") from None
        with hdul:
            yield hdul


def find_hdu(hdul: fits.HDUList, key: HduKey | None, path: str, band: str | None = None) -> Any:
    """The image HDU ``key`` (``None``: the first HDU holding an image), checked to be complete."""
    for_band = f" for band {band!r}" if band is not None else ""
    if key is None:
        hdu = next((h for h in hdul if h.is_image and h.header.get("NAXIS", 0) >= 2), None)
        if hdu is None:
            raise BadObject(path, f"holds no image HDU{for_band}")
    else:
        found = 0 <= key < len(hdul) if isinstance(key, int) else key in hdul
        if not found:
            raise BadObject(path, f"has no HDU {key!r}{for_band}; its HDUs are "
                                  f"{', '.join(f'{i}:{h.name}' for i, h in enumerate(hdul))}")
        hdu = hdul[key]
        if not hdu.is_image or hdu.header.get("NAXIS", 0) == 0:
            raise BadObject(path, f"HDU {key!r}{for_band} holds no image")
    end = hdul.fileinfo(hdul.index_of(hdu))["datLoc"] + hdu.size
    if end > os.path.getsize(path):
        raise BadObject(path, f"is truncated: HDU {hdu.name!r} needs {end} bytes, the file has "
                              f"{os.path.getsize(path)}")
    return hdu


def read_data(hdu: Any, path: str) -> np.ndarray:
    """The HDU's pixels as a float32 copy (scaled by BZERO/BSCALE), safe to keep after closing."""
    try:
        return np.array(hdu.data, dtype=np.float32)
    except (OSError, ValueError, TypeError) as error:
        raise BadObject(path, f"data of HDU {hdu.name!r} cannot be read ({error})") from None


def _pattern_regex(pattern: str, bands: Sequence[str]) -> re.Pattern[str]:
    """``"{id}_{band}.fits"`` → a regex with groups ``id`` and ``band`` (one of ``bands``)."""
    parts = re.split(r"(\{id\}|\{band\})", pattern)
    if parts.count("{id}") != 1 or parts.count("{band}") > 1 or any(
            c in p for p in parts[::2] for c in "{}/\\"):
        raise DeepfieldError(f"pattern {pattern!r} must be a file name with {{id}} once and "
                             "optionally {band} once, e.g. '{id}_{band}.fits'")
    band_choice = "|".join(re.escape(b) for b in sorted(bands, key=len, reverse=True))
    fields = {"{id}": "(?P<id>.+)", "{band}": f"(?P<band>{band_choice})"}
    return re.compile("".join(fields.get(p, re.escape(p)) for p in parts))


class FitsFolder(ImageReader):
    """A folder of FITS cutouts, one object per file (or per set of band files).

    ``pattern`` names the files, with ``{id}`` (the object id, matched to a catalogue)
    and optionally ``{band}``; files that do not match are ignored. The bands are found:

    * ``hdus=None`` (default): one HDU per band, whose EXTNAME is the band name (any case);
    * ``hdus=[1, 2, 3]`` or ``["G", "R", "I"]``: one HDU per band, in the order of ``bands``;
    * ``hdus=0`` (one index or name): a cube ``(C, H, W)`` in that HDU (``(H, W)`` for one band);
    * ``{band}`` in ``pattern`` (e.g. ``"{id}_{band}.fits"``): one file per band, its image
      in HDU ``hdus`` (``None``: the first HDU holding an image).

    ``labels``: :class:`CatalogueLabels` (joined on ``{id}``) or ``None``.
    Objects are ordered by id (as text). :meth:`metadata` adds ``ra``, ``dec`` (degrees):
    the sky position of each cutout's centre pixel from the WCS of its first band's HDU
    (NaN for a file without a celestial WCS; no columns when no file has one).
    """

    def __init__(self, folder: str | os.PathLike[str], bands: Sequence[str], *, pattern: str = "{id}.fits",
                 hdus: HduKey | Sequence[HduKey] | None = None, labels: CatalogueLabels | None = None,
                 on_error: str = "raise"):
        super().__init__(on_error)
        self.source = os.fspath(folder)
        self.bands = check_bands(bands, self.source)
        if not Path(folder).is_dir():
            raise DeepfieldError(f"{self.source}: no such folder")
        if labels is not None and not isinstance(labels, CatalogueLabels):
            raise DeepfieldError(f"{self.source}: labels for a folder of files come from a table joined by "
                                 f"id (got {labels!r}): in a config labels: {{table: labels.csv, id: ID_COLUMN, "
                                 "column: LABEL_COLUMN}, in Python CatalogueLabels(table, id_column, label_column)")
        self._pattern = pattern
        self._cube_key: HduKey | None = None
        regex = _pattern_regex(pattern, self.bands)
        matches = [(m, os.path.join(self.source, name)) for name in sorted(os.listdir(folder))
                   if (m := regex.fullmatch(name))]
        if not matches:
            raise DeepfieldError(f"{self.source}: no file matches the pattern {pattern!r}")
        if "{band}" in pattern:
            if hdus is not None and not isinstance(hdus, (int, str)):
                raise DeepfieldError(f"{self.source}: with one file per band, hdus names the one HDU "
                                     f"holding each image (an index or name), got {hdus!r}")
            self._keys: tuple[HduKey | None, ...] = (hdus,) * len(self.bands)
            ids, self._paths = self._group_band_files(matches)
        else:
            ids = [m["id"] for m, _ in matches]
            self._paths = [(path,) * len(self.bands) for _, path in matches]
            if isinstance(hdus, (int, str)):
                self._cube_key, self._keys = hdus, ()
            else:
                self._keys = self.bands if hdus is None else tuple(hdus)
                if len(self._keys) != len(self.bands):
                    raise DeepfieldError(f"{self.source}: hdus lists {len(self._keys)} HDUs for "
                                         f"{len(self.bands)} bands ({', '.join(self.bands)})")
        self._finish(ids, labels)

    def metadata(self) -> dict[str, np.ndarray]:
        columns = super().metadata()
        centres = np.array([self._centre(int(item)) for item in self._items], np.float64).reshape(-1, 2)
        if np.isfinite(centres).any():
            columns.setdefault("ra", centres[:, 0])
            columns.setdefault("dec", centres[:, 1])
        return columns

    def _centre(self, item: int) -> tuple[float, float]:
        """(ra, dec) in degrees of the centre of object ``item``'s first band image; NaN without a WCS."""
        path = self._paths[item][0]
        with fatal(), open_fits(path) as hdul:
            header = find_hdu(hdul, self._cube_key if self._cube_key is not None else self._keys[0], path,
                              self.bands[0]).header
        with warnings.catch_warnings():  # a header's non-standard WCS keywords are the norm in cutouts
            warnings.simplefilter("ignore", AstropyWarning)
            try:
                wcs = WCS(header).celestial
                if not wcs.has_celestial:
                    return np.nan, np.nan
                x, y = (header["NAXIS1"] - 1) / 2, (header["NAXIS2"] - 1) / 2
                ra, dec = wcs.pixel_to_world_values(x, y)
            except (ValueError, KeyError, MemoryError):  # an unreadable WCS is no WCS, not a bad object
                return np.nan, np.nan
        return float(ra), float(dec)

    def _group_band_files(self, matches: list[tuple[re.Match[str], str]]) -> tuple[list[str], list[tuple[str, ...]]]:
        """Ids with a file for every band, and those files; objects missing a band are rejected."""
        by_id: dict[str, dict[str, str]] = {}
        for match, path in matches:
            by_id.setdefault(match["id"], {})[match["band"]] = path
        ids, paths = [], []
        for oid in sorted(by_id):
            files = by_id[oid]
            missing = [b for b in self.bands if b not in files]
            if missing:
                expected = os.path.join(self.source, self._pattern.format(id=oid, band=missing[0]))
                self._reject(self._object_where(oid), f"no file for band {missing[0]!r} (expected {expected})")
                continue
            ids.append(oid)
            paths.append(tuple(files[b] for b in self.bands))
        return ids, paths

    def _object_where(self, oid: str) -> str:
        return os.path.join(self.source, self._pattern.format(id=oid, band="{band}"))

    def _where(self, item: int) -> str:
        paths = self._paths[item]
        return paths[0] if len(set(paths)) == 1 else self._object_where(self._ids[item])

    def _load(self, item: int) -> np.ndarray:
        paths = self._paths[item]
        if self._cube_key is not None:
            with open_fits(paths[0]) as hdul:
                cube = read_data(find_hdu(hdul, self._cube_key, paths[0]), paths[0])
            return cube[None] if cube.ndim == 2 else cube
        planes = []
        for path, group in itertools.groupby(zip(paths, self._keys, self.bands), key=itemgetter(0)):
            with open_fits(path) as hdul:
                for _, key, band in group:
                    plane = read_data(find_hdu(hdul, key, path, band), path)
                    if plane.ndim != 2:
                        raise BadObject(path, f"the image for band {band!r} has shape {plane.shape}; "
                                              "expected one 2-D image")
                    planes.append(plane)
        if len({p.shape for p in planes}) > 1:
            raise BadObject(self._where(item), "band images differ in shape: "
                            + ", ".join(f"{b} {p.shape}" for b, p in zip(self.bands, planes)))
        return np.stack(planes)


class FitsCube(ImageReader):
    """One FITS file holding many stamps: an image HDU ``(N, H, W)`` (one band) or ``(N, C, H, W)``.

    The file stays open (memory-mapped, one handle per process) and each object is read
    with ``hdu.section[i]``, so only that stamp leaves the disk. ``ids``: one per stamp
    (default ``0 .. N-1``), for joining ``labels`` given as :class:`CatalogueLabels`;
    ``labels`` may also be an array ``(N,)`` or ``(N, k)``.
    """

    def __init__(self, path: str | os.PathLike[str], bands: Sequence[str], *, hdu: HduKey = 0,
                 labels: Labels = None, ids: Sequence[Any] | np.ndarray | None = None, on_error: str = "raise"):
        super().__init__(on_error)
        self.source = os.fspath(path)
        self._key = hdu
        with fatal(), open_fits(self.source) as hdul:
            shape = find_hdu(hdul, hdu, self.source).shape
        self._layout = ArrayLayout(shape, f"{self.source} HDU {hdu!r}", bands, "first", ndim=self.sample_ndim)
        self.bands = self._layout.bands
        self._hdul = ProcessLocal(partial(fits.open, self.source, memmap=True, lazy_load_hdus=True))
        self._finish(np.arange(shape[0]) if ids is None else ids, labels)

    def _where(self, item: int) -> str:
        return f"{self.source}[{item}]"

    def _load(self, item: int) -> np.ndarray:
        try:
            row = self._hdul.get()[self._key].section[item]
        except (OSError, ValueError, TypeError) as error:
            raise BadObject(self._where(item), f"cannot be read ({error})") from None
        return self._layout.stamp(np.asarray(row))
