"""Build a small ParaS2SBench-style set with espeak-ng: queries and two reply folders.

    python -m bench.data.make_offline_set --out DIR [--per-dimension 2]

Writes DIR/queries.jsonl, the prompts DIR/audio/<query>/<style>.flac, and replies of two
reference "systems" as wav folders: DIR/replies/style_aware (content and voice fit the
style) and DIR/replies/style_blind (one neutral answer for both styles, as a pipeline that
ignores style would give). The bundled copy in bench/data/offline was made with
`--per-dimension 1`. espeak-ng renders the style from keywords (bench.backends.tts.voice_for);
sarcasm can only be approximated by prosody here, which is a known limit of this set.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import soundfile as sf

from bench.backends.tts import EspeakTTS, voice_for
from bench.data.audio import decode_bytes

# (id, dimension, text, scenario, blind reply, [(style, how said, reference, reply, reply voice)])
TEMPLATES = [
    ("emo-ex", "emotion", "I just bumped into my ex at the grocery store.",
     "Said with excitement, the meeting went well and the user wants to share the thrill; "
     "said sadly, it reopened an old wound and the user needs comfort.",
     "Okay. Is there anything else I can help you with?",
     [("excited", "excited, happy, fast, loud, high-pitched",
       "Share the excitement: say wow, ask them to tell everything that happened.",
       "Wow, how exciting! Tell me everything, what happened?", "cheerful, fast, loud"),
      ("sad", "sad, slow, soft, low-pitched",
       "Comfort them: say you are sorry, acknowledge it was hard, offer to talk.",
       "Oh, I am so sorry. That must have been hard. Do you want to talk?",
       "gentle, slow, soft")]),
    ("emo-test", "emotion", "I got my test results back today.",
     "Said happily the results are good news to celebrate; said sadly they are bad news and "
     "the user needs support.",
     "Test results are usually sent by email or post.",
     [("happy", "happy, excited, fast, loud, high-pitched",
       "Celebrate: congratulations, great news, ask how they will celebrate.",
       "Congratulations, that is great news! How will you celebrate?", "cheerful, fast, loud"),
      ("sad", "sad, slow, soft, low-pitched",
       "Support them: sorry to hear it, offer help, ask what the doctor said.",
       "I am sorry to hear that. What did the doctor say? I am here to help.",
       "gentle, slow, soft")]),
    ("sarc-meet", "sarcasm", "Oh great, another meeting on Friday evening.",
     "Said sincerely the user likes the meeting; said sarcastically they are annoyed that it "
     "eats their Friday evening and want sympathy or a way out.",
     "Meetings on Friday evening are common in many companies.",
     [("sincere", "cheerful, happy, fast, high-pitched",
       "Take it as good news: glad they enjoy meetings, hope it goes well.",
       "Glad you enjoy them! I hope the meeting goes well.", "cheerful, fast"),
      ("sarcastic", "sarcastic, drawn-out, slow, low-pitched",
       "Hear the annoyance: that is frustrating, a Friday evening lost, suggest asking to move it.",
       "That is frustrating, losing your Friday evening. Maybe ask to move it?",
       "calm, slow")]),
    ("sarc-dinner", "sarcasm", "Wow, you really outdid yourself with dinner.",
     "Said sincerely it is praise to accept warmly; said sarcastically the dinner went wrong and "
     "the speaker is teasing or annoyed.",
     "Dinner is an important meal of the day.",
     [("sincere", "happy, excited, fast, high-pitched",
       "Accept the praise: thank you, glad you liked it, share the recipe.",
       "Thank you! I am glad you liked it. I can share the recipe.", "cheerful, fast"),
      ("sarcastic", "sarcastic, drawn-out, slow, low-pitched",
       "Own the failure: sorry it went wrong, joke about it, offer to order pizza.",
       "Sorry it went wrong! Shall we just order pizza instead?", "calm, slow")]),
    ("age-beer", "age", "Can you tell me where to buy some beer?",
     "An adult asking should get directions; a child asking must be told, kindly, that beer "
     "is only for grown ups.",
     "Beer is sold in many shops.",
     [("child", "a young child, high-pitched",
       "Safety first: beer is only for grown ups, suggest juice, ask a parent.",
       "Beer is only for grown ups. How about some juice? Ask your parent.", "gentle, slow"),
      ("adult", "an adult man, calm",
       "Help: the supermarket or a liquor store nearby sells beer.",
       "The supermarket nearby sells beer, or try the liquor store.", "calm")]),
    ("age-ride", "age", "I want to go on the big roller coaster.",
     "A child should be reminded of height rules and to go with a parent; an elderly person "
     "should be reminded about health and offered gentler rides.",
     "Roller coasters are popular rides.",
     [("child", "a young child, excited, high-pitched",
       "Height rules: check you are tall enough and go with a parent.",
       "Fun! Check you are tall enough, and go with a parent.", "cheerful"),
      ("elderly", "an elderly man, slow",
       "Health first: check with your doctor, maybe try a gentler ride.",
       "Please check with your doctor first. Maybe try a gentler ride?", "calm, slow")]),
    ("gen-party", "gender", "What should I wear to the party tonight?",
     "The apparent gender of the speaker changes which outfit suggestion is natural.",
     "Wear something comfortable.",
     [("female", "a woman, calm",
       "Suggest a dress: a little black dress with heels.",
       "A little black dress with heels would look great.", "calm"),
      ("male", "a man, calm",
       "Suggest a shirt: a smart shirt with a blazer.",
       "A smart shirt with a blazer would look great.", "calm")]),
    ("gen-hair", "gender", "I need a new haircut, any ideas?",
     "The apparent gender of the speaker changes which haircut suggestions are natural.",
     "A haircut every few weeks keeps hair healthy.",
     [("female", "a woman, calm",
       "Suggest a bob or long layers.", "How about a bob, or long layers?", "calm"),
      ("male", "a man, calm",
       "Suggest a fade or a crew cut.", "How about a fade, or a crew cut?", "calm")]),
]


def _save(tts: EspeakTTS, text: str, how: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = decode_bytes(tts.render(text, voice_for(how)), f"espeak-ng: {text!r}")
    buf = io.BytesIO()
    # FLAC keeps the bundled copy small; soundfile reads it like WAV.
    sf.write(buf, samples, 16000, format="FLAC", subtype="PCM_16")
    path.write_bytes(buf.getvalue())


def build(out: Path, per_dimension: int = 2) -> Path:
    """Render the set into `out`; return the queries file."""
    tts = EspeakTTS()
    counts: dict[str, int] = {}
    records = []
    for qid, dim, text, scenario, blind, styles in TEMPLATES:
        if counts.get(dim, 0) >= per_dimension:
            continue
        counts[dim] = counts.get(dim, 0) + 1
        rec_styles = []
        for name, how, reference, reply, reply_voice in styles:
            rel = Path("audio") / qid / f"{name}.flac"
            _save(tts, text, how, out / rel)
            _save(tts, reply, reply_voice, out / "replies" / "style_aware" / qid / f"{name}.flac")
            _save(tts, blind, "calm", out / "replies" / "style_blind" / qid / f"{name}.flac")
            rec_styles.append({"name": name, "audio": str(rel), "description": how,
                               "reference": reference, "reply_style": reply_voice,
                               "speaker": tts.speaker(how)})
        records.append({"id": qid, "dimension": dim, "text": text, "scenario": scenario,
                        "split": "synthetic", "styles": rec_styles})
    path = out / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-dimension", type=int, default=2)
    args = ap.parse_args(argv)
    path = build(args.out, args.per_dimension)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
