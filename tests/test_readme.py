"""README.md stays short and true: its two commands, CI's command, its links.

The checks of the tables that moved to docs/ (bad input, flags) are in test_docs.py.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_BYTES = 15_000

MAIN_JOB = "pip install -e .\npython train.py --dataset=esc50 --backbone=DenseNet201\n"
TESTS = 'pip install -e ".[test]"\npython -m pytest\n'


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def shell_blocks(text):
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def test_the_readme_is_at_most_15_kb():
    assert os.path.getsize(os.path.join(ROOT, "README.md")) <= MAX_BYTES


def test_the_readme_gives_the_main_job_and_the_tests_as_commands_of_their_own():
    blocks = shell_blocks(read("README.md"))
    assert MAIN_JOB in blocks
    assert TESTS in blocks


def test_ci_runs_exactly_the_readmes_test_command():
    commands = [line for line in read(".ci", "run").splitlines()
                if line and not line.startswith(("#", "set ", "cd ", "export "))]
    assert "\n".join(commands) + "\n" == TESTS


def test_the_readmes_links_lead_to_files_that_exist():
    links = re.findall(r"\]\(([^)\s]+)\)", read("README.md"))
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert len(local) >= 10
    for link in local:
        path, _, anchor = link.partition("#")
        assert not os.path.isabs(path), link
        assert os.path.isfile(os.path.join(ROOT, path)), link
        if anchor:  # a heading of the page, as GitHub and MkDocs name it
            headings = re.findall(r"^#+ (.+)$", read(path), flags=re.MULTILINE)
            assert anchor in {slug(heading) for heading in headings}, link


def slug(heading):
    return re.sub(r"[^\w\- ]", "", heading.lower()).strip().replace(" ", "-")
