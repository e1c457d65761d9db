"""Model building: backbones by name, weights routes, frozen backbones."""

import keras
import numpy as np
import pytest

from keras_audio_cnn import model as model_lib
from keras_audio_cnn.backbones import imagenet

ESC50_RATE, ESC50_SAMPLES = 44100, 220500


@pytest.mark.parametrize("backbone", ["DenseNet201", "ResNet50", "InceptionV3"])
def test_paper_backbones_give_50_logits_at_the_esc50_input(backbone):
    model = model_lib.build_model(backbone, 50, ESC50_RATE, ESC50_SAMPLES, weights="none")
    waveforms = np.random.default_rng(0).uniform(-0.5, 0.5, (2, ESC50_SAMPLES)).astype("float32")
    logits = model.predict(waveforms, verbose=0)
    assert logits.shape == (2, 50)
    assert np.isfinite(logits).all()
    assert model.input_shape == (None, ESC50_SAMPLES)


def test_unknown_backbone_is_one_line_listing_valid_names():
    with pytest.raises(model_lib.ModelConfigError) as error:
        model_lib.build_model("DenseNet999", 50, ESC50_RATE, ESC50_SAMPLES, weights="none")
    message = str(error.value)
    assert "\n" not in message
    assert "DenseNet999" in message and "DenseNet201" in message and "ResNet50" in message


def test_weights_file_loads_into_the_backbone(tmp_path):
    source = imagenet.build_backbone("MobileNetV3Small", (128, 50, 3), weights="none")
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    model = model_lib.build_model("MobileNetV3Small", 10, 8000, 8000, weights=path)
    loaded = model_lib.get_backbone(model).get_weights()
    fresh = model_lib.get_backbone(
        model_lib.build_model("MobileNetV3Small", 10, 8000, 8000, weights="none")
    ).get_weights()
    assert len(loaded) == len(source.get_weights())
    for a, b in zip(loaded, source.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, loaded))


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(model_lib.ModelConfigError, match="does not exist"):
        model_lib.build_model(
            "MobileNetV3Small", 10, 8000, 8000, weights=str(tmp_path / "nope.h5")
        )


def test_head_mode_trains_only_the_classifier():
    model = model_lib.build_model(
        "MobileNetV3Small", 10, 8000, 8000, weights="none", trainable="head"
    )
    assert [v.path for v in model.trainable_variables] == [
        "predictions/kernel",
        "predictions/bias",
    ]
    full = model_lib.build_model("MobileNetV3Small", 10, 8000, 8000, weights="none")
    assert len(full.trainable_variables) > 50


@pytest.mark.parametrize("backbone", ["DenseNet201", "ResNet50", "InceptionV3", "EfficientNetB0"])
def test_normalization_maps_training_statistics_to_the_backbone_input_statistics(backbone):
    mean, variance = np.array([-20.0, -10.0, 5.0]), np.array([100.0, 49.0, 4.0])
    norm_mean, norm_variance = imagenet.normalization_weights(backbone, mean, variance)
    target_mean, target_std = imagenet.backbone_input_statistics(backbone)
    layer = keras.layers.Normalization(mean=norm_mean, variance=norm_variance)
    rng = np.random.default_rng(0)
    images = (mean + np.sqrt(variance) * rng.standard_normal((4096, 3))).astype("float32")
    out = np.asarray(layer(images))
    np.testing.assert_allclose(out.mean(axis=0), target_mean, atol=0.05 * float(target_std.min()))
    np.testing.assert_allclose(out.std(axis=0), target_std, rtol=0.05)


def test_backbone_input_statistics_follow_each_family():
    # DenseNet ("torch" preprocessing) expects ImageNet-standardised pixels.
    mean, std = imagenet.backbone_input_statistics("DenseNet201")
    np.testing.assert_allclose(mean, 0.0, atol=1e-5)
    np.testing.assert_allclose(std, 1.0, atol=1e-5)
    # InceptionV3 ("tf") expects [-1, 1]; EfficientNet rescales raw 0-255 pixels itself.
    _, std = imagenet.backbone_input_statistics("InceptionV3")
    np.testing.assert_allclose(std, 58.0 / 127.5, rtol=0.03)
    mean, _ = imagenet.backbone_input_statistics("EfficientNetB0")
    np.testing.assert_allclose(mean, [123.675, 116.28, 103.53], rtol=1e-5)


def test_trainable_from_a_block_freezes_the_layers_before_it():
    model = model_lib.build_model(
        "DenseNet121", 10, 8000, 8000, weights="none", trainable="from:conv4_block1"
    )
    backbone = model_lib.get_backbone(model)
    start = model_lib.block_start(backbone, "conv4_block1", "--trainable")
    assert backbone.layers[start].name.startswith("conv4_block1_")
    assert not any(layer.trainable for layer in backbone.layers[:start] if layer.weights)
    assert all(layer.trainable for layer in backbone.layers[start:])
    trainable = {v.path.split("/")[0] for v in model.trainable_variables}
    assert "conv4_block1_1_conv" in trainable and "conv3_block12_2_conv" not in trainable
    assert "predictions" in trainable


def test_unknown_block_is_one_line_listing_the_blocks():
    with pytest.raises(model_lib.ModelConfigError) as error:
        model_lib.check_options("DenseNet121", "none", "from:conv9_block1")
    message = str(error.value)
    assert "\n" not in message and "conv9_block1" in message
    assert "conv4_block1, conv4_block2" in message
    with pytest.raises(model_lib.ModelConfigError, match="--reinit_from.*block5a"):
        model_lib.check_options("EfficientNetB0", "none", "all", reinit_from="block9z")
    with pytest.raises(model_lib.ModelConfigError, match="from:<block>"):
        model_lib.check_options("DenseNet121", "none", "some")


def test_reinit_from_keeps_the_loaded_weights_before_the_block_only(tmp_path):
    source = imagenet.build_backbone("DenseNet121", (128, 50, 3), weights="none")
    path = str(tmp_path / "backbone.weights.h5")
    source.save_weights(path)
    model = model_lib.build_model(
        "DenseNet121", 10, 8000, 8000, weights=path, reinit_from="conv5_block1"
    )
    backbone = model_lib.get_backbone(model)
    start = model_lib.block_start(backbone, "conv5_block1", "--reinit_from")
    for index, (ours, theirs) in enumerate(zip(backbone.layers, source.layers)):
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            if index < start:
                np.testing.assert_array_equal(a, b)
    changed = [
        not np.array_equal(a, b)
        for ours, theirs in zip(backbone.layers[start:], source.layers[start:])
        if isinstance(ours, keras.layers.Conv2D)
        for a, b in zip(ours.get_weights(), theirs.get_weights())
    ]
    assert changed and all(changed)  # every conv kernel after the block re-drawn
