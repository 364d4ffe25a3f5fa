"""What shaped a run's scores, so that resuming never mixes old and new answers.

A run folder holds `fingerprint.json`: per role (system, asr, style, judge) the identity
its back end reports (model, prompt and rubric digests, rule-code digests, ...). A run
into a folder whose fingerprint differs is refused with the fields that changed, unless
`--force-new` sets the old results aside. What changes item by item (audio files, speaker
registers) is not in the fingerprint: bench.scoring.resume scores those items again.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from bench.backends.cache import digest
from bench.backends.remote import ConfigError
from bench.backends.systems import WavFolderSystem

FINGERPRINT_FILE = "fingerprint.json"
RUN_FILES = ("judgements.jsonl", "report.md", "table.csv", "run.json", "ledger.jsonl",
             "ledger_summary.json", FINGERPRINT_FILE)


class FingerprintMismatch(ConfigError):
    """The run folder holds results made with a different set-up."""


# Attributes that, where a back end has them, also decide its answers (e.g. a checkpoint
# system's weights digest, sampling seed and settings).
IDENTITY_ATTRS = ("model_id", "seed", "sampling")


def identity(backend) -> dict[str, str]:
    """A back end's identity: its name, `identity()` where it has one, IDENTITY_ATTRS."""
    fn = getattr(backend, "identity", None)
    extra = {a: str(getattr(backend, a)) for a in IDENTITY_ATTRS if hasattr(backend, a)}
    return {"name": backend.name, **extra, **(fn() if fn else {})}


def run_fingerprint(system, asr, style, judge, system_name: str) -> dict[str, dict[str, str]]:
    """role -> identity of everything that shapes a score."""
    sys_id = identity(system)
    if isinstance(system, WavFolderSystem):
        sys_id["path"] = str(system.dir.resolve())
    return {"system": {"system_name": system_name, **sys_id}, "asr": identity(asr),
            "style": identity(style), "judge": identity(judge)}


def fingerprint_id(fp: dict) -> str:
    """Short digest recorded in every judgement of the run."""
    return digest(fp)


def changes(old: dict, new: dict) -> list[str]:
    """'role.field: old -> new' for every field that differs."""
    out = []
    for role in sorted(set(old) | set(new)):
        a, b = old.get(role, {}), new.get(role, {})
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{role}.{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}")
    return out


def check_run_folder(out: Path, fp: dict, force_new: bool) -> Path | None:
    """Refuse a folder scored with another set-up; with force_new move its results aside.

    Returns the folder the old results went to (force_new), else None. Records `fp`.
    """
    path, results = out / FINGERPRINT_FILE, out / "judgements.jsonl"
    moved = None
    if results.exists() and results.stat().st_size > 0:
        old = json.loads(path.read_text()) if path.exists() else None
        diff = changes(old, fp) if old is not None else ["no fingerprint recorded (results "
                                                         "made by an older version)"]
        if diff and not force_new:
            raise FingerprintMismatch(
                f"{out} holds scores made with a different set-up, which would be mixed with "
                f"new ones: {'; '.join(diff)}. Use another --out, or --force-new to move the "
                "old results aside and score again.")
        if diff:
            moved = out / f"superseded-{time.strftime('%Y%m%d-%H%M%S')}"
            moved.mkdir()
            for name in RUN_FILES:
                if (out / name).exists():
                    shutil.move(str(out / name), moved / name)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fp, indent=2, sort_keys=True) + "\n")
    return moved
