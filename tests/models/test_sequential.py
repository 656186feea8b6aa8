"""Sequential container, Keras naming, summary counts and the lecture-cnn preset."""
import pytest
import torch

from deepfield.errors import DeepfieldError
from deepfield.models import BatchNormalization, Conv2D, Dense, Dropout, Flatten
from deepfield.models import zoo
from deepfield.models.base import snake_case
from deepfield.models.sequential import Sequential
from deepfield.models.summary import summarize


def test_snake_case_matches_keras_default_names():
    assert snake_case("Conv2D") == "conv2d"
    assert snake_case("MaxPooling2D") == "max_pooling2d"
    assert snake_case("BatchNormalization") == "batch_normalization"
    assert snake_case("GlobalAveragePooling2D") == "global_average_pooling2d"


def test_layers_get_keras_names_and_state_dict_keys():
    model = Sequential([Dense(4, input_shape=(3,)), Dense(4), Dense(1)])
    assert list(model._modules) == ["dense", "dense_1", "dense_2"]
    model.build()
    assert list(model.state_dict()) == [f"{n}.{p}" for n in ("dense", "dense_1", "dense_2") for p in ("weight", "bias")]


def test_duplicate_explicit_name_is_refused():
    model = Sequential([Dense(2, name="head")])
    with pytest.raises(DeepfieldError, match="already has a layer named 'head'"):
        model.add(Dense(2, name="head"))


def test_conv_parameter_count_from_the_course():
    # (F*F*C_in + 1) * C_out = (5*5*3 + 1) * 32
    s = summarize(Sequential([Conv2D(32, 5)]), (3, 64, 64))
    assert s.total == 2432
    assert s.rows[0].output_shape == (32, 60, 60)


def test_lecture_cnn_matches_keras_parameter_count():
    s = summarize(zoo.get("lecture-cnn"))
    assert s.total == 2_330_209
    assert s.trainable == 2_330_209 and s.non_trainable == 0
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["conv2d"] == (32, 64, 64)
    assert shapes["max_pooling2d_1"] == (128, 16, 16)
    assert shapes["flatten"] == (32768,)
    assert shapes["dense_1"] == (1,)
    dense = next(r for r in s.rows if r.name == "dense")
    assert dense.params == 32768 * 64 + 64
    assert dense.mult_adds == 32768 * 64
    conv = next(r for r in s.rows if r.name == "conv2d")
    assert conv.mult_adds == 64 * 64 * 32 * (6 * 6 * 1)  # one MAC per kernel tap per output value
    assert conv.activation_bytes == 32 * 64 * 64 * 4


def test_batchnorm_moving_stats_count_as_non_trainable_like_keras():
    s = summarize(Sequential([Conv2D(16, 3), BatchNormalization()]), (1, 16, 16))
    bn = s.rows[1]
    assert (bn.trainable, bn.non_trainable) == (32, 32)
    assert s.non_trainable == 32


def test_summary_text_has_table_and_totals():
    text = str(summarize(zoo.get("lecture-cnn")))
    assert "conv2d (Conv2D)" in text and "(None, 32, 64, 64)" in text
    assert "Total params: 2,330,209" in text
    assert "Mult-adds per sample" in text


def test_summary_without_input_shape_explains_what_to_do():
    with pytest.raises(DeepfieldError, match="needs the input shape"):
        summarize(Sequential([Dense(3)]))


def test_summary_with_wrong_input_shape_is_one_clear_error():
    model = zoo.get("mlp", input_shape=(10,)).build()
    with pytest.raises(DeepfieldError, match=r"input shape \(12,\) does not fit the model"):
        summarize(model, (12,))


def test_config_round_trip_rebuilds_the_same_function():
    torch.manual_seed(0)
    model = Sequential([Conv2D(4, 3, padding="same", activation="relu", input_shape=(2, 8, 8)),
                        Flatten(), Dropout(0.1), Dense(3, activation="softmax")])
    model.build()
    clone = Sequential.from_config(model.get_config()).build()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(5, 2, 8, 8)
    model.eval(), clone.eval()
    assert torch.equal(model(x), clone(x))


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(DeepfieldError, match="unknown model preset 'resnet9000'; expected one of: .*lecture-cnn"):
        zoo.get("resnet9000")


def test_summary_feeds_presets_with_two_inputs():
    with_ebv = summarize(zoo.get("pasquet", input_shape=(5, 32, 32), use_ebv=True))
    without = summarize(zoo.get("pasquet", input_shape=(5, 32, 32)))
    assert with_ebv.total - without.total == 1096  # E(B-V) joins the first 1096-unit dense layer
