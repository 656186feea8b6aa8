"""The ``tasks`` layer: each ties a dataset, a model, training and analysis into a run folder."""
