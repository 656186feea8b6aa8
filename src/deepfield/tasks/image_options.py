"""The options the image tasks (segment, denoise, deblend, generate) check alike."""
from __future__ import annotations

from deepfield.errors import DeepfieldError
from deepfield.tasks.config import RunConfig
from deepfield.training.augment import BatchAugment


def image_task_checks(config: RunConfig, task: str, *, takes: str, refuse_augment: str | None = None,
                      heteroscedastic: str | None = None, mc_samples: str | None = None) -> None:
    """Check what the image tasks share, each refusal one line in the task's words.

    ``training.augment``: refused with the reason ``refuse_augment`` where given (generate: the augmentations would
    move the stamps and not their conditions); otherwise the targets move with the inputs, so only the entries that
    move whole pixels are taken (:class:`~deepfield.training.augment.BatchAugment` with ``targets=True`` names the
    others). A ``data.kind`` other than ``images`` is refused (task ``task`` takes ``takes``, e.g. "image pairs");
    so are ``uncertainty.heteroscedastic`` and ``uncertainty.mc_samples`` where the task gives its reason
    (``heteroscedastic``, ``mc_samples``)."""
    if config.training.augment:
        if refuse_augment is not None:
            raise DeepfieldError(f"training.augment: {refuse_augment}; leave it out for task {task}")
        BatchAugment(config.training.augment, name="training.augment", targets=True)
    if config.data.kind != "images":
        raise DeepfieldError(f"data.kind: task {task} takes {takes} (images)")
    uncertainty = config.uncertainty
    for key, value, reason in (("heteroscedastic", uncertainty.heteroscedastic, heteroscedastic),
                               ("mc_samples", uncertainty.mc_samples, mc_samples)):
        if value and reason is not None:
            raise DeepfieldError(f"uncertainty.{key}: {reason}")
