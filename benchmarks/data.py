"""Benchmarks 3-5: dataset preparation, the input pipeline alone, and memory.

They use generated archives in ESC-50's real layout (the real one cannot be
downloaded here): 2000 clips of 5 s at 44.1 kHz like ESC-50, and a quarter of it.
"""

import os
import shutil
import sys
import time

from benchmarks import common
from keras_audio_cnn import datasets
from tfds_builders.esc50 import fake_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAW_BYTES_PER_CLIP = 5 * 44100 * 2  # int16


def write_archive(work, clips_per_fold_per_class):
    """A generated `ESC-50-master.zip` of 50 x 5 x clips_per_fold_per_class 5 s clips."""
    manual = os.path.join(work, f"manual_{clips_per_fold_per_class}")
    if not os.path.exists(os.path.join(manual, "ESC-50-master.zip")):
        fake_data.write_fake_esc50(manual, clips_per_fold_per_class=clips_per_fold_per_class,
                                   seconds=5.0, as_zip=True)
    return manual


def full_dataset(work):
    """(data_dir, manual_dir) of the ESC-50-sized generated dataset."""
    return os.path.join(work, "tfds_full"), write_archive(work, 8)


def open_prepared(data_dir, manual_dir):
    return datasets.open_source("esc50", data_dir, manual_dir)


def preparation(work, trials=5):
    """Benchmark 4: wall time of preparing the ESC-50-sized archive, and its size.

    Each trial deletes the prepared dataset and prepares it again.
    """
    data_dir, manual = full_dataset(work)
    load_before, times = common.load_average(), []
    for _ in range(trials):
        shutil.rmtree(data_dir, ignore_errors=True)
        start = time.perf_counter()
        source = datasets.open_source("esc50", data_dir, manual)
        times.append(time.perf_counter() - start)
    load = (load_before, common.load_average())
    clips = sum(source.builder.info.splits[f"fold{k}"].num_examples for k in range(1, 6))
    prepared = common.directory_bytes(os.path.join(data_dir, "esc50"))
    raw = clips * RAW_BYTES_PER_CLIP
    rows = [
        common.row("4 preparation", "ours", f"prepare {clips} clips of 5 s (generated ESC-50 zip)",
                   "s", stats=common.summarize(times), load=load,
                   note="TFDS download_and_prepare from the zip, download excluded; "
                        "lower is better"),
        common.row("4 preparation", "ours", "prepared size vs raw int16 audio", "MB",
                   value=prepared / 1e6, ratio=prepared / raw, reference="raw",
                   target="<= 1.05x", met=prepared / raw <= 1.05,
                   note=f"raw {raw / 1e6:.1f} MB; the reference pickles float audio and "
                        "spectrograms per fold (~14x)"),
    ]
    return rows, source


def pipeline(source, trials=5, seconds=5.0):
    """Benchmark 3: examples/s of the training input pipeline alone, as train.py builds it.

    With the paper's augmentation every clip is read once and delivered twice
    (the copy that the model augments); without it, once. The two variants take
    turns, `trials` trials of at least `seconds` each (whole epochs).
    """
    task = source.tasks[0]
    variants = {copies: source.load(task, "train", 32, shuffle=True, seed=0, flags=True,
                                    copies=copies) for copies in (True, False)}

    def epoch(ds):
        examples = 0
        for (waveform, _), _ in ds:
            examples += int(waveform.shape[0])
        return examples

    for ds in variants.values():
        epoch(ds)  # warm: opens files, fills the shuffle buffer once
    load_before, rates = common.load_average(), {copies: [] for copies in variants}
    lengths = []
    for _ in range(trials):
        for copies, ds in variants.items():
            examples, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                examples += epoch(ds)
            elapsed = time.perf_counter() - start
            lengths.append(elapsed)
            rates[copies].append(examples / elapsed)
    load = (load_before, common.load_average())
    rows = []
    for copies, values in rates.items():
        stats = common.summarize(values)
        what = ("with the augmented copies (each clip read once, delivered twice)"
                if copies else "clips read, no copies (--augment=none)")
        rows.append(common.row(
            "3 input pipeline", "ours", f"TFDS read, decode, shuffle, batch 32 of {task.train}: "
            f"{what}", "examples/s" if copies else "clips/s", stats=stats,
            target="" if copies else ">= 1000 clips/s",
            met=None if copies else stats["median"] >= 1000,
            trial_seconds=sum(lengths) / len(lengths), load=load,
            note="augmentation itself runs in the model"))
    return rows


def memory(work, backbone="MobileNetV3Small"):
    """Benchmark 5: peak RSS of train.py for one epoch over N vs 4N clips.

    Each dataset is prepared first in its own process, so the figure is training's.
    """
    results = {}
    for per_class, name in ((2, "N"), (8, "4N")):
        manual = write_archive(work, per_class)
        data_dir = os.path.join(work, f"tfds_{per_class}")
        flags = [f"--data_dir={data_dir}", f"--manual_dir={manual}", "--dataset=esc50"]
        common.peak_rss_mb([sys.executable, "-c",
                            "import sys; from keras_audio_cnn import datasets; "
                            "datasets.open_source('esc50', sys.argv[1], sys.argv[2])",
                            data_dir, manual], cwd=ROOT)
        model_dir = os.path.join(work, f"memory_{per_class}")
        shutil.rmtree(model_dir, ignore_errors=True)
        peak, _ = common.peak_rss_mb(
            [sys.executable, os.path.join(ROOT, "train.py"), *flags, f"--backbone={backbone}",
             "--weights=none", "--folds=1", "--epochs=1", "--verbose=0",
             f"--model_dir={model_dir}"], cwd=ROOT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        results[name] = (peak, 4 * 50 * per_class)  # 4 training folds x 50 classes
    (small, n), (large, n4) = results["N"], results["4N"]
    change = large / small - 1
    return [common.row(
        "5 memory", "ours", f"peak RSS, train.py 1 epoch, {n4} vs {n} training clips ({backbone})",
        "MB", value=large, ratio=1 + change, reference=f"{small:,.0f} MB", target="< 10% more",
        met=abs(change) < 0.10,
        note="one run each; whole run: statistics pass, epoch with copies, precise BN, "
             "evaluation, export")]


def input_wait(source, fitted, batch_size, steps=6):
    """Fraction of training-step time spent waiting for the next batch."""
    task = source.tasks[0]
    ds = source.load(task, "train", batch_size, shuffle=True, seed=0, flags=True, copies=True)
    iterator = iter(ds)
    x, y = next(iterator)
    fitted.train_on_batch(x, y)  # traces the step
    waiting = total = 0.0
    for _ in range(steps):
        start = time.perf_counter()
        x, y = next(iterator)
        got = time.perf_counter()
        fitted.train_on_batch(x, y)
        waiting += got - start
        total += time.perf_counter() - start
    return waiting / total
