"""README.md promises what the code does: its bad-input table names real tests."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section(title):
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def defined_names(path):
    with open(os.path.join(ROOT, path)) as f:
        tree = ast.parse(f.read())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))}


def test_every_row_of_the_bad_input_table_names_tests_that_exist():
    rows = [line for line in section("Bad input and failures").splitlines()
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
