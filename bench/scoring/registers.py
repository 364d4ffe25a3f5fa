"""Speaker registers for the offline captioner: each speaker's typical pitch (median F0).

Prompts: every style variant may name its `speaker`; a speaker's register is the median
over all of that speaker's prompts in the queries file (the whole file, so --limit or
--dimensions do not move it). Replies of a wav-folder system: one register over every
reply file in the folder (the system's voice). Other systems, and speakers with fewer
than MIN_REGISTER_CLIPS clips, get none: their captions use the population bands.

Registers shape captions but are not part of the run fingerprint: when one moves (a reply
file changed), a resume judges again only the items whose caption words it changes
(bench.scoring.resume). run.json records the values a run used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.backends.style import Register, register_of
from bench.backends.systems import WavFolderSystem
from bench.data.audio import AudioError
from bench.data.schema import Query


@dataclass
class Registers:
    prompt: dict[str, Register] = field(default_factory=dict)  # speaker -> register
    reply: Register | None = None

    def as_dict(self) -> dict:
        return {"prompt": {k: r.as_dict() for k, r in self.prompt.items()},
                "reply": self.reply.as_dict() if self.reply else None}


def _register(captioner, paths: list[str]) -> Register | None:
    measured = []
    for path in paths:
        try:
            measured.append(captioner.measure(path))
        except AudioError:
            continue  # a bad file fails its own item; it just does not count here
    return register_of(measured)


def build_registers(queries: list[Query], system, captioner) -> Registers:
    """Registers for a run; empty when the captioner does not measure prosody."""
    if not hasattr(captioner, "measure"):
        return Registers()
    by_speaker: dict[str, list[str]] = {}
    for q in queries:
        for s in q.styles:
            if s.speaker:
                by_speaker.setdefault(s.speaker, []).append(s.audio)
    prompt = {spk: reg for spk, paths in by_speaker.items()
              if (reg := _register(captioner, paths)) is not None}
    reply = None
    if isinstance(system, WavFolderSystem):
        files = sorted(str(p) for ext in ("wav", "flac") for p in system.dir.glob(f"*/*.{ext}"))
        reply = _register(captioner, files)
    return Registers(prompt, reply)
