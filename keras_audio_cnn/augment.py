"""Augmentation: the `--augment` policies, what each needs, and how they run.

Palanisamy, Singhania and Yao (2020) add to every training clip an augmented
copy: a random pitch shift (whole semitones in [-2, 2]) and a random time
stretch (rate in [0.9, 1.2)). Their code does this to the waveform with
librosa, once per example on the CPU. Here it runs on the training device, in
the training model, between the frontend and the normalisation:

    waveform, flag -> frontend -> Augment -> normalization -> backbone ...

The policies (`config.AUGMENT_POLICIES`) and what each needs of a run:

- "paper" and "specaugment" act on the log-mel image (`image_transforms`), in
  the training model's `Augment` layer, on the clips flagged 1.0: for ImageNet
  backbones (the paper's protocol) the training data holds every clip twice, the
  copy flagged; for PANNs every training clip is flagged, as their model applies
  SpecAugment to every clip it trains on (with their mask widths);
- "mixup" mixes batches of waveforms in the input pipeline (`mixup`): the labels
  become soft (one-hot, mixed) and the loss categorical cross-entropy. Its Beta
  parameter is the family's (0.2 here before; PANNs' 1.0).

`AugmentPlan` is a run's `--augment` value and backbone family, parsed once: the
trainer asks it for the training and validation data, the training model and the
loss. The saved inference model is built from the same layers without `Augment`,
so it never contains augmentation.
"""

import dataclasses

import keras
import tensorflow as tf

from keras_audio_cnn import backbones, config, devices, image_transforms
from keras_audio_cnn import model as model_lib

# The policies the `Augment` layer applies to images; "mixup" acts on the data.
IMAGE_POLICIES = ("paper", "specaugment")
MIXUP = "mixup"
assert set(config.AUGMENT_POLICIES) == {*IMAGE_POLICIES, MIXUP}


@dataclasses.dataclass(frozen=True)
class AugmentPlan:
    """What a run's augmentation policies need of its data, model and loss.

    Args:
        policies: names from `config.AUGMENT_POLICIES` (a validated
            `TrainConfig.augment`); empty for no augmentation.
        backbone: the run's backbone, whose family decides whether images are
            augmented on added copies, mixup's Beta parameter, and the images'
            bands, floor and SpecAugment widths.
    """

    policies: tuple = ()
    backbone: str = "DenseNet201"

    @classmethod
    def of(cls, run_config):
        """The plan of a `config.TrainConfig`."""
        return cls(run_config.augment, run_config.model.backbone)

    @property
    def family(self):
        return backbones.family_of(self.backbone)

    @property
    def image_policies(self):
        """The policies the training model's `Augment` layer applies."""
        return tuple(p for p in self.policies if p in IMAGE_POLICIES)

    @property
    def copies(self):
        """Whether every training clip also comes as an augmented copy (the paper's)."""
        return bool(self.image_policies) and self.family.augment_copies

    @property
    def augment_every_clip(self):
        """Whether every training clip itself is augmented (PANNs')."""
        return bool(self.image_policies) and not self.family.augment_copies

    @property
    def flag_input(self):
        """Whether the training model takes `(waveform, augment_flag)`."""
        return bool(self.policies)

    @property
    def soft_labels(self):
        """Whether labels are one-hot vectors (mixup mixes them)."""
        return MIXUP in self.policies

    def loss(self):
        loss = (keras.losses.CategoricalCrossentropy if self.soft_labels
                else keras.losses.SparseCategoricalCrossentropy)
        return loss(from_logits=True)

    def train_data(self, source, task, batch_size, *, num_classes, seed, drop_remainder):
        """The shuffled training batches `fit` takes, augmented copies and mixes included."""
        ds = source.load(task, "train", batch_size, shuffle=True, seed=seed,
                         flags=self.flag_input, copies=self.copies,
                         flag_value=float(self.augment_every_clip),
                         drop_remainder=drop_remainder)
        if self.soft_labels:
            return mixup(ds, num_classes, alpha=self.family.mixup_alpha, seed=seed)
        return ds

    def valid_data(self, source, task, batch_size, *, num_classes, drop_remainder):
        """The validation batches `fit` takes, in the training model's input form."""
        ds = source.load(task, "valid", batch_size, flags=self.flag_input,
                         drop_remainder=drop_remainder)
        if self.soft_labels:
            ds = ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))
        return ds

    def training_model(self, model, sample_rate, seed):
        """The model `fit` trains: `model` with `Augment` between frontend and backbone.

        It takes `(waveform, augment_flag)` and shares every layer, so training it
        trains `model`, which stays free of augmentation (and is what is saved). It
        has `model`'s dtype policy (compile() adds loss scaling for mixed_float16);
        the augmentation, like the frontend, is float32. Without policies it is
        `model` itself.
        """
        if not self.flag_input:
            return model
        settings = model_lib.family(self.backbone).augment_settings(self.backbone, sample_rate)
        with devices.dtype_policy(model.dtype_policy.name):
            flag = keras.Input(shape=(), name="augment_flag")
            image = model.get_layer("logmel_image").output
            x = Augment(self.image_policies, seed=seed, name="augment", dtype="float32",
                        **settings)([image, flag])
            start = [layer.name for layer in model.layers].index("logmel_image") + 1
            for layer in model.layers[start:]:
                x = layer(x)
            return keras.Model([model.input, flag], x, name=f"{model.name}_training")


@keras.saving.register_keras_serializable(package="keras_audio_cnn")
class Augment(keras.layers.Layer):
    """Augments the flagged examples of a batch of log-mel images in training.

    Called on `[images, flag]`: `images` `[batch, bands, frames, channels]` from
    the frontend, `flag` float `[batch]` (or `[batch, 1]`), 1.0 for the copies to
    augment and 0.0 for the originals. In training, each flagged example gets,
    in order:

    - "paper": a pitch shift by a whole number of semitones drawn uniformly
      from [-2, 2] and a time stretch by a rate drawn uniformly from
      [0.9, 1.2) (Palanisamy et al., 2020), see `image_transforms.pitch_shift`,
      `image_transforms.time_stretch`;
    - "specaugment": time and frequency masks, see
      `image_transforms.spec_augment`.

    Unflagged examples (flag <= 0.5), and every example when `training` is not
    True, come out exactly as they came in. Put it in a training-only model
    between the frontend and the normalisation; leave it out of the saved one.

    Args:
        policies: a tuple of names from `IMAGE_POLICIES`; empty means no augmentation.
        sample_rate: sample rate of the audio behind the images, in Hz (sets
            the mel scale for the pitch shift).
        seed: int seed of the layer's `keras.random.SeedGenerator`: the same
            seed gives the same draws, call after call, run to run.
        time_masks, time_width, freq_masks, freq_width, fill: the
            "specaugment" settings, as in `image_transforms.spec_augment`.
        band_hz: the centre frequencies of the image's bands for the pitch shift
            (None: the paper's HTK bands of `sample_rate`).
        floor_db: the image's value for silence, which out-of-range reads and the
            "floor" fill take (the paper's frontend: -60 dB).

    Example:

    ```python
    images = frontend.log_mel_image(waveform, sample_rate, num_samples)
    images = Augment(("paper",), sample_rate, seed=0)([images, flag])
    ```

    Reference: K. Palanisamy, D. Singhania, A. Yao, "Rethinking CNN Models for
    Audio Classification", arXiv:2007.11154, 2020.
    """

    def __init__(
        self,
        policies=("paper",),
        sample_rate=44100,
        seed=None,
        time_masks=image_transforms.TIME_MASKS,
        time_width=image_transforms.TIME_WIDTH,
        freq_masks=image_transforms.FREQ_MASKS,
        freq_width=image_transforms.FREQ_WIDTH,
        fill="floor",
        band_hz=None,
        floor_db=image_transforms.FLOOR_DB,
        **kwargs,
    ):
        super().__init__(**kwargs)
        policies = (policies,) if isinstance(policies, str) else tuple(policies)
        unknown = [p for p in policies if p not in IMAGE_POLICIES]
        if unknown:
            raise ValueError(
                f"unknown augmentation policies {unknown}; choose from: "
                f"{', '.join(IMAGE_POLICIES)}"
            )
        if fill not in image_transforms.FILLS:
            raise ValueError(
                f"unknown fill {fill!r}; choose one of: {', '.join(image_transforms.FILLS)}")
        self.policies = policies
        self.sample_rate = sample_rate
        self.seed = seed
        self.time_masks = time_masks
        self.time_width = time_width
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.fill = fill
        self.band_hz = None if band_hz is None else [float(f) for f in band_hz]
        self.floor_db = float(floor_db)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        images, flag = inputs
        if not training or not self.policies:
            return images
        augmented = images
        batch = tf.shape(images)[0]
        if "paper" in self.policies:
            low, high = image_transforms.PAPER_SEMITONES
            semitones = keras.random.randint(
                tf.reshape(batch, [1]), low, high + 1, seed=self.seed_generator
            )
            rate = keras.random.uniform(
                tf.reshape(batch, [1]), *image_transforms.PAPER_RATES, seed=self.seed_generator
            )
            augmented = image_transforms.pitch_shift(augmented, semitones, self.sample_rate,
                                                     self.band_hz, self.floor_db)
            augmented = image_transforms.time_stretch(augmented, rate, self.floor_db)
        if "specaugment" in self.policies:
            augmented = image_transforms.spec_augment(
                augmented,
                seed=self.seed_generator,
                time_masks=self.time_masks,
                time_width=self.time_width,
                freq_masks=self.freq_masks,
                freq_width=self.freq_width,
                fill=self.fill,
                floor_db=self.floor_db,
            )
        selected = tf.reshape(tf.cast(flag, tf.float32), [-1, 1, 1, 1]) > 0.5
        return tf.where(selected, augmented, images)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            policies=list(self.policies),
            sample_rate=self.sample_rate,
            seed=self.seed,
            time_masks=self.time_masks,
            time_width=self.time_width,
            freq_masks=self.freq_masks,
            freq_width=self.freq_width,
            fill=self.fill,
            band_hz=self.band_hz,
            floor_db=self.floor_db,
        )
        return config


def mixup(dataset, num_classes, alpha=0.2, seed=0):
    """Mixes every batch with a shuffled copy of itself (Zhang et al., 2018).

    For each example `i` of a batch, with `j = perm[i]` a random permutation of
    the batch and `lam_i ~ Beta(alpha, alpha)` (drawn as `g1 / (g1 + g2)`,
    `g1, g2 ~ Gamma(alpha)`):

        waveform_i <- lam_i * waveform_i + (1 - lam_i) * waveform_j
        label_i    <- lam_i * one_hot(label_i) + (1 - lam_i) * one_hot(label_j)
        flag_i     <- max(flag_i, flag_j)

    so a mix containing an augmented copy is augmented (`Augment` then
    transforms the whole mixed waveform's image).

    Draws come from `tf.random.stateless_*` ops seeded by `(seed, batch
    number)`: the same seed gives the same output for the same input. The
    batch number restarts each time the dataset is iterated, so when Keras
    iterates it again every epoch, batch `k` reuses its permutation and
    coefficients (over different examples if the input is reshuffled); to get
    fresh draws every epoch, mix a `.repeat()`ed dataset and pass
    `steps_per_epoch` to `fit`.

    Args:
        dataset: a batched `tf.data.Dataset` of `((waveform, flag), label)`:
            float32 `[batch, num_samples]`, float32 `[batch]` and integer
            `[batch]` class indices.
        num_classes: number of classes of the one-hot labels.
        alpha: the Beta distribution's parameter; small values keep most
            mixes close to one of the two examples.
        seed: int seed.

    Returns:
        A dataset of `((waveform, flag), labels)` with float32 `[batch,
        num_classes]` soft labels summing to 1; train with
        `keras.losses.CategoricalCrossentropy`.
    """

    def mix(index, example):
        (waveform, flag), label = example
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.cast(seed, tf.int64), index]), num=3
        )
        batch = tf.shape(label)[0]
        order = tf.argsort(tf.random.stateless_uniform([batch], seed=seeds[0]))
        gamma_1 = tf.random.stateless_gamma([batch], seeds[1], alpha, dtype=tf.float64)
        gamma_2 = tf.random.stateless_gamma([batch], seeds[2], alpha, dtype=tf.float64)
        # Both draws can underflow to 0 for small alpha; lam is then 0.5.
        total = gamma_1 + gamma_2
        lam = tf.where(total > 0, gamma_1 / tf.where(total > 0, total, 1.0), 0.5)
        lam = tf.cast(lam, tf.float32)

        def blend(values):
            values = tf.cast(values, tf.float32)
            weight = tf.reshape(lam, [-1] + [1] * (len(values.shape) - 1))
            return weight * values + (1.0 - weight) * tf.gather(values, order)

        one_hot = tf.one_hot(tf.reshape(label, [-1]), num_classes, dtype=tf.float32)
        flag = tf.cast(flag, tf.float32)
        mixed_flag = tf.maximum(flag, tf.gather(flag, order))
        return (blend(waveform), mixed_flag), blend(one_hot)

    return dataset.enumerate().map(mix, num_parallel_calls=tf.data.AUTOTUNE)
