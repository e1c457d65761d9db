"""The options of train.py: one definition gives the flags, their checks and run.json."""

import pytest
from absl import flags

from keras_audio_cnn import cli, config
from keras_audio_cnn.errors import ConfigError

# run.json of a run trained before options were grouped (keras_audio_cnn at 8506787).
OLD_RUN_JSON = {
    "dataset": "audio_folder", "backbone": "MobileNetV3Small", "weights": "none",
    "trainable": "all", "reinit_from": None, "folds": [1, 2], "epochs": 1, "batch_size": 8,
    "learning_rate": 0.0001, "lr_scaling": "linear", "weight_decay": 0.001,
    "lr_decay_epochs": 30, "lr_decay_factor": 0.1, "dropout": 0.0, "precise_bn": True,
    "augment": "paper,specaugment", "runs": 1, "deterministic": False,
    "precision": "float32", "jit_compile": "auto", "seed": 0, "data_dir": "/data/tfds",
    "manual_dir": None, "audio_dir": "/data/audio", "sample_rate": 8000,
    "clip_seconds": 0.5, "num_folds": 3, "model_dir": "/runs/single", "verbose": 2,
    "ray_address": None, "ray_gpus_per_task": None, "ray_cpus_per_task": 1,
    "ray_retries": 2, "tasks": ["fold1", "fold2"],
}


def parse(*argv):
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    flag_values(["train.py", *argv])
    return cli.from_flag_values(flag_values)


def test_every_option_is_a_flag_with_its_default():
    assert parse().to_flags() == config.TrainConfig().to_flags()
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values)
    assert set(flag_values) == set(config.TrainConfig().to_flags())
    for name, field_default in config.TrainConfig().to_flags().items():
        assert flag_values[name].help, name


def test_flags_reach_their_groups_and_round_trip_through_run_json():
    parsed = parse("--backbone=ResNet50", "--epochs=5", "--augment=paper,mixup", "--folds=3,1",
                   "--ray_address=local", "--ray_retries=0", "--noprecise_bn",
                   "--precision=mixed", "--audio_dir=/x")
    assert parsed.model.backbone == "ResNet50" and parsed.optim.epochs == 5
    assert parsed.augment == ("paper", "mixup") and parsed.folds == (3, 1)
    assert parsed.ray.address == "local" and parsed.ray.retries == 0
    assert parsed.optim.precise_bn is False and parsed.precision == "mixed"
    assert parsed.data.audio_dir == "/x"
    recorded = parsed.to_flags()
    assert recorded["augment"] == "paper,mixup" and recorded["folds"] == [3, 1]
    assert config.TrainConfig.from_flags(recorded) == parsed
    assert parse("--augment=none").to_flags()["augment"] == "none"


def test_a_run_json_written_before_the_options_were_grouped_reads_back_the_same():
    old = config.TrainConfig.from_flags(OLD_RUN_JSON)
    assert old.augment == ("paper", "specaugment") and old.folds == (1, 2)
    assert old.data.sample_rate == 8000 and old.optim.batch_size == 8
    recorded = old.to_flags()
    # Options added since (--overwrite, --amsgrad) take their defaults, --amsgrad the
    # family's (off for an ImageNet backbone, as Adam was before it existed).
    assert recorded == {**{k: v for k, v in OLD_RUN_JSON.items() if k != "tasks"},
                        "overwrite": False, "amsgrad": False}
    assert old.model_differences(OLD_RUN_JSON) == []


@pytest.mark.parametrize("argv, message", [
    ("--precision=half", "flag --precision=half: value should be one of <float32|mixed>"),
    ("--jit_compile=yes", "flag --jit_compile=yes: value should be one of <auto|true|false>"),
    ("--lr_scaling=square", "value should be one of <linear|sqrt|none>"),
    ("--augment=paper,pitch", "'pitch' is not one of none, paper, specaugment, mixup"),
    ("--folds=1,x", "'1,x' must be whole numbers"),
    ("--epochs=many", "flag --epochs=many"),
])
def test_absl_refuses_values_outside_a_flags_type_or_choices(argv, message):
    with pytest.raises(flags.IllegalFlagValueError) as error:
        parse(argv)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_config_checks_values_given_from_python():
    with pytest.raises(ConfigError, match="unknown --precision='half'; use one of float32"):
        config.TrainConfig(precision="half")
    with pytest.raises(ConfigError, match="unknown --augment='pitch'"):
        config.TrainConfig().replace(augment="paper,pitch")
    with pytest.raises(TypeError, match="no such option: epoch"):
        config.TrainConfig().replace(epoch=3)

