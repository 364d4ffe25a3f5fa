"""--judge-prompt / --caption-prompt: a user's own prompt templates, rendered with the item's
fields, recorded in the fingerprint, and refused (before any call) when a field is unknown."""

from __future__ import annotations

import json

import pytest

from bench import score
from bench.backends.judge import JUDGE_FIELDS, judge_prompt
from bench.backends.prompt_template import PROMPTS_DIR, TemplateError, parse_template
from bench.backends.style import CAPTION_FIELDS, caption_prompt
from bench.data.schema import read_judgements
from tests.bench.conftest import PLANTED_KEY, make_remote_set, remote_argv

# Every field a judge template can use, one per line, so the request shows each value.
PAPER_JUDGE = "[user]\nPAPER JUDGE\n" + "".join(
    f"{name} = <{{{name}}}>\n" for name in JUDGE_FIELDS) + \
    "Rate the reply from 1 to 5 and end with: The score is N.\n"
PAPER_CAPTIONER = """[system]
PAPER CAPTIONER. Answer as JSON, e.g. {{"emotion": "sad"}}.
[user]
Words heard: <{transcript}>. How are they said?
"""


def _caption_answer(body: dict) -> str:
    """Prompts sound sad and slow, replies cheerful and loud: the judge must see which."""
    text = next(p["text"] for m in body["messages"] if isinstance(m["content"], list)
                for p in m["content"] if p["type"] == "text")
    prompt = "<prompt " in text
    return json.dumps({"emotion": "sad" if prompt else "cheerful",
                       "speed": "slow" if prompt else "normal",
                       "volume": "soft" if prompt else "loud", "pitch": "low",
                       "gender": "female", "description": "a voice"})


@pytest.fixture
def paper_run(tmp_path, fake_server, monkeypatch):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 2)
    (tmp_path / "judge.txt").write_text(PAPER_JUDGE)
    (tmp_path / "captioner.txt").write_text(PAPER_CAPTIONER)
    fake_server.add_chat_rule("paper-judge", "PAPER JUDGE", lambda b: "Fits well. The score is 3.")
    fake_server.add_chat_rule("paper-captioner", "PAPER CAPTIONER", _caption_answer)
    argv = remote_argv(fake_server, queries, tmp_path / "out", tmp_path / "c.sqlite",
                       ["--judge-prompt", str(tmp_path / "judge.txt"),
                        "--caption-prompt", str(tmp_path / "captioner.txt")])
    return argv, tmp_path


def _messages(server, rule: str) -> list[list[dict]]:
    return [json.loads(b) for b in server.rule_bodies(rule)]


def test_custom_templates_render_every_field_into_the_requests(paper_run, fake_server):
    argv, tmp_path = paper_run
    assert score.main(argv) == 0
    res = {j.item_id: j for j in read_judgements(tmp_path / "out" / "judgements.jsonl")}
    assert {j.score for j in res.values()} == {3}
    # The caption requests: the template's system message, the clip's words in the user text.
    captions = _messages(fake_server, "paper-captioner")
    assert len(captions) == 8  # prompt and reply of 4 items
    for msgs in captions:
        assert msgs[0] == {"role": "system", "content": 'PAPER CAPTIONER. Answer as JSON, e.g. '
                                                        '{"emotion": "sad"}.'}
    texts = {p["text"] for msgs in captions for p in msgs[1]["content"] if p["type"] == "text"}
    assert "Words heard: <prompt q01a i just bumped into my ex>. How are they said?" in texts
    assert "Words heard: <reply for q02b sounds fine>. How are they said?" in texts
    # The judge requests: no [system] section, so one user message with every field filled.
    judged = {}
    for msgs in _messages(fake_server, "paper-judge"):
        assert [m["role"] for m in msgs] == ["user"]
        lines = dict(line.split(" = ", 1) for line in msgs[0]["content"].splitlines()
                     if " = " in line)
        judged[lines["user_transcript"]] = lines
    assert len(judged) == 4
    f = judged["<prompt q01a i just bumped into my ex>"]
    assert f["reply_transcript"] == "<reply for q01a sounds fine>"
    assert f["scenario"] == "<style matters>" and f["reference"] == "<comfort them>"
    assert f["expected_reply_style"] == "<gentle>"
    assert f["conversation_history"] == "<(none)>"
    assert (f["user_emotion"], f["user_speed"], f["user_volume"]) == ("<sad>", "<slow>", "<soft>")
    assert (f["reply_emotion"], f["reply_speed"], f["reply_volume"]) == (
        "<cheerful>", "<normal>", "<loud>")
    assert f["user_age"] == f["reply_age"] == "<unknown>"  # the captioner gave no age
    assert f["user_caption"] == f"<{res['q01:a'].input_caption}>"
    assert f["reply_caption"] == f"<{res['q01:a'].reply_caption}>"
    assert set(f) == set(JUDGE_FIELDS)


def test_an_edited_caption_prompt_changes_the_fingerprint(paper_run, fake_server, capsys):
    argv, tmp_path = paper_run
    assert score.main(argv) == 0
    (tmp_path / "captioner.txt").write_text(PAPER_CAPTIONER.replace("How", "Tell me how"))
    capsys.readouterr()
    assert score.main(argv) == 2
    err = capsys.readouterr().err
    assert "style.prompt_sha256:" in err and "judge." not in err


@pytest.mark.parametrize("flag, text, field", [
    ("--judge-prompt", "Judge {user_transcript} and {user_emotoin}. The score is N.",
     "{user_emotoin}"),
    ("--judge-prompt", "[system]\nThe score is N.\n[user]\nWords: {reply_text}", "{reply_text}"),
    ("--caption-prompt", "Describe it. The words: {user_transcript}", "{user_transcript}"),
])
def test_an_unknown_field_is_an_error_naming_it_and_the_file_before_any_call(
        tmp_path, fake_server, monkeypatch, capsys, flag, text, field):
    monkeypatch.setenv("BENCH_TEST_KEY", PLANTED_KEY)
    queries, _ = make_remote_set(tmp_path / "d", fake_server, 1)
    template = tmp_path / "mine.txt"
    template.write_text(text)
    argv = remote_argv(fake_server, queries, tmp_path / "out", tmp_path / "c.sqlite",
                       [flag, str(template)])
    assert score.main(argv) == 2
    err = capsys.readouterr().err
    assert f"unknown field {field}" in err and str(template) in err and flag in err
    known = JUDGE_FIELDS if flag == "--judge-prompt" else CAPTION_FIELDS
    assert all("{" + name + "}" in err for name in known)  # the error lists what is allowed
    assert not fake_server.counts  # refused before a single request


def test_bundled_prompts_are_templates_read_by_the_same_code():
    judge, caption = judge_prompt(), caption_prompt()
    assert judge.source == str(PROMPTS_DIR / "judge.txt")
    assert judge.fields == {"scenario", "reference", "user_transcript", "user_caption",
                            "reply_transcript", "reply_caption"}
    assert "CONTINUATION FITNESS" in judge.system and "The score is N." in judge.system
    assert caption.source == str(PROMPTS_DIR / "style.txt") and caption.fields == set()


@pytest.mark.parametrize("text, message", [
    ("Say {user_transcript} with {", "write {{ and }} for literal braces"),
    ("Say {} now", "empty placeholder"),
    ("Say {0} now", "unknown field {0}"),
    ("Say {user_transcript.upper} now", "unknown field {user_transcript.upper}"),
    ("Say\n{user_transcript!r} now", "line 2: {user_transcript!r}: placeholders are plain names"),
    ("Say {user_transcript:>10}", "placeholders are plain names"),
    ("intro\n[user]\nSay {user_transcript}", "text before the first [system]/[user] line"),
    ("[system]\na\n[system]\nb\n[user]\nc", "at most one [system] and exactly one [user]"),
    ("[system]\nonly a system message", "exactly one [user]"),
    ("[user]\n\n", "the user message is empty"),
])
def test_malformed_templates_are_refused_with_the_reason(text, message):
    with pytest.raises(TemplateError, match="--judge-prompt mine.txt") as err:
        parse_template(text, "mine.txt", JUDGE_FIELDS, "--judge-prompt")
    assert message in str(err.value)


def test_literal_braces_and_sections_render():
    t = parse_template('[system]\nJSON like {{"a": 1}}\n\n[user]\n\nHeard: {transcript}\n',
                       "t.txt", CAPTION_FIELDS, "--caption-prompt")
    assert t.render({"transcript": "hi {there}"}) == ('JSON like {"a": 1}', "Heard: hi {there}")


def test_a_judge_prompt_that_never_asks_for_the_score_sentence_is_refused(tmp_path):
    path = tmp_path / "j.txt"
    path.write_text("Rate {reply_transcript} from 1 to 5.")
    with pytest.raises(TemplateError, match="'The score is N.'"):
        judge_prompt(path)


@pytest.mark.parametrize("flag", ["--judge-prompt", "--caption-prompt"])
def test_a_prompt_for_an_offline_backend_is_a_config_error(tmp_path, capsys, flag):
    path = tmp_path / "p.txt"
    path.write_text("The score is N.")
    assert score.main(["--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c.sqlite"),
                       flag, str(path)]) == 2
    assert f"{flag} applies to" in capsys.readouterr().err


def test_a_missing_template_file_is_named(tmp_path, capsys):
    assert score.main(["--judge", "openai", "--judge-key-env", "", "--judge-prompt",
                       str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")]) == 2
    assert f"--judge-prompt: prompt template not found: {tmp_path / 'nope.txt'}" in \
        capsys.readouterr().err
