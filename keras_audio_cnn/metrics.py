"""Scoring a model on held-out data, and the accuracy table of a run or an ensemble."""

import numpy as np
import tensorflow as tf

from keras_audio_cnn.errors import one_line


def probabilities(model, dataset):
    """Softmax probabilities (float64) of a model on a `(waveform, label)` dataset.

    The model is called directly rather than through `predict`, so a model built
    under a multi-replica strategy runs on one device: `predict` would split each
    batch across the replicas, and a last, partial batch can leave a replica no
    clip, which the spectrogram's reflect padding cannot take. It is traced once for
    every batch size (a last, partial batch would cost a second trace: seconds for a
    large backbone).
    """
    spec = dataset.element_spec[0]
    forward = tf.function(lambda waveform: model(waveform, training=False),
                          input_signature=[tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)])
    logits = np.concatenate([np.asarray(forward(waveform)) for waveform, _ in dataset])
    return tf.nn.softmax(logits.astype("float64")).numpy()


def scores(probs, labels, num_classes):
    """Accuracy, loss, confusion matrix and per-class accuracy of class probabilities."""
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    support = confusion.sum(axis=1)
    per_class = np.where(support > 0, confusion.diagonal() / np.maximum(support, 1), np.nan)
    chosen = probs[np.arange(len(labels)), labels]
    return {
        "accuracy": float((predicted == labels).mean()),
        "loss": float(-np.log(np.maximum(chosen, 1e-300)).mean()),
        "num_examples": int(len(labels)),
        "confusion_matrix": confusion.tolist(),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
    }


def labels_of(dataset):
    """The labels of a `(waveform, label)` dataset, in order."""
    return np.concatenate([label.numpy() for _, label in dataset])


def evaluate(model, dataset, num_classes):
    """`scores` of a model on a `(waveform, label)` dataset."""
    return scores(probabilities(model, dataset), labels_of(dataset), num_classes)


def summarize(task_metrics):
    """Mean and (population) standard deviation of per-task test accuracies."""
    accuracies = np.array([m["accuracy"] for m in task_metrics.values()])
    return {
        "accuracy": {name: m["accuracy"] for name, m in task_metrics.items()},
        "mean_accuracy": float(accuracies.mean()),
        "std_accuracy": float(accuracies.std()),
    }


def format_accuracy_table(summary, title):
    """A markdown table of a summary's accuracies, its failures and their mean +/- std."""
    lines = [f"# {title}", "", "| held out | accuracy |", "|---|---|"]
    lines += [f"| {name} | {100 * a:.2f}% |" for name, a in summary["accuracy"].items()]
    failed = summary.get("failed", {})
    lines += [f"| {name} | FAILED: {one_line(message)} |" for name, message in failed.items()]
    if summary["accuracy"]:
        over = " (finished models only)" if failed else ""
        lines.append(
            f"| mean +/- std{over} | {100 * summary['mean_accuracy']:.2f}% +/- "
            f"{100 * summary['std_accuracy']:.2f}% |"
        )
    return "\n".join(lines) + "\n"
