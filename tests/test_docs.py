"""Every relative link in the README and docs/ points at a file that exists and, with an
``#anchor``, at one of that file's headings (GitHub's anchor rules: lower case, punctuation
dropped, spaces as hyphens)."""

import re
from pathlib import Path

import pytest
from helpers import resolves

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", ROOT / "data" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of ``page``'s headings."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # no headings in code blocks
    headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_there_are_docs():
    assert (ROOT / "docs" / "results.md") in PAGES


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for link in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} -> no {target}"
        if anchor:
            assert anchor in anchors(target), f"{page.name}: {link} -> no heading #{anchor}"


#: names the docs spell wrong on purpose (an example of a misspelt class and its error)
MISSPELT_ON_PURPOSE = {"cpc.tasks.CPCTsk"}
DOTTED = re.compile(r"\bcpc(?:\.[A-Za-z_]\w*)+")
PATH = re.compile(r"\b(?:cpc|benchmarks|configs|tests|notebooks)/[\w/.-]+\.(?:py|yaml|ipynb)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_code_the_docs_name_exists(page):
    """Every ``cpc.x.y`` name and every ``cpc/``, ``benchmarks/``, ``configs/`` ... file a page
    names is there: a renamed function or moved module cannot leave the docs behind."""
    text = page.read_text()
    names = {name for name in DOTTED.findall(text) if not name.endswith(".py")}  # cpc.py: a file
    missing = {name for name in names if not resolves(name)}
    missing |= {path for path in PATH.findall(text) if not (ROOT / path).exists()}
    assert missing - MISSPELT_ON_PURPOSE == set()


def test_the_name_check_sees_a_stale_name():
    assert resolves("cpc.eval.knn.KNN.fit") and resolves("cpc.data")
    assert not resolves("cpc.eval.knn.knn_accuracy") and not resolves("cpc.nothing_here")


def test_the_code_docstrings_name_exists():
    """Every ``:func:`cpc.x.y``` (``:class:``, ``:mod:``, ...) a docstring of ``cpc/`` or
    ``benchmarks/`` points at is there."""
    role = re.compile(r":(?:func|class|mod|meth|data|attr):`~?(cpc(?:\.\w+)+)`")
    files = [*(ROOT / "cpc").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    missing = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in role.findall(path.read_text())
        if not resolves(name)
    }
    assert missing == set()
