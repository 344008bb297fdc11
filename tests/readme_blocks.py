"""The code blocks of README.md, as a new user copies them. Used by tests/test_readme.py and .ci/run, so that
what CI runs and what the README says cannot drift apart.

    python tests/readme_blocks.py install   # the first of the "Two commands"
    python tests/readme_blocks.py test      # the second: the test command
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(section: str, lang: str) -> list[str]:
    """The fenced blocks of language `lang` under the heading `section` (up to the next heading of its level)."""
    text = README.read_text()
    match = re.search(rf"^(#+) {re.escape(section)}\s*$", text, re.M)
    if not match:
        raise SystemExit(f"README.md has no section {section!r}")
    level = len(match.group(1))
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    body = rest[: end.start()] if end else rest
    return re.findall(rf"^```{lang}\n(.*?)^```", body, re.M | re.S)


def two_commands() -> list[str]:
    lines = [line for line in blocks("Two commands", "bash")[0].splitlines() if line.strip()]
    if len(lines) != 2:
        raise SystemExit(f"README.md's 'Two commands' block has {len(lines)} lines, expected 2")
    return lines


def api_example() -> str:
    return blocks("Python API", "python")[0]


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in ("install", "test"):
        raise SystemExit("usage: readme_blocks.py install|test")
    print(two_commands()[0 if which == "install" else 1])
