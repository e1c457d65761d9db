"""Runs the benchmarks, prints a table and writes it as JSON.

    python -m benchmarks                      # everything, about 20 min on 2 CPU cores
    python -m benchmarks --only=frontend,pipeline
    python -m benchmarks --backbone=MobileNetV3Small --min_seconds=2   # a quick smoke run

The generated ESC-50-sized archives (about 1.1 GB) stay in --work_dir for reuse.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags

BENCHMARKS = ("frontend", "train_step", "inference", "preparation", "pipeline", "memory")

flags.DEFINE_list("only", list(BENCHMARKS), f"Benchmarks to run, of: {', '.join(BENCHMARKS)}.")
flags.DEFINE_string("backbone", "DenseNet201", "Backbone of the train-step and inference benchmarks.")
flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                  "train.py's --jit_compile for the project's train step.")
flags.DEFINE_float("min_seconds", 10.0, "Least time each timed measurement runs.")
flags.DEFINE_string("work_dir", os.path.join("runs", "benchmarks", "work"),
                    "Where generated archives and prepared datasets are kept.")
flags.DEFINE_string("output", os.path.join("runs", "benchmarks", "results.json"),
                    "The JSON file of results (the table is printed too).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        sys.exit(f"benchmarks: error: unexpected arguments {argv[1:]}")
    unknown = [name for name in FLAGS.only if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"benchmarks: error: unknown benchmark {unknown[0]!r}; "
                 f"choose from {', '.join(BENCHMARKS)}")
    from benchmarks import common, data, frontend, model_speed

    os.makedirs(FLAGS.work_dir, exist_ok=True)
    rows = []

    def report(new_rows):
        rows.extend(new_rows)
        print(common.format_table(new_rows), flush=True)

    if "frontend" in FLAGS.only:
        report(frontend.run(FLAGS.min_seconds))
    source = None
    if {"preparation", "pipeline", "train_step"} & set(FLAGS.only):
        prep_rows, source = data.preparation(FLAGS.work_dir)
        report(prep_rows if "preparation" in FLAGS.only else [])
    if "pipeline" in FLAGS.only:
        report(data.pipeline(source, 2 * FLAGS.min_seconds))
    if "train_step" in FLAGS.only:
        data_dir, manual_dir = data.full_dataset(FLAGS.work_dir)
        report(model_speed.train_step(FLAGS.backbone, data_dir=data_dir, manual_dir=manual_dir,
                                      jit_compile=FLAGS.jit_compile))
    if "inference" in FLAGS.only:
        report(model_speed.inference(FLAGS.backbone, 2 * FLAGS.min_seconds))
    if "memory" in FLAGS.only:
        report(data.memory(FLAGS.work_dir))

    results = {"machine": common.machine(), "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"Measured on: {', '.join(f'{k} {v}' for k, v in results['machine'].items())}")
    print(common.format_table(rows))
    print(f"Wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
