"""``deepfield convert``: a Keras model file to a deepfield model folder, and back."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from deepfield.cli.common import OVERWRITE, TRUST, console, parse_shape
from deepfield.errors import DeepfieldError
from deepfield.outputs import check_output


def convert(
    source: Annotated[Path, typer.Argument(help="a Keras model (.keras, or a legacy .h5), or a deepfield model "
                                                "folder (model.json + weights.safetensors)")],
    out: Annotated[Path, typer.Argument(help="the folder to write model.json + weights.safetensors in; or, from "
                                             "a deepfield folder, the .keras file to write")],
    input_shape: Annotated[Optional[str], typer.Option(help="one sample's shape, channels first (1x64x64), for a "
                                                            "Keras model whose input sizes are open (None)")] = None,
    trust: TRUST = False,
    overwrite: OVERWRITE = False,
) -> None:
    """Convert a Keras model to deepfield (outputs equal on channels-first inputs), or a deepfield model to a
    .keras file that Keras 3 loads (channels last, Keras's default). Nothing in the file is run."""
    from deepfield.models import keras_files, serialization

    if source.is_dir():
        if out.suffix != ".keras":
            raise DeepfieldError(f"{out}: from a deepfield model folder, convert writes a .keras file; "
                                 "name one ending in .keras")
        check_output(out, inputs=[source], overwrite=overwrite)
        model = serialization.load_network(source, trust=trust)
        console.print(f"wrote {keras_files.save_keras(model, out)} (Keras 3, channels last)", highlight=False)
        return
    check_output(out, inputs=[source], overwrite=overwrite, folder=serialization.ARCHITECTURE_FILE)
    if (out / serialization.ARCHITECTURE_FILE).is_file() and not overwrite:
        raise DeepfieldError(f"{out}: holds a saved model already; pass --overwrite to replace it, or choose "
                             "another folder")
    model = keras_files.load_keras(source, input_shape=parse_shape(input_shape) if input_shape else None)
    out.mkdir(parents=True, exist_ok=True)
    serialization.save_model(model, out)
    layers = len(list(model.children()))
    console.print(f"wrote {out / serialization.ARCHITECTURE_FILE} and {out / serialization.WEIGHTS_FILE}: "
                  f"{type(model).__name__} of {layers} layers, input {tuple(model.input_shape)} channels first "
                  f"(load it with deepfield.{type(model).__name__}.load({str(out)!r}))", highlight=False)
