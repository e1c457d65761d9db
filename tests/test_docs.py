"""The pages in docs/ promise what the code does, and the site builds from them.

Each table that names code is checked against it: the bad-input table names tests
that exist, the flag table lists every `train.py` option with its default. No tracked
file holds a path of a developer's machine, and `mkdocs build --strict` passes
(broken links and anchors between the pages fail it).
"""

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from keras_audio_cnn import backbones, config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def page(name):
    with open(os.path.join(ROOT, "docs", name), encoding="utf-8") as f:
        return f.read()


def section(name, title):
    """The text of the `## title` section of docs/`name`, up to the next `## `."""
    return page(name).split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def defined_names(path):
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_every_row_of_the_bad_input_table_names_tests_that_exist():
    rows = [line for line in section("failures.md", "Bad input and failures").splitlines()
            if line.startswith("| ") and not line.startswith("| **") and "---" not in line]
    rows = rows[1:]  # the header
    assert len(rows) >= 30
    for row in rows:
        cell = row.rstrip(" |").rsplit(" | ", 1)[1]
        references = re.findall(r"`([\w/.]+\.py)((?:::\w+)*)`", cell)
        assert references, row
        for path, names in references:
            assert os.path.isfile(os.path.join(ROOT, path)), (path, row)
            for name in filter(None, names.split("::")):
                assert name in defined_names(path), (path, name)


def test_the_flag_table_lists_every_flag_with_its_default():
    """A default that depends on the backbone's family reads `imagenet's (PANNs: panns')`."""
    table = section("training.md", "Flags of `train.py`").strip().split("\n\n", 1)[0]
    documented = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`--(\w+)`", cells[0])
        defaults = cells[1].split(", ") if len(names) > 1 and cells[1] else [cells[1]] * len(names)
        documented.update(zip(names, defaults))
    imagenet = config.TrainConfig().to_flags()
    panns = config.TrainConfig().replace(backbone="panns_cnn14").to_flags()
    assert set(documented) == set(imagenet)
    for name, value in imagenet.items():
        if not isinstance(value, (bool, int, float, str)):  # None, a list
            continue
        text, _, family = documented[name].partition(" (PANNs: ")
        assert bool(family) == (name in backbones.RECIPE_OPTIONS), name
        pairs = [(text, value)] + ([(family.rstrip(")"), panns[name])] if family else [])
        for shown, expected in pairs:
            shown = shown.strip(" `")
            wanted = str(expected).lower() if isinstance(expected, bool) else str(expected)
            assert shown == wanted or float(shown) == expected, (name, shown, expected)


# An absolute path under a directory that holds checkouts, homes or mounts on some
# machine (a Windows home too); `runs/benchmarks/work/` is relative, so a path
# character before the slash rules a match out.
MACHINE_PATH = re.compile(
    rb"(?<![\w.~$/-])/(?:work|tmp|root|home|Users|mnt)/|[A-Za-z]:\\\\?Users\\\\?")


def tracked_files():
    if shutil.which("git") is None:
        pytest.skip("git is not installed, so the tracked files are unknown")
    result = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"not a git checkout: {result.stderr.decode(errors='replace').strip()}")
    return [name for name in result.stdout.decode().split("\0") if name]


def test_no_tracked_file_holds_a_path_of_a_developers_machine():
    found = []
    for name in tracked_files():
        path = os.path.join(ROOT, name)
        if not os.path.isfile(path):  # deleted in the work tree, not yet committed
            continue
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if MACHINE_PATH.search(line):
                    found.append(f"{name}:{number}: {line.decode(errors='replace').strip()[:120]}")
    assert not found, "\n".join(found)


def test_the_machine_path_pattern_finds_what_it_should():
    # Made from parts, or this file would hold what it looks for.
    for text in ["--torch_python=/" + "home/me/.venv/bin/python", "see /" + "tmp/x.log",
                 "(/" + "work/checkout/runs)", "C:\\" + "Users\\me"]:
        assert MACHINE_PATH.search(text.encode()), text
    for text in ["runs/benchmarks/work/logs/", "~/tensorflow_datasets", "/proc/cpuinfo",
                 "$KERAS_HOME/models/", "/path/to/weights.h5"]:
        assert not MACHINE_PATH.search(text.encode()), text


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="MkDocs is not installed: pip install -e \".[docs]\"")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed: "
                        "pip install -e \".[docs]\"")
    environment = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # The API pages hold the docstrings, read from the source.
    for name, docstring in [
            ("predict", "Classifies audio files with every finished model"),
            ("config", "Everything one <code>train.py</code> run depends on"),
            ("tfds_builders", "ESC-50: 2000 five-second environmental recordings")]:
        html = (tmp_path / "api" / name / "index.html").read_text(encoding="utf-8")
        assert docstring in html, name
