"""A real OpenAI-compatible HTTP server for tests, with scripted failures.

Requests are attributed to an item by a marker: audio is recognised by the hash of the
WAV bytes the client uploads (registered by the test), text by a regex over the body.
Per (endpoint, marker) a queue of behaviours is consumed in order: "429", "500",
"timeout", "malformed", "empty", "bold" (judge); anything else (or an empty queue)
answers normally.

Plain chat requests can also be answered by scripted rules (`add_chat_rule`): the first
rule whose pattern matches the request body answers (a list of texts: one choice each, as
for a request with n > 1); its requests are counted under the rule's name and kept in
`bodies` as (name, canonical messages JSON).

The Batch API (files upload, batches create / retrieve, file content) answers each request
line with the chat-completions logic above (a judge request is kept in `bodies` as
"batch_judge"; the script queues are shared with online calls). A batch's status moves
one step of `batch_steps` per retrieve; `batch_answered` caps how many lines an expired
or cancelled batch answered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf

from bench.data.audio import decode_bytes, wav_bytes

MARKER_RE = re.compile(r"\bq\d\d[ab]\b")


def tone_wav(seed: int, seconds: float = 0.6, sr: int = 16000) -> bytes:
    """A distinct, non-silent WAV per seed (so each reply has its own hash)."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 7 * seed) * t)
    buf = io.BytesIO()
    sf.write(buf, x, sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients killed or timed out mid-reply are part of the tests, not errors.
        pass


class FakeOpenAI:
    def __init__(self):
        self.script: dict[tuple[str, str], list[str]] = {}
        self.counts: Counter = Counter()
        self.audio_markers: dict[str, str] = {}  # sha256 of WAV bytes -> marker
        self.transcripts: dict[str, str] = {}  # marker -> text
        self.judge_scores: dict[str, int] = {}  # marker -> score
        self.delay_s = 0.0
        self.timeout_sleep_s = 2.0
        self.bodies: list[tuple[str, str]] = []  # (endpoint, body text) for inspection
        self.auth_headers: list[str] = []
        self.chat_rules: list[tuple[str, re.Pattern, Callable[[dict], str | list[str]]]] = []
        self.files: dict[str, bytes] = {}  # Batch API: uploaded and result files
        self.uploads: list[str] = []  # ids of uploaded files, in order
        self.batches: dict[str, dict] = {}  # id -> the batch object as served
        self.polls: Counter = Counter()  # batch id -> retrieves
        self.batch_steps = ["validating", "in_progress", "completed"]
        self.batch_answered: int | None = None
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_chat_rule(self, name: str, pattern: str,
                      answer: Callable[[dict], str | list[str]]) -> None:
        """Answer chat requests whose raw body matches `pattern` with answer(parsed body)."""
        self.chat_rules.append((name, re.compile(pattern, re.S), answer))

    def rule_bodies(self, name: str | None = None) -> list[str]:
        """Messages (canonical JSON) of the requests rule `name` (or any rule) received."""
        names = {r[0] for r in self.chat_rules} if name is None else {name}
        with self._lock:
            return [b for n, b in self.bodies if n in names]

    def register_audio(self, wav: bytes, marker: str, transcript: str) -> None:
        """Recognise `wav` as it is, and as the client re-encodes it (16 kHz PCM16)."""
        for data in (wav, wav_bytes(decode_bytes(wav, marker))):
            self.audio_markers[hashlib.sha256(data).hexdigest()] = marker
            self.transcripts[hashlib.sha256(data).hexdigest()] = transcript

    def reply_audio(self, marker: str) -> bytes:
        seed = int(marker[1:3]) * 2 + (marker[3] == "b") if MARKER_RE.match(marker) else 999
        wav = tone_wav(seed)
        self.register_audio(wav, marker, f"reply for {marker} sounds fine")
        return wav

    def next_behaviour(self, endpoint: str, marker: str) -> str:
        with self._lock:
            self.counts[(endpoint, marker)] += 1
            queue = self.script.get((endpoint, marker), [])
            return queue.pop(0) if queue else "ok"

    def item_counts(self, marker: str) -> int:
        with self._lock:
            return sum(n for (_, m), n in self.counts.items() if m == marker)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            capture: list | None = None  # set while answering a batch's lines
            channel = ""  # "batch_" while answering a batch's lines

            def _send(self, code: int, body: bytes, ctype: str = "application/json", extra=None):
                if self.capture is not None:
                    self.capture.append((code, body))
                    return
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _json(self, obj, code=200, extra=None):
                self._send(code, json.dumps(obj).encode(), extra=extra)

            def _fail(self, behaviour: str) -> bool:
                if behaviour == "429":
                    self._json({"error": {"message": "slow down", "type": "rate_limit"}}, 429,
                               {"Retry-After": "0"})
                    return True
                if behaviour == "401echo":  # like servers that quote the key back
                    key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    self._json({"error": {"message": f"Incorrect API key provided: {key}",
                                          "type": "invalid_request_error"}}, 401)
                    return True
                if behaviour == "500":
                    self._json({"error": {"message": "boom", "type": "server_error"}}, 500)
                    return True
                if behaviour == "timeout":
                    time.sleep(fake.timeout_sleep_s)
                    try:
                        self._json({"error": {"message": "too late"}}, 504)
                    except OSError:
                        pass
                    return True
                return False

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.auth_headers.append(self.headers.get("Authorization", ""))
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if self.path.endswith("/audio/transcriptions"):
                    return self._transcribe(raw)
                if self.path.endswith("/audio/speech"):
                    return self._speech(json.loads(raw))
                if self.path.endswith("/chat/completions"):
                    return self._chat(json.loads(raw), raw.decode())
                if self.path.endswith("/files"):
                    return self._upload(raw)
                if self.path.endswith("/batches"):
                    return self._create_batch(json.loads(raw))
                self._json({"error": {"message": f"no route {self.path}"}}, 404)

            def do_GET(self):
                if urlsplit(self.path).path.endswith("/batches"):  # newest first, as the API
                    return self._json({"object": "list", "has_more": False, "data": [
                        self._shown(b) for b in reversed(list(fake.batches))]})
                m = re.search(r"/batches/([^/]+)$", self.path)
                if m and m.group(1) in fake.batches:
                    return self._json(self._advance(m.group(1)))
                m = re.search(r"/files/([^/]+)/content$", self.path)
                if m and m.group(1) in fake.files:
                    return self._send(200, fake.files[m.group(1)], "application/octet-stream")
                self._json({"error": {"message": f"no route {self.path}"}}, 404)

            def _upload(self, raw: bytes):
                msg = BytesParser().parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                parts = {p.get_param("name", header="content-disposition"): p.get_payload(
                    decode=True) for p in msg.get_payload()}
                with fake._lock:
                    fid = f"file-{len(fake.files) + 1}"
                    fake.files[fid] = parts["file"]
                    fake.uploads.append(fid)
                self._json({"id": fid, "object": "file", "bytes": len(parts["file"]),
                            "created_at": 0, "filename": "requests.jsonl",
                            "purpose": parts["purpose"].decode(), "status": "processed"})

            def _create_batch(self, body: dict):
                with fake._lock:
                    bid = f"batch_{len(fake.batches) + 1}"
                    fake.batches[bid] = {
                        "id": bid, "object": "batch", "endpoint": body["endpoint"],
                        "input_file_id": body["input_file_id"], "created_at": 0,
                        "completion_window": body["completion_window"], "status": "validating",
                        "output_file_id": None, "error_file_id": None, "errors": None,
                        "steps": list(fake.batch_steps)}
                self._json(self._shown(bid))

            def _shown(self, bid: str) -> dict:
                return {k: v for k, v in fake.batches[bid].items() if k != "steps"}

            def _advance(self, bid: str) -> dict:
                """One status step; on reaching an end, the result files."""
                b = fake.batches[bid]
                fake.polls[bid] += 1
                if b["steps"]:
                    b["status"] = b["steps"].pop(0)
                    if b["status"] == "failed":
                        b["errors"] = {"object": "list", "data": [
                            {"code": "invalid_request", "message": "fake batch failure"}]}
                    elif b["status"] in ("completed", "expired", "cancelled"):
                        self._answer_batch(b)
                return self._shown(bid)

            def _answer_batch(self, b: dict):
                lines = fake.files[b["input_file_id"]].decode().splitlines()
                if b["status"] != "completed" and fake.batch_answered is not None:
                    lines = lines[: fake.batch_answered]
                out, err = [], []
                for i, line in enumerate(lines):
                    req = json.loads(line)
                    self.capture, self.channel = [], "batch_"
                    try:
                        self._chat(req["body"], json.dumps(req["body"]))
                        code, payload = self.capture[0]
                    finally:
                        self.capture, self.channel = None, ""
                    row = {"id": f"req_{i}", "custom_id": req["custom_id"], "error": None,
                           "response": {"status_code": code, "request_id": f"r{i}",
                                        "body": json.loads(payload)}}
                    (out if code == 200 else err).append(json.dumps(row) + "\n")
                for name, rows in (("output_file_id", out), ("error_file_id", err)):
                    if rows:
                        fid = f"file-{len(fake.files) + 1}"
                        fake.files[fid] = "".join(rows).encode()
                        b[name] = fid

            def _transcribe(self, raw: bytes):
                msg = BytesParser().parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                parts = {p.get_param("name", header="content-disposition"): p.get_payload(
                    decode=True) for p in msg.get_payload()}
                sha = hashlib.sha256(parts["file"]).hexdigest()
                marker = fake.audio_markers.get(sha, "unknown")
                fake.bodies.append(("transcriptions", marker))
                if self._fail(fake.next_behaviour("transcriptions", marker)):
                    return
                text = fake.transcripts.get(sha, "unregistered audio")
                if parts.get("response_format") == b"text":
                    return self._send(200, text.encode(), "text/plain")
                self._json({"text": text})

            def _speech(self, body: dict):
                m = MARKER_RE.search(body.get("input", ""))
                marker = m.group(0) if m else "unknown"
                fake.bodies.append(("speech", json.dumps(body)))
                if self._fail(fake.next_behaviour("speech", marker)):
                    return
                self._send(200, fake.reply_audio(marker), "audio/wav")

            def _completion(self, model: str, content: str | list[str],
                            audio: dict | None = None):
                contents = content if isinstance(content, list) else [content]
                messages = [{"role": "assistant", "content": c} for c in contents]
                if audio is not None:
                    messages[0]["audio"] = audio
                self._json({
                    "id": "cmpl-1", "object": "chat.completion", "created": 0,
                    "model": f"{model}-2025-04-14",
                    "choices": [{"index": i, "message": m, "finish_reason": "stop"}
                                for i, m in enumerate(messages)],
                    "usage": {"prompt_tokens": 1000, "completion_tokens": 50,
                              "total_tokens": 1050},
                })

            def _audio_in(self, body: dict) -> str:
                for msg in body["messages"]:
                    if isinstance(msg.get("content"), list):
                        for part in msg["content"]:
                            if part.get("type") == "input_audio":
                                data = base64.b64decode(part["input_audio"]["data"])
                                return fake.audio_markers.get(
                                    hashlib.sha256(data).hexdigest(), "unknown")
                return "unknown"

            def _chat(self, body: dict, text: str):
                model = body.get("model", "")
                system = body["messages"][0].get("content", "")
                if "audio" in (body.get("modalities") or []):
                    marker = self._audio_in(body)
                    fake.bodies.append(("audio_chat", marker))
                    b = fake.next_behaviour("audio_chat", marker)
                    if self._fail(b):
                        return
                    if b == "empty":
                        return self._completion(model, "", None)
                    wav = fake.reply_audio(marker)
                    return self._completion(model, "", {
                        "id": "aud-1", "expires_at": 0, "transcript": f"reply for {marker}",
                        "data": base64.b64encode(wav).decode()})
                if isinstance(system, str) and "CONTINUATION FITNESS" in system:
                    m = MARKER_RE.search(text)
                    marker = m.group(0) if m else "unknown"
                    fake.bodies.append((self.channel + "judge", text))
                    b = fake.next_behaviour("judge", marker)
                    if self._fail(b):
                        return
                    if b == "malformed":
                        return self._completion(model, "Looks good to me, maybe four.")
                    if b == "empty":
                        return self._completion(model, "")
                    score = fake.judge_scores.get(marker, 4)
                    if b == "bold":  # Markdown, as GPT-4.1 often writes it
                        return self._completion(model, f"Fits the cues.\n\n**The score is "
                                                       f"{score}.**")
                    return self._completion(model, f"Fits the cues. The score is {score}.")
                for name, pattern, answer in fake.chat_rules:
                    if pattern.search(text):
                        with fake._lock:
                            fake.bodies.append((name, json.dumps(body["messages"],
                                                                 sort_keys=True)))
                        b = fake.next_behaviour(name, "any")
                        if self._fail(b):
                            return
                        if b == "malformed":
                            return self._completion(model, "I think it is fine, probably.")
                        return self._completion(model, answer(body))
                marker = self._audio_in(body)
                if marker != "unknown":
                    fake.bodies.append(("style", marker))
                    if self._fail(fake.next_behaviour("style", marker)):
                        return
                    return self._completion(model, json.dumps({
                        "emotion": "excited", "speed": "fast", "volume": "loud",
                        "pitch": "high", "gender": "female", "age": "adult",
                        "description": f"bright voice ({marker})"}))
                m = MARKER_RE.search(text)
                marker = m.group(0) if m else "unknown"
                fake.bodies.append(("chat", text))
                if self._fail(fake.next_behaviour("chat", marker)):
                    return
                reply = f"Sure, here is my answer for {marker}."
                if "JSON" in system:  # the topline asks for reply + voice instructions
                    reply = json.dumps({"reply": reply, "voice": "warm, slow, soft"})
                return self._completion(model, reply)

        return Handler
