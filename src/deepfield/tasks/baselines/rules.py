"""Hand-made rules as baselines: quiescent vs star-forming galaxies from rest-frame U−V and V−J.

Inputs are rest-frame colours in magnitudes, ``u_v (N,)`` = U − V and ``v_j (N,)`` = V − J;
outputs are labels ``(N,)`` int64 with **1 = quiescent, 0 = star-forming**. A NaN colour
is an error (a rule cannot place an object it cannot see); drop or fill such rows first.

- :func:`uvj_course` is the course's "network function" with fixed weights
  ``sgn[(u−v) − 0.8·(v−j) − 0.7]``: the sign is + above the line (red in U−V for its
  V−J: old stars) and − below it, so + is quiescent. The slide labels the classes
  Q(0), SF(1) for the network it then trains; here the rule's + side is class 1, quiescent,
  so that a score that grows with the label is :func:`uvj_course_score`. A point exactly
  on the line (sign 0) counts as star-forming.
- :func:`uvj_williams09` is the box of Williams et al. (2009, ApJ 691, 1879, Eq. 4):
  quiescent when U−V > 1.3, V−J < 1.6 and U−V > 0.88·(V−J) + c(z), with
  c = 0.69 for 0 < z < 0.5, 0.59 for 0.5 < z < 1 and 0.49 for 1 < z < 2 (the red
  sequence of younger, higher-redshift galaxies is bluer, so the diagonal comes down).
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from deepfield.errors import DeepfieldError

COURSE_SLOPE, COURSE_OFFSET = 0.8, 0.7
"""The course's line: (u−v) = 0.8·(v−j) + 0.7."""

WILLIAMS09_UV_MIN, WILLIAMS09_VJ_MAX, WILLIAMS09_SLOPE = 1.3, 1.6, 0.88
WILLIAMS09_INTERCEPTS = ((0.5, 0.69), (1.0, 0.59), (np.inf, 0.49))
"""(upper redshift of the bin, intercept of the diagonal); z >= 2 keeps the 1 < z < 2 intercept."""

WILLIAMS09_DEFAULT_Z = 0.75  # without redshifts: the 0.5 < z < 1 box


def _colours(u_v: ArrayLike, v_j: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    uv, vj = np.asarray(u_v, dtype=np.float64), np.asarray(v_j, dtype=np.float64)
    if uv.ndim != 1 or uv.shape != vj.shape:
        raise DeepfieldError(f"UVJ rule: u_v and v_j must be 1-D of one length, got shapes {uv.shape} and {vj.shape}")
    bad = ~(np.isfinite(uv) & np.isfinite(vj))
    if bad.any():
        raise DeepfieldError(f"UVJ rule: {int(bad.sum())} object(s) have a NaN or infinite colour, "
                             f"the first is row {int(np.argmax(bad))}")
    return uv, vj


def uvj_course_score(u_v: ArrayLike, v_j: ArrayLike) -> np.ndarray:
    """``(u−v) − 0.8·(v−j) − 0.7`` ``(N,)`` in magnitudes: > 0 quiescent; a score for ROC curves."""
    uv, vj = _colours(u_v, v_j)
    return uv - COURSE_SLOPE * vj - COURSE_OFFSET


def uvj_course(u_v: ArrayLike, v_j: ArrayLike) -> np.ndarray:
    """The course's rule: 1 (quiescent) where ``sgn[(u−v) − 0.8·(v−j) − 0.7]`` is +, else 0."""
    return (uvj_course_score(u_v, v_j) > 0).astype(np.int64)


def williams09_intercept(z: ArrayLike) -> np.ndarray:
    """The intercept c(z) ``(N,)`` of the Williams et al. (2009) diagonal for redshifts ``z (N,)``."""
    z = np.asarray(z, dtype=np.float64)
    if not np.all(np.isfinite(z)) or np.any(z < 0):
        raise DeepfieldError("UVJ rule: redshifts must be finite and >= 0")
    uppers = np.array([upper for upper, _ in WILLIAMS09_INTERCEPTS])
    intercepts = np.array([c for _, c in WILLIAMS09_INTERCEPTS])
    return intercepts[np.searchsorted(uppers, z, side="right")]


def uvj_williams09(u_v: ArrayLike, v_j: ArrayLike, z: ArrayLike | float | None = None) -> np.ndarray:
    """The Williams et al. (2009) box: 1 (quiescent) inside, 0 outside; boundaries are outside.

    ``z`` picks the diagonal's intercept per object (``(N,)`` or one value); without it
    the 0.5 < z < 1 box is used.
    """
    uv, vj = _colours(u_v, v_j)
    redshift = np.broadcast_to(WILLIAMS09_DEFAULT_Z if z is None else np.asarray(z, dtype=np.float64), uv.shape)
    diagonal = WILLIAMS09_SLOPE * vj + williams09_intercept(redshift)
    return ((uv > WILLIAMS09_UV_MIN) & (vj < WILLIAMS09_VJ_MAX) & (uv > diagonal)).astype(np.int64)
