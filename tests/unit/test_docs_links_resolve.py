"""Every relative link in README.md and docs/*.md names a file that exists, and every
`#anchor` into a Markdown file names one of its headings (as GitHub spells them)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")  # https:, mailto:


def _links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1 on repeats."""
    anchors: set[str] = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        n = 0
        while (f"{slug}-{n}" if n else slug) in anchors:
            n += 1
        anchors.add(f"{slug}-{n}" if n else slug)
    return anchors


def broken_links(pages: list[Path]) -> list[str]:
    broken = []
    for page in pages:
        for target in _links(page):
            if SCHEME.match(target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            where = f"{page.name}: {target}"
            if not resolved.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{where} (no heading #{anchor} in {resolved.name})")
    return broken


def test_the_docs_exist() -> None:
    names = {p.name for p in PAGES}
    for name in (
        "architecture.md",
        "reliable-queue.md",
        "operator.md",
        "configuration.md",
        "benchmarks.md",
        "development.md",
        "troubleshooting.md",
        "security.md",
    ):
        assert name in names, f"docs/{name} is missing"


def test_every_relative_link_resolves() -> None:
    broken = broken_links(PAGES)
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_a_broken_link_or_anchor_is_found_and_code_is_not_taken_for_links(
    tmp_path: Path,
) -> None:
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## A `code` heading, twice\n\n## A code heading, twice\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-code-heading-twice-1) [gone](missing.md) [bad](other.md#nowhere)\n"
        "`[in code](also-missing.md)` [web](https://example.com/x)\n"
        "```\n[in a block](missing-too.md)\n```\n"
    )
    assert broken_links([page]) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nowhere (no heading #nowhere in other.md)",
    ]
