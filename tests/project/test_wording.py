"""The product speaks of the project, not of its tickets, and its help is plain text.

No code, docstring, notebook or ``--help`` mentions an issue number ("issue 22", "issue_22", "issues #7"),
and no ``--help`` shows Sphinx markup (````--inplace````, ``:mod:``) that a terminal prints as it is.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.in_process import run_main

ROOT = Path(__file__).resolve().parents[2]
#: "issue" followed by a number, however joined: the work history this test keeps out.
TICKET = re.compile(r"(?<![a-z])issues?[\s#_-]*\d+", re.IGNORECASE)
#: reStructuredText that a terminal would print as it is.
MARKUP = re.compile(r"``|:(mod|func|class|data|meth|attr):`")
COMMANDS = ("dissect", "train", "evaluate", "bench", "notebooks")


def tickets(text: str) -> list[str]:
    """Each line of ``text`` that names an issue by number, stripped."""
    return [line.strip() for line in text.splitlines() if TICKET.search(line)]


def test_the_pattern_finds_a_ticket_however_it_is_written():
    said = "since issue 22\n_added_in_issue_22 = 1\nsee Issues #7\nthe issue is 0.4 vs 0.5\nan issue, 3 lines"
    assert tickets(said) == ["since issue 22", "_added_in_issue_22 = 1", "see Issues #7"]


def shipped_files() -> list[Path]:
    """Every text file of the package and every notebook (sources and stored outputs)."""
    package = [p for p in (ROOT / "ssd_lesson").rglob("*") if p.is_file() and p.suffix in {".py", ".md", ".txt"}]
    return sorted(package) + sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", shipped_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_of_the_product_names_an_issue(path):
    assert tickets(path.read_text()) == []


@pytest.mark.parametrize("argv", [("--help",)] + [(c, "--help") for c in COMMANDS], ids=" ".join)
def test_every_help_is_plain_text_without_tickets(argv):
    ran = run_main(*argv)
    assert ran.returncode == 0 and "usage: python -m ssd_lesson" in ran.stdout
    assert tickets(ran.stdout) == []
    assert not MARKUP.search(ran.stdout), f"markup in {' '.join(argv)}: {MARKUP.search(ran.stdout).group(0)}"
