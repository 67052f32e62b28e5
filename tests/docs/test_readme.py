"""The README is for users: every relative link resolves to a committed
file, each section appears once, and it speaks of the project, not of the
process behind it."""

import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()


def relative_links(text: str) -> list[str]:
    """Targets of markdown links and images that are not URLs or anchors."""
    out = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        target = target.split("#", 1)[0]
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target):
            out.append(target)
    return out


def test_the_link_finder_finds_links_and_skips_urls():
    text = ("see [a](docs/x.md), ![p](docs/p.png \"t\"), [b](https://e.org/y), "
            "[c](#quick-start), [d](docs/z.md#part)")
    assert relative_links(text) == ["docs/x.md", "docs/p.png", "docs/z.md"]


@pytest.mark.parametrize("target", relative_links(README) or ["(no links)"])
def test_every_relative_link_exists_in_the_tree(target):
    path = os.path.join(ROOT, target)
    assert os.path.exists(path), f"README links {target}, which is not in the tree"
    try:
        tracked = subprocess.run(["git", "-C", ROOT, "ls-files", "--", target],
                                 capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return                              # no git: the tree is all we have
    if tracked.returncode == 0:
        assert tracked.stdout.strip(), f"README links {target}, which is not committed"


def test_each_heading_appears_once():
    heads = re.findall(r"^#{1,4} .*$", README, re.M)
    dups = sorted({h for h in heads if heads.count(h) > 1})
    assert not dups, f"headings twice: {dups}"


def test_it_names_targets_and_figures_not_the_process():
    found = re.findall(r"(?i)\b(?:issues?|bars?) \d+|issue bars|the bars of", README)
    assert not found, found
