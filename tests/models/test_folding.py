"""Batch normalisation folded into the convolution before it, for inference: same outputs, user's model untouched."""
import torch
from torch import nn

from deepfield.models import Activation, BatchNormalization, Conv2D, Dense, zoo
from deepfield.models.sequential import Sequential
from deepfield.models.folding import fold_batch_norm


def randomise(model: nn.Module) -> None:
    """Statistics and scales away from 0 and 1, so that equality means something."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(("moving_mean", "beta", "bias", "running_mean")):
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator))
            elif name.endswith(("moving_variance", "gamma", "running_var")):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))


def test_unet_folded_gives_the_same_outputs_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = zoo.get("unet", input_shape=(3, 32, 32), depth=2, filters=8).eval()
    randomise(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, 32, 32)
    given = x.clone()
    folded = fold_batch_norm(model)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert torch.equal(x, given)
    assert folded is not model
    assert float(expected.abs().max()) > 1.0
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # every batch norm of the folded copy is gone (two per block: 2 down, the bottleneck, 2 up)
    assert sum(isinstance(m, BatchNormalization) for m in model.modules()) == 10
    assert not any(isinstance(m, BatchNormalization) for m in folded.modules())
    assert sum(isinstance(m, nn.ReLU) and m.inplace for m in folded.modules()) == 10
    for key, value in model.state_dict().items():  # the user's model: same weights, same modules
        assert torch.equal(value, before[key]), key
    assert model.get_layer("down1_conv1").bias is None
    assert isinstance(model.get_layer("down1_conv1_bn"), BatchNormalization)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_channels_last_weights_stay_channels_last():
    model = zoo.get("unet", input_shape=(1, 16, 16), depth=1, filters=4).eval().to(memory_format=torch.channels_last)
    randomise(model)
    folded = fold_batch_norm(model)
    weight = folded.get_layer("down1_conv1")[0].weight  # the folded convolution, then its ReLU in place
    assert weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_sequential_and_plain_torch_fold():
    torch.manual_seed(0)
    ours = Sequential([Conv2D(4, 3, padding="same", input_shape=(2, 8, 8)), BatchNormalization(), Activation("relu"),
                       Conv2D(3, 1, activation="relu"), BatchNormalization()]).eval()
    plain = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()).eval()
    x = torch.randn(6, 2, 8, 8)
    for model, left in ((ours, 1), (plain, 0)):  # a BN after a convolution with an activation stays
        model(x)  # built
        randomise(model)
        folded = fold_batch_norm(model)
        with torch.no_grad():
            torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
        assert sum(isinstance(m, (BatchNormalization, nn.BatchNorm2d)) for m in folded.modules()) == left
        assert sum(isinstance(m, nn.ReLU) and m.inplace for m in folded.modules()) == 1


def test_nothing_to_fold_is_the_model_itself():
    dense = Sequential([Dense(3, input_shape=(4,)), BatchNormalization()]).eval()
    training = zoo.get("unet", input_shape=(1, 16, 16), depth=1, filters=4).train()
    assert fold_batch_norm(dense) is dense
    assert fold_batch_norm(training) is training  # batch statistics: nothing to fold
