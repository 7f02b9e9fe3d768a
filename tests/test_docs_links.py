"""The README stays what a user reads first, and every document's links lead somewhere.

The README is short (the rest lives in docs/, linked from its table of documents), so moving a section or
renaming a heading must not leave a link to nothing: every relative link and picture in README.md, docs/*.md
and the folders' READMEs names a file of the repository, and a ``#fragment`` names a heading of its target
(GitHub's anchors). Users read the docs on their own machines: no path of the machine the work was done on,
no internal tracker numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
DOCS = sorted({README, *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md")})
README_MAX_LINES = 200
_FENCE = re.compile(r"^[ \t]*```.*?^[ \t]*```", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*$", re.MULTILINE)
_MACHINE_PATH = re.compile(r"(?<![\w.<>/~-])/(?:home|root|mnt|scratch|data|tmp|work|Users)/")
_TRACKER_NUMBER = re.compile(r"\bissues? [0-9]+\b", re.IGNORECASE)


def prose(doc: Path) -> str:
    """The text of a document without its code (a ``[0](x)`` in Python is not a link)."""
    return _CODE.sub("", _FENCE.sub("", doc.read_text()))


def slug(text: str) -> str:
    """GitHub's anchor of a heading's rendered text (github-slugger's rule): lower case, every character but
    letters, digits, ``_``, ``-`` and spaces dropped, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """The anchors of a document's headings (links and code marks rendered as their text); a repeated heading
    gets ``-1``, ``-2``, ..."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", doc.read_text())):
        key = slug(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", ""))
        found.add(key if key not in seen else f"{key}-{seen[key]}")
        seen[key] = seen.get(key, 0) + 1
    return found


def relative_links() -> list[tuple[Path, str]]:
    return [
        (doc, target)
        for doc in DOCS
        for target in _LINK.findall(prose(doc))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # https:, mailto:
    ]


def test_slugs_are_githubs() -> None:
    """The examples remark-slug documents for GitHub's algorithm, and two headings of ours."""
    assert slug("Lorem ipsum \N{SLEEPY FACE}") == "lorem-ipsum-"
    assert slug("dolor\N{EM DASH}sit\N{EM DASH}amet") == "dolorsitamet"
    assert slug("consectetur & adipisicing") == "consectetur--adipisicing"
    assert {"noise-models-dbsns-settings", "raw-sidd-raw-blocks", "testpy"} <= anchors(ROOT / "docs/EVALUATION.md")
    assert "dcn--the-dcnv2-operator" in anchors(ROOT / "docs/DESIGN.md")  # "`dcn/` \N{EM DASH} the DCNv2 operator"


def test_readme_is_what_a_user_reads_first() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines: move reference text to docs/ (max {README_MAX_LINES})"
    )
    linked = {(README.parent / target.split("#")[0]).resolve() for doc, target in relative_links() if doc == README}
    unlisted = [doc.name for doc in ROOT.glob("docs/*.md") if doc.resolve() not in linked]
    assert not unlisted, f"README.md's table of documents does not link {unlisted}"


def test_the_docs_have_links_to_check() -> None:
    """The extraction finds links (a pattern that matched nothing would pass the test below)."""
    links = relative_links()
    assert sum(doc == README for doc, _ in links) >= 10
    assert any("#" in target for _, target in links)


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_relative_link_names_an_existing_file_and_heading(doc: Path) -> None:
    broken = []
    for target in [t for d, t in relative_links() if d == doc]:
        path, _, fragment = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: no heading with that anchor in {file.relative_to(ROOT)}")
        elif not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
    assert not broken, f"{doc.relative_to(ROOT)}:\n" + "\n".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_docs_name_no_machine_path_nor_tracker_number(doc: Path) -> None:
    text = doc.read_text()
    found = [m.group(0) for pattern in (_MACHINE_PATH, _TRACKER_NUMBER) for m in pattern.finditer(text)]
    assert not found, f"{doc.relative_to(ROOT)} names {found}: use placeholders such as <testsets>"
