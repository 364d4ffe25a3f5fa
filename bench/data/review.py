"""Human review sheet of generated drafts: export to CSV, import reviewers' decisions.

Reviewers fill the `decision` column with `accept` or `reject` (blank = not reviewed
yet) and may correct the text columns in place (text, scenario, style descriptions,
references, replies); corrections are applied on import and noted in the draft's
review verdict. The paper had every filtered item confirmed by people.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

from bench.data.drafts import Draft, DraftStyle, Verdict

STYLE_COLUMNS = ("name", "description", "reference", "reply", "reply_style")
COLUMNS = (["id", "dimension", "text", "scenario"]
           + [f"{c}_{ab}" for ab in "ab" for c in STYLE_COLUMNS]
           + ["neutral_reply", "checks", "decision", "reviewer", "note"])
ACCEPT, REJECT = {"accept", "accepted", "a", "yes", "y"}, {"reject", "rejected", "r", "no", "n"}


class ReviewError(ValueError):
    """A review sheet that cannot be applied; names the file, row and column."""


def export_sheet(drafts: list[Draft], path: str | os.PathLike) -> Path:
    """Write the review CSV (one row per draft, blank decision)."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for d in drafts:
            row = {"id": d.id, "dimension": d.dimension, "text": d.text, "scenario": d.scenario,
                   "neutral_reply": d.neutral_reply, "decision": "", "reviewer": "", "note": "",
                   "checks": " | ".join(f"{v.filter}: {'pass' if v.passed else 'FAIL'} - "
                                        f"{v.reason}" for v in d.verdicts)}
            for ab, s in zip("ab", d.styles, strict=True):
                row.update({f"{c}_{ab}": getattr(s, c) for c in STYLE_COLUMNS})
            w.writerow(row)
    return path


def _edited(d: Draft, row: dict) -> tuple[Draft, list[str]]:
    changed = [k for k in ("text", "scenario", "neutral_reply") if row[k].strip() != getattr(d, k)]
    styles = []
    for ab, s in zip("ab", d.styles, strict=True):
        new = DraftStyle(**{c: row[f"{c}_{ab}"].strip() for c in STYLE_COLUMNS})
        changed += [f"{c}_{ab}" for c in STYLE_COLUMNS if getattr(new, c) != getattr(s, c)]
        styles.append(new)
    d = dataclasses.replace(d, text=row["text"].strip(), scenario=row["scenario"].strip(),
                            neutral_reply=row["neutral_reply"].strip(), styles=tuple(styles))
    return d, changed


def import_sheet(path: str | os.PathLike, drafts: list[Draft]
                 ) -> tuple[list[Draft], list[Draft], list[Draft]]:
    """(accepted, rejected, not yet reviewed) drafts, with a `review` verdict added."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"review sheet not found: {path}")
    by_id = {d.id: d for d in drafts}
    accepted, rejected, seen = [], [], set()
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: sheets saved by Excel
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ReviewError(f"{path}: column {missing[0]!r} missing from the header")
        for n, row in enumerate(reader, start=2):  # row 1 is the header
            did = row["id"].strip()
            if did not in by_id:
                raise ReviewError(f"{path}:{n}: column 'id': unknown draft {did!r}")
            if did in seen:
                raise ReviewError(f"{path}:{n}: column 'id': {did!r} listed twice")
            seen.add(did)
            decision = row["decision"].strip().lower()
            if not decision:
                continue
            if decision not in ACCEPT | REJECT:
                raise ReviewError(f"{path}:{n}: column 'decision': {row['decision']!r} is not "
                                  "accept or reject")
            d, changed = _edited(by_id[did], row)
            who = row["reviewer"].strip() or "reviewer"
            note = "; ".join(x for x in (row["note"].strip(),
                                         f"edited {', '.join(changed)}" if changed else "") if x)
            ok = decision in ACCEPT
            reason = f"{'accepted' if ok else 'rejected'} by {who}" + (f" ({note})" if note
                                                                        else "")
            (accepted if ok else rejected).append(d.with_verdict(Verdict("review", ok, reason)))
    pending = [d for d in drafts if d.id not in {x.id for x in accepted + rejected}]
    return accepted, rejected, pending
