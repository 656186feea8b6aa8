"""What the Keras face promises: every public callback, optimiser, loss and metric class is reachable where
Keras users look for it (``df.callbacks.X``, ``df.optimizers.X``, ...)."""
import importlib
import inspect
import pkgutil

import deepfield as df
import deepfield.training
from deepfield.training.callbacks import Callback
from deepfield.training.losses import Loss
from deepfield.training.metrics import Metric
from deepfield.training.optimizers import Optimizer


def public_subclasses(base: type, package) -> set[str]:
    """Names of the public subclasses of ``base`` defined anywhere in ``package``."""
    found = set()
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, base) and value is not base
                    and value.__module__ == module.__name__ and not name.startswith("_")):
                found.add(name)
    return found


def test_every_callback_of_the_training_layer_is_in_df_callbacks():
    names = public_subclasses(Callback, deepfield.training)
    assert "GradientNormLogger" in names and "BackupAndRestore" in names
    missing = sorted(n for n in names if n not in df.callbacks.__all__ or not hasattr(df.callbacks, n))
    assert missing == []
    assert df.callbacks.GradientNormLogger is deepfield.training.GradientNormLogger


def test_every_optimizer_loss_and_metric_class_is_exported_where_keras_has_it():
    for base, module in ((Optimizer, df.optimizers), (Loss, df.losses), (Metric, df.metrics)):
        names = public_subclasses(base, deepfield.training)
        missing = sorted(n for n in names if not hasattr(module, n) or n not in module.__all__)
        assert missing == [], module.__name__
