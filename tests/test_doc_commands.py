"""Every command the README and the docs show parses its flags.

Each `python ...` line in a code block of README.md, docs/*.md and bench/*.md is run
with `--help` after its sub-command and positional words; it must print its usage (exit 0;
absl's launch scripts exit 1 after the usage) and every `--flag` the line uses must
appear in that help. `--config.a.b=...` overrides of launch/train.py must name
a field of the config preset they are given with.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "bench").glob("*.md"))]
PYTHON = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?python3?\s")


def _code_lines(text: str) -> list[str]:
    """Lines of fenced and indented code blocks, continuations joined."""
    lines, fenced, out, pending = text.splitlines(), False, [], ""
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or line.startswith("    ")):
            pending = ""
            continue
        code = pending + " " + line.strip() if pending else line.strip()
        if code.endswith("\\"):
            pending = code[:-1]
            continue
        pending = ""
        out.append(code)
    return out


def commands() -> list[tuple[str, str]]:
    """(document, command) for every python command shown in the docs."""
    found = []
    for doc in DOCS:
        for line in _code_lines(doc.read_text()):
            for part in line.split("&&"):
                part = part.split(" # ")[0].split("   #")[0].strip()
                if PYTHON.match(part) and "-m pytest" not in part:
                    found.append((doc.name, part))
    return found


def _words(command: str) -> list[str]:
    words = shlex.split(command.replace("[", " ").replace("]", " "))
    while "=" in words[0] and not words[0].startswith("-"):
        words.pop(0)  # environment assignments
    return words[1:]  # drop the interpreter


def _split(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """(what to run with --help: entry, sub-command and positionals; the flags used)."""
    n = 2 if words[0] == "-m" else 1
    head = list(words[:n])
    rest = words[n:]
    while rest and not rest[0].startswith("-"):
        head.append(rest.pop(0))
    flags = [w.split("=")[0] for w in rest if w.startswith("--")]
    return tuple(head), flags


@cache
def _help(head: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *head, "--help"], cwd=ROOT, env=env, timeout=300,
                          capture_output=True, text=True)


def _helped(result: subprocess.CompletedProcess) -> bool:
    """--help printed the usage: exit 0 (argparse), or absl's documented exit 1 after it."""
    return result.returncode == 0 or (result.returncode == 1
                                      and "Try --helpfull" in result.stdout)


def _config_field_exists(spec: str, dotted: str) -> bool:
    path, _, preset = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("doc_config", ROOT / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    node = module.get_config(preset) if preset else module.get_config()
    for key in dotted.split("."):
        if key not in node:
            return False
        node = node[key]
    return True


def test_the_docs_show_commands():
    shown = commands()
    assert len(shown) > 20
    assert any("bench.score" in c for _, c in shown)
    assert _split(_words("python -m launch.speed decode --size bench --repeats 2")) == (
        ("-m", "launch.speed", "decode"), ["--size", "--repeats"])


def test_every_shown_command_parses_its_flags():
    shown = commands()
    heads = sorted({_split(_words(c))[0] for _, c in shown})
    with ThreadPoolExecutor(2) as pool:  # the help texts, each run once
        list(pool.map(_help, heads))
    problems = []
    for doc, command in shown:
        head, flags = _split(_words(command))
        result = _help(head)
        if not _helped(result):
            problems.append(f"{doc}: `{command}`: --help exits {result.returncode}: "
                            f"{result.stderr.strip()[-300:]}")
            continue
        words = _words(command)
        for flag in flags:
            if flag.startswith("--config."):
                spec = words[words.index("--config") + 1]
                if not _config_field_exists(spec, flag.removeprefix("--config.")):
                    problems.append(f"{doc}: `{command}`: {spec} has no field {flag}")
            elif not re.search(rf"{re.escape(flag)}\b", result.stdout + result.stderr):
                problems.append(f"{doc}: `{command}`: {flag} is not a flag of "
                                f"{' '.join(head)}")
    assert problems == []


@pytest.mark.parametrize("command", ["python -m bench.score --no-such-flag X",
                                     "python launch/train.py --config configs/sft.py:toy "
                                     "--config.optimizer.no_such_field=1"])
def test_a_wrong_flag_is_caught(command):
    words = _words(command)
    head, flags = _split(words)
    if flags[-1].startswith("--config."):
        assert not _config_field_exists(words[words.index("--config") + 1],
                                        flags[-1].removeprefix("--config."))
    else:
        assert _helped(_help(head))
        assert flags[-1] not in _help(head).stdout
