"""The ``data`` layer: readers, datasets, transforms and simulators. Knows nothing of models."""
