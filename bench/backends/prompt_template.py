"""Prompt templates: the judge's and the style captioner's prompts as text files.

A template is plain text with named placeholders in Python `str.format` style,
`{user_transcript}`; `{{` and `}}` stand for literal braces (a JSON example in a prompt
needs them doubled). A file may hold a system message and a user message, each after a
line that reads `[system]` or `[user]`; without such lines the whole file is the user
message. Every placeholder must be one of the fields the back end fills; any other name
is an error naming it and the file, so a typo never reaches a paid call.

The bundled prompts are templates in `bench/backends/prompts/`, read by the same code.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROMPTS_DIR = Path(__file__).parent / "prompts"
_SECTION_RE = re.compile(r"^\[(system|user)\][ \t]*$", re.M)


class TemplateError(ValueError):
    """A prompt template that cannot be rendered; the message names the file and the field."""


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed template: its messages, the fields they use and the file's sha256."""

    source: str  # the file it was read from
    system: str | None
    user: str
    fields: frozenset[str]
    sha256: str  # of the file's bytes: what the run fingerprint records

    def render(self, values: Mapping[str, str]) -> tuple[str | None, str]:
        """(system message or None, user message) with every placeholder filled."""
        missing = self.fields - set(values)
        if missing:  # a back end that forgot a field it declared: a bug, not a user error
            raise KeyError(f"{self.source}: no value for {sorted(missing)}")
        system = self.system.format_map(values) if self.system is not None else None
        return system, self.user.format_map(values)


def _line_of(text: str, needle: str) -> int:
    return text[: max(text.find(needle), 0)].count("\n") + 1


def _placeholders(text: str, where: str, known: Mapping[str, str]) -> set[str]:
    listing = ", ".join("{" + name + "}" for name in known) or "(none)"
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise TemplateError(f"{where}: {err}; write {{{{ and }}}} for literal braces") from None
    used = set()
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + \
            (f":{spec}" if spec else "") + "}"
        if name not in known:
            why = "empty placeholder" if not name else f"unknown field {shown}"
            raise TemplateError(
                f"{where}, line {_line_of(text, shown)}: {why}; the fields this prompt can use "
                f"are {listing} (write {{{{ and }}}} for literal braces)")
        if spec or conversion:
            raise TemplateError(f"{where}, line {_line_of(text, shown)}: {shown}: placeholders "
                                "are plain names, without a conversion or format spec")
        used.add(name)
    return used


def parse_template(text: str, source: str, known: Mapping[str, str], flag: str,
                   sha256: str | None = None) -> PromptTemplate:
    """Parse template text read from `source` (for `flag`); TemplateError when a placeholder
    is not in `known` (field name -> what it holds) or the sections are malformed."""
    where = f"{flag} {source}"
    marks = list(_SECTION_RE.finditer(text))
    if not marks:
        sections = {"user": text}
    else:
        if text[: marks[0].start()].strip():
            raise TemplateError(f"{where}: text before the first [system]/[user] line; put it "
                                "under one of them")
        names = [m.group(1) for m in marks]
        if len(set(names)) != len(names) or "user" not in names:
            raise TemplateError(f"{where}: expected at most one [system] and exactly one [user] "
                                f"line, found {', '.join('[' + n + ']' for n in names)}")
        ends = [m.start() for m in marks[1:]] + [len(text)]
        sections = {m.group(1): text[m.end():end].strip("\n")
                    for m, end in zip(marks, ends, strict=True)}
    if not sections["user"].strip():
        raise TemplateError(f"{where}: the user message is empty")
    used = set()
    for section in sections.values():
        used |= _placeholders(section, where, known)
    digest = sha256 or hashlib.sha256(text.encode("utf-8")).hexdigest()
    return PromptTemplate(source, sections.get("system"), sections["user"].strip("\n"),
                          frozenset(used), digest)


def load_template(path: str | Path, known: Mapping[str, str], flag: str) -> PromptTemplate:
    """Read and parse a template file given to `flag` (e.g. --judge-prompt)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag}: prompt template not found: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TemplateError(f"{flag} {path}: not UTF-8 text ({err})") from None
    return parse_template(text, str(path), known, flag, hashlib.sha256(data).hexdigest())


def bundled_template(name: str, known: Mapping[str, str], flag: str) -> PromptTemplate:
    """A template shipped in bench/backends/prompts/ (the default for `flag`)."""
    return load_template(PROMPTS_DIR / name, known, flag)


def field_list(known: Mapping[str, str]) -> str:
    """The placeholders a prompt can use, as --help lists them."""
    return " ".join("{" + name + "}" for name in known)
