"""The README and the docs site: one short page that starts with two commands that work, reference pages
generated from the code, links that resolve, and console examples that are what the CLI prints."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from apptopology.cli import main
from shared import ROOT

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))


def test_readme_is_one_short_page_starting_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.encode()) < 20 * 1024
    block = text[text.index("```bash\n") + 8 : text.index("```", text.index("```bash\n") + 8)]
    first, second = block.strip().splitlines()
    assert text.index("```bash") < 30
    # The first installs what the CLI needs, not the development tools; the second runs the tests.
    assert "pip install -e ." in first and "[dev" not in first and "apptopology render" in first
    assert second == "bash tests/run.sh"


def test_reference_pages_are_generated_from_the_code() -> None:
    result = subprocess.run([sys.executable, "docs/gen.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name}: {target}"


def console_examples(text: str) -> list[tuple[list[str], list[str]]]:
    """(command arguments, output lines) of every `$ apptopology ...` (or .venv/bin/apptopology) in console
    blocks whose output is shown and that runs offline."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            match = re.match(r"\$ (?:\.venv/bin/)?apptopology (.*)", line)
            if not match or "--cluster" in match.group(1):
                continue
            command = match.group(1).split("#")[0].split(">")[0]  # comments and redirections are the reader's
            shown = []
            for following in lines[i + 1 :]:
                if following.startswith("$ "):
                    break
                shown.append(following)
            if shown:
                out.append((shlex.split(command) + ([">"] if ">" in match.group(1) else []), shown))
    return out


EXAMPLES = [(page, args, shown) for page in [README, *PAGES] for args, shown in console_examples(page.read_text())]


@pytest.mark.parametrize(
    ("page", "args", "shown"), EXAMPLES, ids=[f"{p.name}:{' '.join(a[:3])}" for p, a, _ in EXAMPLES]
)
def test_console_examples_are_what_the_cli_prints(
    page: Path, args: list[str], shown: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("COLUMNS", raising=False)
    redirected = args[-1:] == [">"]  # stdout goes to a file: the page shows stderr
    main(args[:-1] if redirected else args)
    captured = capsys.readouterr()
    printed = (captured.err if redirected else captured.out + captured.err).splitlines()
    abridged = any("..." in line for line in shown)
    if abridged:
        assert all(line in printed for line in shown if "..." not in line), page
    else:
        assert printed == shown, page


def test_there_are_console_examples_to_check() -> None:
    assert len(EXAMPLES) >= 6
