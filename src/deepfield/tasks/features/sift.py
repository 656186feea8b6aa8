"""SIFT descriptors (Lowe 2004, ``skimage.feature.SIFT``) pooled into a bag of visual words.

``fit`` detects keypoints in the *training* stamps and clusters their 128-d descriptors
into a vocabulary of ``words`` with a seeded ``MiniBatchKMeans``; ``extract`` assigns each
keypoint of a stamp to its nearest word and counts them. Only ``fit`` changes the vocabulary.

SIFT runs on the band-mean image, rescaled to [0, 1] by its own min and max (SIFT's
contrast threshold assumes that range) and, when smaller than ``min_size`` pixels on a
side, resized up to it (bilinear): on 32x32 stamps SIFT otherwise finds nothing, because a
descriptor window of a few sigma does not fit inside the stamp.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from skimage.feature import SIFT
from skimage.transform import resize
from sklearn.cluster import MiniBatchKMeans

from deepfield import arguments
from deepfield.errors import DeepfieldError
from deepfield.tasks.features.base import Extractor, FeatureSet, band_mean, check_images, progress, rescale_unit

DESCRIPTOR_SIZE = 128


class SiftBagOfWords(Extractor):
    """``images: (N, C, H, W) -> (N, words)``: keypoints per visual word.

    Rows sum to the number of keypoints found (``normalise=False``) or to 1 (``normalise=True``;
    a stamp without keypoints is then in ``failed`` with a NaN row). Without ``normalise`` a
    stamp with no keypoints is a row of zeros, a measurement, not a failure.
    """

    name = "sift_bovw"

    def __init__(self, words: int = 50, min_size: int = 64, upsampling: int = 2, normalise: bool = False,
                 seed: int = 0):
        words = arguments.integer("features sift_bovw: words", words, 2, expected="an integer >= 2")
        if upsampling not in (1, 2):
            raise DeepfieldError(f"features sift_bovw: upsampling must be 1 or 2, got {upsampling!r}")
        min_size = arguments.integer("features sift_bovw: min_size", min_size, expected="a positive number of pixels")
        self.words = int(words)
        self.min_size = int(min_size)
        self.upsampling = int(upsampling)
        self.normalise = bool(normalise)
        self.seed = int(seed)
        self.vocabulary: MiniBatchKMeans | None = None

    def get_config(self) -> dict[str, Any]:
        return {"words": self.words, "min_size": self.min_size, "upsampling": self.upsampling,
                "normalise": self.normalise, "seed": self.seed}

    def fit(self, images: np.ndarray) -> SiftBagOfWords:
        """Cluster the descriptors of the training stamps ``(N, C, H, W)`` into ``words`` words."""
        descriptors = self.descriptors(check_images(images, self.name), "SIFT vocabulary")
        pooled = np.concatenate(descriptors) if descriptors else np.empty((0, DESCRIPTOR_SIZE))
        if len(pooled) < self.words:
            raise DeepfieldError(f"features sift_bovw: {len(pooled)} SIFT keypoints in {len(images)} training "
                                 f"stamps, fewer than words={self.words}; use more stamps or fewer words")
        kmeans = MiniBatchKMeans(n_clusters=self.words, random_state=self.seed, n_init=3,
                                 batch_size=max(1024, self.words * 4))
        self.vocabulary = kmeans.fit(pooled)
        return self

    def extract(self, images: np.ndarray) -> FeatureSet:
        x = check_images(images, self.name)
        if self.vocabulary is None:
            raise DeepfieldError("features sift_bovw: no vocabulary yet; call fit(training_images) before extract")
        names = [f"word_{k}" for k in range(self.words)]
        values = np.zeros((len(x), self.words))
        failed = []
        for i, found in enumerate(self.descriptors(x, "SIFT words")):
            if len(found):
                values[i] = np.bincount(self.vocabulary.predict(found), minlength=self.words)
            if self.normalise:
                if len(found):
                    values[i] /= len(found)
                else:
                    values[i] = np.nan
                    failed.append((i, "no SIFT keypoints found (flat or featureless stamp)"))
        return FeatureSet(values, names, failed)

    def descriptors(self, images: np.ndarray, what: str) -> list[np.ndarray]:
        """The ``(K_i, 128)`` float64 SIFT descriptors of each stamp (``K_i`` may be 0)."""
        planes = band_mean(images)
        return [self.describe(plane) for plane in progress(planes, len(planes), what)]

    def describe(self, image: np.ndarray) -> np.ndarray:
        """SIFT descriptors of one image ``(H, W)``: ``(K, 128)``, empty when SIFT finds none."""
        image = rescale_unit(image)
        h, w = image.shape
        if min(h, w) < self.min_size:
            scale = self.min_size / min(h, w)
            image = resize(image, (round(h * scale), round(w * scale)), order=1, anti_aliasing=False)
        sift = SIFT(upsampling=self.upsampling)
        try:
            sift.detect_and_extract(image)
        except RuntimeError as exc:
            if "no features" not in str(exc):
                raise
            return np.empty((0, DESCRIPTOR_SIZE))
        return np.asarray(sift.descriptors, dtype=np.float64)
