"""deepfield's version, in a module of its own: the model.json writer, the run folder and the report
read it without importing the package face (``deepfield/__init__.py``, which loads the training engine)."""
__version__ = "0.1.0"
