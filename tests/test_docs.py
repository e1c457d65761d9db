"""The pages in docs/ build as a site: `mkdocs build --strict` passes (broken links
and anchors between the pages fail it), and the API pages hold the docstrings.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
