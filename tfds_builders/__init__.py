"""The project's TFDS datasets, one folder each, laid out as `tfds new` makes them.

A builder is the class `Builder` in `<name>/<name>_dataset_builder.py`; the
dataset is named after its folder. `builder("esc50")` or
`builder("gtzan/fault_filtered", data_dir=...)` makes one. Importing this package
also registers them with TFDS, so that `tfds.builder("esc50")` and
`tfds.load("esc50", split="fold1")` work, except for `gtzan`: TFDS's catalog has a
`gtzan` of its own, which ours must not displace (see its builder).

`audio_folder/` is not in the catalog (as TFDS keeps its own `ImageFolder` out):
it is made from a folder of recordings with `audio_folder.builder.make_builder`,
so it is neither imported here nor listed in `DATASETS`. Each builder here offers
its clips at its own rate and at `common.PRETRAINED_RATES`, one config per
protocol and rate (`common.RateConfig`: `esc50/32000hz`,
`gtzan/fault_filtered_16000hz`), resampled once, at preparation. `audio_io` (decoding)
and `folds` (stratified and per-file folds) serve all the builders;
`preparation` (preparing next to other processes) and `identities` (which
examples a prepared split holds) serve any TFDS builder.
"""

import importlib
import pathlib

# Names of the datasets here: every folder holding `<folder>_dataset_builder.py`.
DATASETS = tuple(
    sorted(
        path.parent.name
        for path in pathlib.Path(__file__).parent.glob("*/*_dataset_builder.py")
        if path.name == f"{path.parent.name}_dataset_builder.py"
    )
)

for _name in DATASETS:
    importlib.import_module(f"{__name__}.{_name}.{_name}_dataset_builder")


def builder_class(name):
    """The `Builder` class of one of `DATASETS` (`name` may end in `/config`), e.g. to
    read its `BUILDER_CONFIGS` without making a builder."""
    base = name.partition("/")[0]
    if base not in DATASETS:
        raise KeyError(f"{base!r} is not a dataset of tfds_builders ({', '.join(DATASETS)})")
    return importlib.import_module(f"{__name__}.{base}.{base}_dataset_builder").Builder


def builder(name, **kwargs):
    """The builder of one of `DATASETS`, by name or `name/config`; `kwargs` go to it
    (e.g. `data_dir`). Made by class, so it needs no entry in TFDS's registry."""
    config = name.partition("/")[2]
    return builder_class(name)(config=config or None, **kwargs)
