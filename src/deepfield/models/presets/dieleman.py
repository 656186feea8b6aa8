"""The rotation-invariant Galaxy Zoo CNN of Dieleman, Willett & Dambre (2015, MNRAS 450, 1441)."""
from __future__ import annotations

from collections.abc import Sequence

from deepfield.errors import DeepfieldError
from deepfield.models.blocks import Maxout, MergeViews, TimeDistributed, ViewPoints
from deepfield.models.conv import Conv2D
from deepfield.models.core import Dense, Dropout
from deepfield.models.pooling import MaxPooling2D
from deepfield.models.presets.base import check_fits, sample_shape
from deepfield.models.sequential import Sequential

PRESET = "dieleman"


def dieleman(input_shape: Sequence[int] = (3, 69, 69), n_outputs: int = 37, view_size: int = 45,
             n_views: int = 16, merge: str = "concat", dense_units: int = 2048, maxout_pieces: int = 2,
             dropout: float = 0.5, output_activation: str | None = "sigmoid") -> Sequential:
    """Viewpoints of the stamp through one shared convolution stack, then maxout dense layers.

    As in the paper (their §5–7, Fig. 4–5), on gri 69×69 stamps by default:

    1. :class:`~deepfield.models.blocks.ViewPoints`: ``n_views`` views of ``view_size`` ² pixels,
       ``(N, C, H, W) -> (N, V, C, s, s)``. 16 is the paper's scheme (the 8 rotations and
       flips of the stamp and of the stamp turned by 45°, each cut to the overlapping
       corner patch that holds the centre; needs square stamps); 8 keeps only the exact
       dihedral group (no interpolation).
    2. One convolution stack, the same weights for every view (Keras's ``TimeDistributed``):
       conv 6×6 32 → max-pool 2 → conv 5×5 64 → max-pool 2 → conv 3×3 128 → conv 3×3 128 →
       max-pool 2, 'valid' convolutions with ReLU: a 45×45 view gives 128 × 2 × 2 features.
    3. :class:`~deepfield.models.blocks.MergeViews` ``merge``: ``'concat'`` is the paper's
       (the dense layers know which view each feature came from, so the output is not
       exactly invariant); ``'mean'`` or ``'max'`` pool over views, which makes the output
       exactly invariant to the 8 rotations/flips of a square stamp when the views are the
       dihedral group (``n_views=8``).
    4. Dropout ``dropout`` before each dense layer; two :class:`~deepfield.models.blocks.Maxout`
       layers of ``dense_units`` units with ``maxout_pieces`` pieces (paper: 2048 and 2);
       ``Dense(n_outputs, output_activation)``. The paper's 37 outputs are the Galaxy Zoo 2
       vote fractions, which it normalises per question of the decision tree; here
       ``output_activation`` is ``'sigmoid'`` (each answer apart), ``'softmax'`` (one
       question) or ``None``.

    At the defaults it has 42,303,237 parameters, 33.6 M of them in the first maxout layer
    (16 views × 512 features in). ``(N, C, H, W) -> (N, n_outputs)``.
    """
    shape = sample_shape(PRESET, input_shape, 2)
    if n_views not in (8, 16):
        raise DeepfieldError(f"preset {PRESET!r}: n_views must be 8 (dihedral) or 16 (with 45° views); got {n_views}")
    if view_size > min(shape[1:]):
        raise DeepfieldError(
            f"preset {PRESET!r} needs stamps of at least {view_size}×{view_size} pixels (it cuts "
            f"{view_size}×{view_size} views; pass a smaller view_size for smaller stamps); got {shape[1]}×{shape[2]}"
        )
    if n_views == 16 and shape[1] != shape[2]:
        raise DeepfieldError(f"preset {PRESET!r} with 16 views needs square stamps (45° rotation); "
                             f"got {shape[1]}×{shape[2]}, or pass n_views=8")
    stack = {
        "conv1": Conv2D(32, 6, activation="relu"), "pool1": MaxPooling2D(2),
        "conv2": Conv2D(64, 5, activation="relu"), "pool2": MaxPooling2D(2),
        "conv3": Conv2D(128, 3, activation="relu"), "conv4": Conv2D(128, 3, activation="relu"),
        "pool3": MaxPooling2D(2),
    }
    check_fits(PRESET, (shape[0], view_size, view_size), list(stack.values()),
               "6×6, 5×5, 3×3, 3×3 convolutions and three 2×2 poolings", what="views")
    layers = [ViewPoints(view_size, diagonal=n_views == 16, input_shape=shape)]
    layers += [TimeDistributed(layer, name=name) for name, layer in stack.items()]
    layers.append(MergeViews(merge))
    for _ in range(2):
        layers += [Dropout(dropout), Maxout(dense_units, maxout_pieces)]
    layers += [Dropout(dropout), Dense(n_outputs, activation=output_activation)]
    return Sequential(layers, name=PRESET, input_shape=shape)
