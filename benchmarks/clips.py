"""Deterministic ESC-50-shaped clips (5 s at 44.1 kHz) for the speed benchmarks."""

import numpy as np

SAMPLE_RATE = 44100
NUM_SAMPLES = 5 * SAMPLE_RATE
NUM_CLASSES = 50
IMAGE_SHAPE = (128, 250, 3)


def waveforms(count, seed=0):
    """`[count, 220500]` float32 clips: a tone per clip plus noise, peak about 0.6."""
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    frequency = rng.uniform(100, 8000, (count, 1))
    clips = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.05 * rng.standard_normal((count, NUM_SAMPLES))
    return clips.astype(np.float32)


def labels(count):
    return (np.arange(count) % NUM_CLASSES).astype(np.int64)
