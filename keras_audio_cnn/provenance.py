"""Is a model judged on the data it was trained for? Its recorded data against the data now.

Each model's `metrics.json` records `data`: `data.Source.data_record(task)`, which
names the prepared dataset (dataset, TFDS config, version) and fingerprints the
examples of each part of the task. Before a model is evaluated, ensembled or kept by a
rerun, its record is compared with the data at hand; any difference is one line that
says what changed. A model recorded no data before this check existed: for
datasets with official folds (fixed by the builder's version) it is accepted; an
audio folder's folds were dealt another way then, so it is refused. A record of an
earlier preparation that the builder declares holds exactly the examples of its
config now (`data.Source.formerly`: ESC-50 prepared as version 1.0.0, before it had
configs, is `esc50/44100hz`) is compared as if it were of that config.
"""

_LEGACY_REFUSED = ("audio_folder",)  # datasets whose old models cannot be checked


def change(recorded, current, formerly=()):
    """What differs between two `data_record`s (one phrase), or None.

    Which examples changed comes first (an audio folder's config name changes with
    every change of its files, so that alone says little); then the prepared
    dataset's config or version, unless the recorded `(config, version)` is one of
    `formerly`: earlier preparations holding exactly the examples of `current`'s.
    """
    changes = []
    for part, then in recorded.get("parts", {}).items():
        now = current.get("parts", {}).get(part)
        if now is None or now["fingerprint"] != then["fingerprint"]:
            count = f"{then['num_examples']} clips then, {now['num_examples'] if now else 0} now"
            changes.append(f"its {part} part differs ({count})")
    files_then, files_now = set(recorded.get("test_files", ())), set(current.get("test_files", ()))
    added, removed = sorted(files_now - files_then), sorted(files_then - files_now)
    if changes and (added or removed):
        example = (added or removed)[0]
        changes.append(f"test files: {len(added)} added, {len(removed)} removed, e.g. {example}")
    same_examples = (recorded.get("config"), recorded.get("version")) in formerly
    for key in () if same_examples else ("config", "version"):
        if recorded.get(key) != current.get(key):
            changes.append(f"prepared as {key} {recorded.get(key)} then, {current.get(key)} now")
    return "; ".join(changes) or None


def problem(run_dir, model_metrics, source, task):
    """Why the model of `run_dir` was not trained for `task` on `source`'s data as it is now
    (one phrase, see the module docstring), or None."""
    recorded = model_metrics.get("data")
    if recorded is None:
        if source.name in _LEGACY_REFUSED:
            return (f"{run_dir} was trained before models recorded their data, when the folds "
                    f"of {source.name} were dealt another way: its test fold would now hold "
                    "clips it trained on")
        return None
    difference = change(recorded, source.data_record(task), source.formerly)
    if difference:
        return f"{run_dir} was trained on other data than {source.name} holds now: {difference}"
    return None
