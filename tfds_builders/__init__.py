"""The project's TFDS datasets, one folder each, laid out as `tfds new` makes them.

Importing this package registers every builder with TFDS, so that
`tfds.builder("esc50")` and `tfds.load("esc50", split="fold1")` work. A builder
is the class `Builder` in `<name>/<name>_dataset_builder.py`; TFDS names the
dataset after that module, which is its folder's name.

`audio_folder/` is not in the catalog (as TFDS keeps its own `ImageFolder` out):
it is made from a folder of recordings with `audio_folder.builder.make_builder`,
so it is neither imported here nor listed in `DATASETS`. `audio_io` (decoding)
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
