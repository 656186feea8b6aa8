"""Layer features: the width of the chosen layer, the layer before the head, and a clean model after."""
import numpy as np
import pytest
import torch
from astropy.table import Table
from torch import nn

from deepfield.analysis.layer_features import default_layer, layer_features, layer_names
from deepfield.errors import DeepfieldError
from deepfield.models.conv import Conv2D
from deepfield.models.core import Dense, Dropout, Flatten
from deepfield.models.presets.course import lecture_cnn
from deepfield.models.presets.pasquet import Pasquet
from deepfield.models.presets.resnet import resnet
from deepfield.models.sequential import Sequential
from deepfield.tasks.run import features_run
from helpers import small_resnet, stamps


def small_net(dropout: float = 0.0) -> Sequential:
    """Conv(4, 3×3 valid) → Flatten → Dense(16, relu) [→ Dropout] → Dense(3) on (1, 8, 8) stamps."""
    torch.manual_seed(0)
    layers = [Conv2D(4, 3), Flatten(), Dense(16, activation="relu")]
    layers += [Dropout(dropout)] if dropout else []
    return Sequential([*layers, Dense(3)], input_shape=(1, 8, 8)).build()


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_the_default_layer_is_the_one_before_the_head_and_gives_its_width():
    model = small_net()
    assert layer_names(model) == ["conv2d", "flatten", "dense", "dense_1"]
    assert default_layer(model) == "dense"
    assert layer_features(model, stamps(10), batch_size=4, device="cpu").shape == (10, 16)
    assert layer_features(model, stamps(10), layer="conv2d", device="cpu").shape == (10, 4 * 6 * 6)


def test_features_are_the_layer_output_flattened():
    model, x = small_net(), stamps(10)
    expected = torch.from_numpy(x)
    with torch.no_grad():
        for layer in list(model)[:3]:
            expected = layer(expected)
    np.testing.assert_allclose(layer_features(model, x, device="cpu"), expected.numpy(), rtol=1e-5, atol=1e-6)
    conv = layer_features(model, x, layer="conv2d", device="cpu")
    with torch.no_grad():
        np.testing.assert_allclose(conv, model.conv2d(torch.from_numpy(x)).flatten(1).numpy(), rtol=1e-5, atol=1e-6)


def test_presets_offer_the_representation_before_their_head():
    cnn = lecture_cnn((1, 8, 8), n_outputs=3)
    assert default_layer(cnn) == "dropout_4"
    assert layer_features(cnn, stamps(3), device="cpu").shape == (3, 64)
    assert default_layer(resnet((1, 8, 8), filters=(4, 8), blocks=1)) == "global_average_pooling2d"
    assert default_layer(Pasquet((1, 8, 8), n_bins=4, dense_units=8)) == "dense2"


def test_a_plain_torch_module_offers_dotted_names_and_its_outermost_block_before_the_head():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)])
            self.body = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(32, 5), nn.ReLU()))
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return self.fc(self.body(x))

    net = Net()
    assert "blocks" not in layer_names(net) and "blocks.1" in layer_names(net) and "body.1.0" in layer_names(net)
    assert default_layer(net) == "body"
    assert layer_features(net, stamps(4), device="cpu").shape == (4, 5)
    assert layer_features(net, stamps(4), layer="blocks.0", device="cpu").shape == (4, 2 * 6 * 6)


def test_features_are_deterministic_and_follow_the_weights():
    model = small_net(dropout=0.5).train()
    first = layer_features(model, stamps(10), layer="dropout", device="cpu")
    np.testing.assert_array_equal(first, layer_features(model, stamps(10), layer="dropout", device="cpu"))
    assert model.training and model.dropout.training  # its mode is back
    with torch.no_grad():
        model.dense.weight.add_(0.5)
    assert not np.allclose(first, layer_features(model, stamps(10), layer="dropout", device="cpu"))


def test_the_hook_is_removed_and_the_mode_restored_even_on_error():
    model = small_net().train()
    layer_features(model, stamps(10), device="cpu")
    assert no_hooks(model)
    with pytest.raises(DeepfieldError, match="does not fit"):
        layer_features(model, np.zeros((3, 2, 5, 5), np.float32), device="cpu")
    assert no_hooks(model) and all(m.training for m in model.modules())


def test_an_unknown_layer_names_the_layers_in_order():
    with pytest.raises(DeepfieldError, match=r"no layer 'dense_9' \(did you mean 'dense_1' or 'dense'\?\); "
                                             r"its layers: conv2d, flatten, dense, dense_1$"):
        layer_features(small_net(), stamps(10), layer="dense_9", device="cpu")


def test_models_without_a_layer_before_a_head_ask_for_a_name():
    with pytest.raises(DeepfieldError, match="no layer comes before it"):
        default_layer(Sequential([Dense(2)], input_shape=(4,)).build())
    with pytest.raises(DeepfieldError, match="no Dense/Linear head.*conv2d, flatten"):
        default_layer(Sequential([Conv2D(2, 3), Flatten()], input_shape=(1, 8, 8)).build())


def test_a_two_input_preset_gives_the_layers_before_its_second_input_joins():
    model = Pasquet((1, 8, 8), n_bins=4, dense_units=8, use_ebv=True)
    assert layer_features(model, stamps(2), layer="flatten", device="cpu").shape[0] == 2
    with pytest.raises(DeepfieldError, match="'dense2'.*choose an earlier layer"):
        layer_features(model, stamps(2), device="cpu")
    assert no_hooks(model)


def test_features_run_writes_one_row_per_object_and_one_column_per_feature(tiny_run, tmp_path):
    folder, sky = tiny_run
    table = Table.read(features_run(folder, sky, tmp_path / "features.csv"), format="ascii.csv")
    assert len(table) == 40 and table.colnames == ["id", *(f"f{i}" for i in range(6))]  # 40 objects, 6 filters
    fits = Table.read(features_run(folder, sky, tmp_path / "features.fits", layer="stage2_block1"))
    assert len(fits.colnames) == 1 + 6 * 8 * 8 and fits.meta["LAYER"] == "stage2_block1"


def test_features_run_refuses_an_unknown_format_and_a_too_wide_fits_table(tiny_run, tmp_path):
    folder, sky = tiny_run
    with pytest.raises(DeepfieldError, match=r"features\.txt: write features as \.csv"):
        features_run(folder, sky, tmp_path / "features.txt")
    with pytest.raises(DeepfieldError, match="write .csv or choose a narrower layer"):
        features_run(folder, sky, tmp_path / "features.fits", layer="conv2d")
    assert not (tmp_path / "features.fits").exists()


def test_the_parts_of_a_block_are_layers_by_their_dotted_name():
    model = small_resnet().eval()
    names = layer_names(model)
    assert names[:4] == ["conv2d", "batch_normalization", "activation", "stage1_block1"]
    assert {"stage2_block1.conv1", "stage2_block1.bn1", "stage2_block1.conv2", "stage2_block1.projection.conv2d"} \
        <= set(names)
    assert "conv2d.activation" not in names  # a layer's own activation function is part of that layer
    x = np.random.default_rng(2).normal(size=(3, 3, 32, 32)).astype(np.float32)
    block = model.stage2_block1
    with torch.no_grad():
        h = model.stage1_block1(model.activation(model.batch_normalization(model.conv2d(torch.from_numpy(x)))))
        expected = block.conv2(torch.relu(block.bn1(block.conv1(h))))
    inner = layer_features(model, x, layer="stage2_block1.conv2", device="cpu")
    assert inner.shape == (3, 8 * 16 * 16)
    np.testing.assert_allclose(inner, expected.flatten(1).numpy(), rtol=1e-5, atol=1e-5)


def test_an_unknown_name_in_a_model_with_blocks_names_a_few_layers_and_how_to_list_them_all():
    with pytest.raises(DeepfieldError) as error:
        layer_features(small_resnet(), stamps(10), layer="stage2_block1.conv3", device="cpu")
    message = str(error.value)
    assert "no layer 'stage2_block1.conv3' (did you mean 'stage2_block1.conv2'" in message
    assert "its layers: conv2d, batch_normalization, activation, stage1_block1, stage2_block1, " \
           "global_average_pooling2d, dense and 11 inside them by dotted name (stage1_block1.conv1, ...)" in message
    assert "`deepfield summary RUN --layers` lists them all" in message and "\n" not in message


def test_the_layer_a_time_distributed_wraps_is_not_offered_apart():
    from deepfield.models import zoo
    names = layer_names(zoo.get("dieleman", input_shape=(3, 48, 48), n_views=8, view_size=40, dense_units=4))
    assert "conv1" in names and "conv1.layer" not in names  # it sees the views folded into the batch
