"""The options the image-to-image tasks (segment, denoise, deblend, generate) refuse alike."""
from __future__ import annotations

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import RunConfig


def image_task_checks(config: RunConfig, task: str, *, moves: str, takes: str, heteroscedastic: str | None = None,
                      mc_samples: str | None = None) -> None:
    """Refuse ``training.augment`` (the augmentations move ``moves``, e.g. "the stamp alone, not its label map"),
    a ``data.kind`` other than ``images`` (task ``task`` takes ``takes``, e.g. "image pairs") and, where the task
    gives its reason, ``uncertainty.heteroscedastic`` (``heteroscedastic``) and ``uncertainty.mc_samples``
    (``mc_samples``)."""
    if config.training.augment:
        raise DeepfieldError(f"training.augment: the augmentations move {moves}; leave it out for task {task}")
    if config.data.kind != "images":
        raise DeepfieldError(f"data.kind: task {task} takes {takes} (images)")
    uncertainty = config.uncertainty
    for key, value, reason in (("heteroscedastic", uncertainty.heteroscedastic, heteroscedastic),
                               ("mc_samples", uncertainty.mc_samples, mc_samples)):
        if value and reason is not None:
            raise DeepfieldError(f"uncertainty.{key}: {reason}")
