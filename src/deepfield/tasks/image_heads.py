"""The output head of an image-to-image network (denoise, deblend): its channels and its log-variance channels."""
from __future__ import annotations

from deepfield.errors import DeepfieldError
from deepfield.models import zoo
from deepfield.tasks.base import Prepared
from deepfield.tasks.config import RunConfig


def with_image_head(config: RunConfig, prepared: Prepared, channels: int) -> RunConfig:
    """``config`` whose preset returns ``channels`` images (``output_channels``, unless the user's options set it)
    and, with ``uncertainty.heteroscedastic`` (``prepared.info.heteroscedastic``), their per-pixel log-variances
    after them (presets taking ``output_channels`` / ``heteroscedastic``, as ``unet``)."""
    accepted = zoo.parameters(config.model.preset)
    options = dict(config.model.options)
    if "output_channels" in accepted:
        options.setdefault("output_channels", channels)
    if prepared.info.heteroscedastic:
        if "heteroscedastic" not in accepted:
            raise DeepfieldError(f"uncertainty.heteroscedastic: model.preset {config.model.preset!r} has no "
                                 "per-pixel log-variance head; use unet")
        options["heteroscedastic"] = True
    return config.model_copy(update={"model": config.model.model_copy(update={"options": options})})
