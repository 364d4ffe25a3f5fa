"""Every file or document the repository's text points at is in the repository: `.md` /
`.rst` documents, paths under the repository's own folders (paras2s_jax, tests, ...)
and relative paths that go up a folder."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("paras2s_jax", "bench", "configs", "launch", "tests", "scripts", "docs", ".ci")
ROOT_FILES = ("README.md", "pyproject.toml")
TEXT_SUFFIXES = {".py", ".md", ".rst", ".toml", ".sh", ".txt", ".cfg", ".yaml", ".yml", ""}
SOURCE_SUFFIXES = {".py", ".md", ".rst", ".toml", ".sh", ".cfg", ".yaml", ".yml"}
# Documents the benchmark writes into a run directory (bench/report.py), not repository files.
WRITTEN_DOCUMENTS = {"report.md", "compare.md"}

_NOT_BEFORE = r"(?<![\w./*-])"
DOCUMENT = re.compile(_NOT_BEFORE + r"((?:\.\.?/)*[\w-][\w./-]*\.(?:md|rst))\b")
_FOLDER = "|".join(re.escape(f) for f in FOLDERS)
REPO_PATH = re.compile(_NOT_BEFORE + rf"((?:{_FOLDER})/[\w./-]*[\w-])")
UPWARD = re.compile(_NOT_BEFORE + r"((?:\.\./)+[\w.-][\w./-]*)")


def text_files(root: Path) -> list[Path]:
    """The repository's text files: its folders' files and the top-level documents."""
    files = [root / f for f in ROOT_FILES if (root / f).is_file()]
    for folder in FOLDERS:
        files += [p for p in (root / folder).rglob("*") if p.is_file()
                  and p.suffix in TEXT_SUFFIXES and "__pycache__" not in p.parts]
    return sorted(files)


def _inside(path: Path, root: Path) -> bool:
    path = path.resolve()
    return path.exists() and (path == root or root in path.parents)


def unresolved(root: Path) -> list[str]:
    """`file:line: reference` for every reference that names nothing in `root`."""
    root = root.resolve()
    names = {p.name for p in text_files(root)}
    bad = []
    for f in text_files(root):
        bases = [f.parent, *[p for p in f.parents if p == root or root in p.parents]]
        for number, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for ref in DOCUMENT.findall(line):
                if ref in WRITTEN_DOCUMENTS or ("/" not in ref and ref in names):
                    continue
                if not any(_inside(base / ref, root) for base in bases):
                    bad.append(f"{f.relative_to(root)}:{number}: {ref}")
            for ref in REPO_PATH.findall(line):
                if Path(ref).suffix in SOURCE_SUFFIXES and "/.../" not in ref \
                        and not _inside(root / ref, root):
                    bad.append(f"{f.relative_to(root)}:{number}: {ref}")
            for ref in UPWARD.findall(line):
                if not _inside(f.parent / ref, root):
                    bad.append(f"{f.relative_to(root)}:{number}: {ref}")
    return bad


def test_every_reference_resolves_inside_the_repository():
    bad = unresolved(ROOT)
    assert not bad, "references to files that are not in the repository (point them at a " \
                    "file here or state the fact inline):\n" + "\n".join(bad)


@pytest.mark.parametrize("line,found", [
    ("see NOTES" + ".md", True),  # a document that is not there
    ("see bench/GONE" + ".md", True),
    ("python launch/gone" + ".py", True),
    ("as in ../" + "shared/plan.txt", True),  # outside the repository
    ("see HERE" + ".md and docs/HERE" + ".md", False),
    ("python launch/" + "run.py writes report" + ".md", False),
    ("glob *" + ".md, tests/.../x.py", False),
])
def test_the_scan_finds_references_to_missing_files(tmp_path, line, found):
    (tmp_path / "docs").mkdir()
    (tmp_path / "launch").mkdir()
    (tmp_path / "docs" / ("HERE" + ".md")).write_text("a document\n")
    (tmp_path / "launch" / "run.py").write_text(f"# {line}\n")
    assert bool(unresolved(tmp_path)) == found
