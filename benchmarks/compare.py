"""A/B: one side with two sets of options, in interleaved trials (before/after figures).

    python -m benchmarks.compare --side=ours_train --b='{"fused_batch_norm": false}'
    python -m benchmarks.compare --side=plain_train --b='{"env": {"TF_NUM_INTEROP_THREADS": "1"}}'
    python -m benchmarks.compare --side=ours_frontend --b='{"per_clip_frontend": false}' \\
        --seconds=5 --trials=7

`--a` and `--b` are JSON options of the side's function in `benchmarks.sides`
(`speedups` and `env` there); each runs in its own process, and the two take turns,
`--trials` trials of at least `--seconds` each. Prints each one's median, min and
max, the ratio of the medians (a / b) and the load averages before and after.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("side", "ours_train", "A function of benchmarks.sides.")
flags.DEFINE_string("a", "{}", "JSON options of side A.")
flags.DEFINE_string("b", "{}", "JSON options of side B.")
flags.DEFINE_integer("trials", 5, "Trials per side.")
flags.DEFINE_float("seconds", 20.0, "Least length of a trial.")
flags.DEFINE_string("backbone", None, "Sets both sides' backbone option.")
flags.DEFINE_string("side_logs", os.path.join("runs", "benchmarks", "work", "logs"),
                    "Where the sides' logs go.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"compare: error: unexpected arguments {argv[1:]}")
    from benchmarks import common, harness

    os.makedirs(FLAGS.side_logs, exist_ok=True)
    options = {"a": json.loads(FLAGS.a), "b": json.loads(FLAGS.b)}
    if FLAGS.backbone:
        for value in options.values():
            value["backbone"] = FLAGS.backbone
    workers = []
    try:
        for name, value in options.items():
            worker = harness.Worker(f"compare.{FLAGS.side}.{name}",
                                    f"benchmarks.sides:{FLAGS.side}", value,
                                    log_dir=FLAGS.side_logs)
            workers.append(worker.wait_ready())
            print(f"{name} {value}: ready after {worker.setup_seconds:.0f} s; {worker.info}",
                  flush=True)
        load_before = common.load_average()
        results = harness.interleave(workers, FLAGS.trials, FLAGS.seconds)
        load_after = common.load_average()
        stats = {}
        for name, worker in zip(options, workers):
            trials = results[worker.name]
            stats[name] = common.summarize(harness.rates(trials))
            length = sum(t["seconds"] for t in trials) / len(trials)
            s = stats[name]
            print(f"{name}: median {s['median']:.4g} [{s['min']:.4g}, {s['max']:.4g}] items/s, "
                  f"{s['trials']} trials of {length:.1f} s"
                  + (f" (spread {100 * s['spread']:.0f}%)" if s["unstable"] else ""))
        print(f"a / b = {stats['a']['median'] / stats['b']['median']:.3f}; load average "
              f"before {load_before}, after {load_after}")
    finally:
        for worker in workers:
            worker.close()


if __name__ == "__main__":
    app.run(main)
