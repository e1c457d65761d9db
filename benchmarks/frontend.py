"""Benchmark 1: the in-model spectrogram frontend against per-clip librosa.

The baseline is the reference implementation's approach: each clip's three
log-mel spectrograms computed one clip at a time on the CPU (librosa here, PIL
resizing), in one process. The project's frontend computes a batch of 32 inside
the model. A second row compares the training copies: the reference pitch-shifts
and time-stretches every copy with librosa before its spectrograms; the project
augments the log-mel image inside the training graph.
"""

import numpy as np
import tensorflow as tf

from benchmarks import clips, common, reference
from keras_audio_cnn import augment, frontend

BATCH = 32


def run(min_seconds=10.0):
    waveforms = clips.waveforms(BATCH)
    image_model = frontend.build_frontend(clips.SAMPLE_RATE, clips.NUM_SAMPLES)
    images = tf.function(lambda w: image_model(w, training=False))
    batch = tf.constant(waveforms)
    ours = common.throughput(lambda: images(batch).numpy(), BATCH, min_seconds=min_seconds)
    # The reference does one clip per call; time it over the same 32 clips.
    per_clip = lambda: [reference.log_mel_image(c, clips.SAMPLE_RATE) for c in waveforms]  # noqa: E731
    baseline = common.throughput(per_clip, BATCH, warmup=0, min_seconds=min_seconds, min_calls=1)
    difference = np.abs(images(batch).numpy()[:4] - np.stack(
        [reference.log_mel_image(c, clips.SAMPLE_RATE) for c in waveforms[:4]]))
    rows = [common.row(
        "1 frontend", "3-channel log-mel images, ESC-50 clips, batch 32", ours, baseline,
        "clips/s", ratio=ours / baseline, target=">= 40x", met=ours / baseline >= 40,
        note=f"baseline: librosa + PIL per clip, 1 process; max difference "
             f"{difference.max():.3f} dB, mean {difference.mean():.4f} dB")]

    # A floor under any STFT-based frontend: the 4410-point real FFTs alone (500 +
    # 200 + 100 frames a clip) on already-framed random data, nothing else.
    frames = tf.random.normal([BATCH * 800, 4410], seed=0)
    fft = tf.function(lambda x: tf.signal.rfft(x))
    fft_rate = common.throughput(lambda: fft(frames).numpy(), BATCH, min_seconds=min_seconds)
    rows.append(common.row(
        "1 frontend", "the 800 FFTs of 4410 points per clip alone (tf.signal.rfft)", fft_rate,
        baseline, "clips/s", ratio=fft_rate / baseline,
        note="an upper bound for any frontend computing these spectrograms with FFTs"))

    layer = augment.Augment(("paper",), clips.SAMPLE_RATE, seed=0)
    flags = tf.ones([BATCH])
    augmented = tf.function(lambda w: layer([image_model(w, training=False), flags],
                                            training=True))
    ours_aug = common.throughput(lambda: augmented(batch).numpy(), BATCH,
                                 min_seconds=min_seconds)
    rng = np.random.default_rng(0)
    few = waveforms[:4]
    reference_aug = lambda: [reference.augmented_log_mel_image(c, clips.SAMPLE_RATE, rng)  # noqa: E731
                             for c in few]
    baseline_aug = common.throughput(reference_aug, len(few), warmup=0,
                                     min_seconds=min_seconds, min_calls=1)
    rows.append(common.row(
        "1 frontend", "augmented training copies (pitch shift + time stretch), batch 32",
        ours_aug, baseline_aug, "clips/s", ratio=ours_aug / baseline_aug,
        note="baseline: librosa pitch_shift + time_stretch + spectrograms per clip; "
             "ours: the Augment layer on the image (an approximation, see augment.py)"))
    return rows
