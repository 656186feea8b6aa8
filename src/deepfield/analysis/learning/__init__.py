"""Watching a network learn: optimiser paths on loss surfaces, decision boundaries over epochs,
and what learning rate, initialisation, batch size and depth do."""
