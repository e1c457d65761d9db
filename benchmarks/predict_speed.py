"""predict.py's throughput on a trained run: files/s and audio-hours per hour.

    python -m benchmarks.predict_speed --model_dir=runs/esc50_DenseNet201

Writes, in a temporary folder, `--files` 16-bit mono WAV files of one clip each at
the run's sample rate (ESC-50's shape: a folder of 5 s clips) and one recording of
`--long_minutes` minutes (windows every half clip, predict.py's default hop); loads
the run's ensemble once (timed apart), warms it up, then times
`keras_audio_cnn.predict.classify` over the folder and over the long recording in
interleaved trials (folder, long, folder, long, ...). Prints the median, min and
max of each, the load average before and after, and the process's peak resident
memory. Every model of the run is averaged, as predict.py does: a 5-fold run costs
5 models per window.
"""

import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("model_dir", None, "A run written by train.py.", required=True)
flags.DEFINE_integer("files", 100, "One-clip files in the folder of a trial.")
flags.DEFINE_float("long_minutes", 20.0, "Length of the long recording, minutes.")
flags.DEFINE_integer("trials", 5, "Trials of each, interleaved.")
flags.DEFINE_integer("batch_size", 32, "predict.py's --batch_size.")
flags.DEFINE_enum("precision", "float32", ["float32", "mixed"], "predict.py's --precision.")
FLAGS = flags.FLAGS


def _write_inputs(folder, ensemble):
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    rate, samples = ensemble.sample_rate, ensemble.num_samples
    clips = folder / "clips"
    clips.mkdir()
    for index in range(FLAGS.files):
        noise = rng.uniform(-0.3, 0.3, samples)
        sf.write(clips / f"clip_{index:04d}.wav", noise, rate, subtype="PCM_16")
    long_path = folder / "long.wav"
    with sf.SoundFile(long_path, "w", rate, 1, subtype="PCM_16") as out:
        for _ in range(int(FLAGS.long_minutes * 60 * rate) // samples):
            out.write(rng.uniform(-0.3, 0.3, samples))
    return clips, long_path, sf.info(str(long_path)).duration


def _timed(paths, ensemble):
    from keras_audio_cnn import predict

    start = time.perf_counter()
    results = list(predict.classify(paths, ensemble, batch_size=FLAGS.batch_size))
    seconds = time.perf_counter() - start
    failed = [r.path for r in results if r.error]
    if failed:
        sys.exit(f"predict_speed: error: {failed[0]} was not classified")
    return seconds


def _row(name, values, unit):
    from benchmarks import common

    stats = common.summarize(values)
    flag = " (spread over 20%)" if stats["unstable"] else ""
    return (f"| {name} | {stats['median']:,.1f} {unit} | "
            f"{stats['min']:,.1f} - {stats['max']:,.1f}{flag} |")


def main(argv):
    del argv
    import pathlib

    from keras_audio_cnn import ensemble as ensemble_lib

    start = time.perf_counter()
    ensemble = ensemble_lib.load_ensemble([FLAGS.model_dir], log=lambda line: None,
                                          precision=FLAGS.precision)
    load_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as work:
        clips, long_path, long_seconds = _write_inputs(pathlib.Path(work), ensemble)
        first = sorted(clips.iterdir())[0]
        warm = time.perf_counter()
        _timed([first], ensemble)
        warm_seconds = time.perf_counter() - warm
        load_before = os.getloadavg()
        folder_rates, long_rates, lengths = [], [], []
        for _ in range(FLAGS.trials):
            seconds = _timed([clips], ensemble)
            folder_rates.append(FLAGS.files / seconds)
            lengths.append(seconds)
            seconds = _timed([long_path], ensemble)
            long_rates.append(long_seconds / seconds)  # audio-hours per hour
            lengths.append(seconds)
        load_after = os.getloadavg()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{FLAGS.model_dir}: {len(ensemble.models)} model(s), {ensemble.num_samples} samples "
          f"at {ensemble.sample_rate} Hz; loaded in {load_seconds:.1f} s, first file "
          f"{warm_seconds:.1f} s; {FLAGS.trials} interleaved trials of {FLAGS.files} one-clip "
          f"files and one {long_seconds / 60:.0f}-minute recording "
          f"({min(lengths):.0f} to {max(lengths):.0f} s each), batch {FLAGS.batch_size}, "
          f"{ensemble.dtype_policy}; "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"peak memory {peak_mb:,.0f} MB")
    print("| input | median | min - max |")
    print("|---|---|---|")
    print(_row(f"folder of {FLAGS.files} one-clip files", folder_rates, "files/s"))
    print(_row(f"{long_seconds / 60:.0f}-minute recording", long_rates, "audio-hours/hour"))
    sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
