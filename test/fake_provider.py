#!/usr/bin/env python3
"""Fake OpenAI-compatible LLM server for llmext's offline tests and benchmarks.

Python 3.11 standard library only (uvloop is used when it can be imported).  One asyncio.Protocol per connection with
hand-rolled HTTP/1.1 (Content-Length bodies, keep-alive, pipelining,
"Expect: 100-continue"), so one core serves thousands of requests per second.

    python3 test/fake_provider.py --port N [--host 127.0.0.1] [--latency-ms 0]
                                  [--api-key KEY] [--pidfile FILE]
    python3 test/fake_provider.py --self-test

--port 0 picks a free port.  When ready it prints exactly
"fake_provider listening on HOST:PORT" on stdout (after writing --pidfile).
SIGTERM / SIGINT stop it with exit code 0.

Endpoints
    POST /v1/chat/completions  behaviour chosen by the body's "model" (below)
    GET  /v1/models            {"object":"list","data":[{"id":"echo",...},...]}
    GET  /_stats               counters as JSON (see "Counters")
    POST /_reset               zero the counters -> {"reset":true}
    anything else              404
Every error body is exactly
    {"error":{"message":"...","type":"...","param":null|"...","code":null|"..."}}

Normal answer (any model name not listed below)
    200 with header x-request-id: req_fake_<n> (n counts chat answers, never
    reset; every chat response, errors included, carries it) and a
    chat.completion body whose id is chatcmpl-fake-<n> and whose content is
    "echo: " + text of the last "user" message.  text(m) is the content string,
    or the "text" of the {"type":"text"} parts joined by one space, or "".
    prompt_tokens = sum(4 + words(text(m))), completion_tokens = words(content),
    where words(s) = len(s.split()).
    response_format {"type":"json_object"}  -> content {"echo":"<last user text>"}
    response_format {"type":"json_schema"}  -> content is a minimal instance of
        json_schema.schema: required properties (all if no "required"), strings
        = last user text, numbers 1, booleans true, arrays one item, first enum.
    max_completion_tokens / max_tokens (int >= 1) -> content cut to that many
        words, finish_reason "length" (applied after the JSON modes).
    --latency-ms delays every chat answer except "stats" / "stats-reset".

Special models
    stats            content = compact JSON of /_stats; not itself counted
    stats-reset      the same, then zero the counters
    usage-details    cached_tokens = prompt // 2, reasoning_tokens = 7,
                     completion_tokens = words + 7
    slow-<ms>        wait <ms> more milliseconds, then answer normally; a client
                     that disconnects first is counted in "aborted"
    fail-<status>    that status with an OpenAI-like error, for status in
                     400 401 403 404 408 409 422 429 500 502 503 529.
                     401 echoes the caller's bearer token in the message ON
                     PURPOSE (the client must redact it); 429 sends Retry-After: 1,
                     retry-after-ms: 1000 and x-ratelimit-*; 503 Retry-After: 1
    fail-429-<secs>  fail-429 with Retry-After: <secs>, retry-after-ms: secs*1000
    flaky-<n>-<any>  the first <n> requests for this exact model string get a
                     503 (Retry-After: 0, retry-after-ms: 10), later ones a normal
                     answer; /_reset and stats-reset forget the count
    truncated        200 whose body is the first half of a normal answer's JSON
    nonjson          200 text/html "<html><body>502 Bad Gateway</body></html>"
    nochoices        200 completion JSON without "choices"
    nullcontent      content null, refusal "I can't help with that.",
                     finish_reason "content_filter" (usage as for the echo)
    huge-<bytes>     content is "x" * <bytes> (100 MB works)
    auth             with --api-key K, 401 "Incorrect API key provided." unless
                     the header is exactly "Authorization: Bearer K"
    badjson          content "{not json" when response_format asks for JSON
    leak-<offset>    500 text/plain whose body is <offset> "x", the caller's
                     bearer token (or "none") and " end": a key ON PURPOSE,
                     at any byte of a non-JSON error body
    leak-ids         a normal answer whose x-request-id is "req-<token>", id
                     "chatcmpl-<token>", model "m-<token>" and content
                     "the key is <token>", <token> the caller's bearer token
    leak-long-id     a normal answer whose x-request-id is 110 "r" then the
                     token (a client keeping 127 bytes cuts inside the token)
    nul              content "bad\u0000tail" (a NUL character, JSON-escaped)
Body validation (400, type invalid_request_error): body not JSON; "model"
missing or empty (param "model"); "messages" missing, not a list or empty
(param "messages"); a message that is not an object with a string "role".

Counters (GET /_stats)
    requests_total  every HTTP request (chat, /v1/models, /_stats, /_reset, 404)
    chat_requests   POSTs to /v1/chat/completions, invalid ones included
    by_model        {model: chat request count}
    aborted         chat requests whose client left before the delayed answer
    connections     TCP connections accepted (a client that keeps its
                    connection alive opens one for many requests)
    in_flight       chat requests waiting for their answer; max_in_flight
    last_request    the last chat body (a JSON object) plus a field
                    "authorization": "present"|"absent" (the value never shown)
Requests for the "stats" models are left out of every counter.  A reset keeps
in_flight (a gauge) and sets max_in_flight to it.
"""
import argparse
import asyncio
import http.client
import json
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
from http import HTTPStatus

JSON_TYPE = "application/json"
MAX_HEAD = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MODEL_NAMES = ["echo", "usage-details", "stats", "slow-1000", "fail-429",
               "flaky-2-demo", "nullcontent"]
SLOW, HUGE = re.compile(r"slow-(\d+)"), re.compile(r"huge-(\d+)")
LEAK = re.compile(r"leak-(\d+)")
FAIL, FLAKY = re.compile(r"fail-(\d{3})(?:-(\d+))?"), re.compile(r"flaky-(\d+)-(.+)", re.S)
REASONS = {s.value: s.phrase for s in HTTPStatus} | {529: "Site Overloaded"}
# status -> (message, type, param, code); {model} and {key} are filled in.
FAILS = {
    400: ("Invalid value for 'temperature'.", "invalid_request_error", "temperature", None),
    401: ("Incorrect API key provided: {key}. You can find your API key at "
          "https://example.invalid/keys.", "invalid_request_error", None, "invalid_api_key"),
    403: ("You are not allowed to use this model.", "permission_error", None, None),
    404: ("The model '{model}' does not exist or you do not have access to it.",
          "invalid_request_error", None, "model_not_found"),
    408: ("Request timed out.", "timeout_error", None, None),
    409: ("The request conflicts with another request in progress.", "conflict_error", None, None),
    422: ("The request could not be processed.", "invalid_request_error", None, None),
    429: ("Rate limit reached for requests", "requests", None, "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None, None),
    502: ("Bad gateway.", "server_error", None, None),
    503: ("The engine is currently overloaded, please try again later.", "server_error",
          None, "server_is_overloaded"),
    529: ("The service is temporarily overloaded.", "overloaded_error", None, "overloaded"),
}
RATE_LIMIT_HEADERS = [("x-ratelimit-limit-requests", 60), ("x-ratelimit-remaining-requests", 0),
                      ("x-ratelimit-reset-requests", "1s")]
BAD_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The API expects a JSON payload.)")


# ---------------------------------------------------------------- responses
class Response:
    __slots__ = ("status", "body", "ctype", "headers")

    def __init__(self, status, body, ctype=JSON_TYPE, headers=()):
        self.status, self.body, self.ctype, self.headers = status, body, ctype, list(headers)

    def head(self, close):
        lines = [f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'Unknown')}\r\n"
                 f"Content-Type: {self.ctype}\r\nContent-Length: {len(self.body)}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in self.headers]
        lines.append("Connection: close\r\n\r\n" if close else "\r\n")
        return "".join(lines).encode("latin-1")


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def to_bytes(obj):
    try:
        return dumps(obj).encode()
    except UnicodeEncodeError:  # lone surrogates from the request: keep \u escapes
        return json.dumps(obj, separators=(",", ":")).encode()


def json_response(status, obj, headers=()):
    return Response(status, to_bytes(obj), JSON_TYPE, headers)


def error_response(status, message, etype, param=None, code=None, headers=()):
    error = {"message": message, "type": etype, "param": param, "code": code}
    return json_response(status, {"error": error}, headers)


def fail_response(status, model, key="none", retry_secs=1, retry_ms=None):
    message, etype, param, code = FAILS[status]
    headers = [("Retry-After", retry_secs)] if status in (429, 503) else []
    if status == 429 or retry_ms is not None:
        headers.append(("retry-after-ms", retry_secs * 1000 if retry_ms is None else retry_ms))
    if status == 429:
        headers += RATE_LIMIT_HEADERS
    message = message.format(model=model, key=key)
    return error_response(status, message, etype, param, code, headers)


# ---------------------------------------------------------------- chat content
def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content if isinstance(p, dict)
                        and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def words(s):
    return len(s.split())


def last_user_text(messages):
    return next((text_of(m.get("content")) for m in reversed(messages)
                 if m["role"] == "user"), "")


def schema_instance(schema, text, root, depth=0):
    """Minimal JSON value matching `schema` (strings become `text`)."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return schema_instance(target, text, root, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema_instance(schema[key][0], text, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else None
    if kind == "object" or (kind is None and props is not None):
        props = props or {}
        keys = schema["required"] if isinstance(schema.get("required"), list) else list(props)
        return {k: schema_instance(props.get(k), text, root, depth + 1)
                for k in keys if isinstance(k, str)}
    if kind == "array":
        items = schema.get("items")
        return [schema_instance(items, text, root, depth + 1)] if isinstance(items, dict) else []
    return {"string": text, "integer": 1, "number": 1, "boolean": True}.get(kind)


def json_mode(req):
    rf = req.get("response_format")
    kind = rf.get("type") if isinstance(rf, dict) else None
    return kind if kind in ("json_object", "json_schema") else None


def echo_content(req):
    user = last_user_text(req["messages"])
    mode = json_mode(req)
    if mode == "json_object":
        return dumps({"echo": user})
    if mode == "json_schema":
        spec = req["response_format"].get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return dumps(schema_instance(schema, user, schema))
    return "echo: " + user


def token_limit(req):
    for key in ("max_completion_tokens", "max_tokens"):
        value = req.get(key)
        if type(value) is int and value >= 1:
            return value
    return None


def prompt_tokens(req):
    return sum(4 + words(text_of(m.get("content"))) for m in req["messages"])


def completion(n, model, content, prompt, completion_tokens, finish="stop",
               refusal=None, cached=0, reasoning=0):
    return {"id": f"chatcmpl-fake-{n}", "object": "chat.completion", "created": 1700000000,
            "model": model, "system_fingerprint": None,
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": content,
                                     "refusal": refusal}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                      "total_tokens": prompt + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached},
                      "completion_tokens_details": {"reasoning_tokens": reasoning}}}


def normal_answer(n, model, req):
    content = echo_content(req)
    if model == "badjson" and json_mode(req):
        content = "{not json"
    finish, tokens, limit = "stop", words(content), token_limit(req)
    if limit and tokens > limit:
        content, tokens, finish = " ".join(content.split()[:limit]), limit, "length"
    prompt = prompt_tokens(req)
    if model == "usage-details":
        return completion(n, model, content, prompt, tokens + 7, finish,
                          cached=prompt // 2, reasoning=7)
    return completion(n, model, content, prompt, tokens, finish)


def huge_answer(n, model, req, size):
    marker = "@@HUGE@@"
    body = completion(n, model, marker, prompt_tokens(req), 1 if size else 0)
    before, after = to_bytes(body).split(b'"' + marker.encode() + b'"')
    return Response(200, b"".join((before, b'"', b"x" * size, b'"', after)))


def invalid(message, param=None, code=None):
    return error_response(400, message, "invalid_request_error", param, code)


def validate_chat(body):
    """Return (request dict or None, error Response or None)."""
    try:
        req = json.loads(body)
    except (ValueError, RecursionError):
        return None, invalid(BAD_JSON)
    if not isinstance(req, dict):
        return None, invalid("The request body must be a JSON object.")
    if not isinstance(req.get("model"), str) or not req["model"]:
        return req, invalid("You must provide a model parameter.", "model")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        return req, invalid("'messages' must be a non-empty array.", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return req, invalid(f"Missing required parameter: 'messages[{i}].role'.",
                                f"messages[{i}].role", "missing_required_parameter")
    return req, None


def bearer_token(headers):
    value = headers.get("authorization", "")
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or "none"


# ---------------------------------------------------------------- provider state
class Provider:
    """Configuration, counters and request handling shared by all connections."""

    def __init__(self, latency_ms=0.0, api_key=None):
        self.latency = latency_ms / 1000
        self.api_key = api_key
        self.answers = 0
        self.in_flight = 0
        self.connections = set()
        self.reset()

    def reset(self):
        self.requests_total = self.chat_requests = self.aborted = 0
        self.connections_accepted = 0
        self.max_in_flight = self.in_flight
        self.by_model, self.flaky, self.last_request = {}, {}, None

    def stats(self):
        return {"requests_total": self.requests_total, "chat_requests": self.chat_requests,
                "by_model": self.by_model, "aborted": self.aborted,
                "connections": self.connections_accepted,
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "last_request": self.last_request}

    def handle(self, method, path, headers, body):
        """Return (delay in seconds, Response); delayed chat answers are in_flight."""
        if method == "POST" and path == "/v1/chat/completions":
            return self.chat(headers, body)
        self.requests_total += 1
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in MODEL_NAMES]
            return 0, json_response(200, {"object": "list", "data": data})
        if method == "GET" and path == "/_stats":
            return 0, json_response(200, self.stats())
        if method == "POST" and path == "/_reset":
            self.reset()
            return 0, json_response(200, {"reset": True})
        return 0, error_response(404, f"Invalid URL ({method} {path})", "invalid_request_error")

    def chat(self, headers, body):
        req, error = validate_chat(body)
        self.answers += 1
        n = self.answers
        if error is None and req["model"] in ("stats", "stats-reset"):
            response = self.stats_answer(n, req)
            delay = 0
        else:
            self.count_chat(req, headers)
            response, delay = error or self.answer(n, req, headers), self.latency
            if error is None and (m := SLOW.fullmatch(req["model"])):
                delay += int(m.group(1)) / 1000
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if delay <= 0:
                self.in_flight -= 1
        if not any(name == "x-request-id" for name, _ in response.headers):
            response.headers.append(("x-request-id", f"req_fake_{n}"))
        return delay, response

    def count_chat(self, req, headers):
        self.requests_total += 1
        self.chat_requests += 1
        if isinstance(req, dict):
            self.last_request = dict(req, authorization="present" if "authorization"
                                     in headers else "absent")
            model = req.get("model")
            if isinstance(model, str) and model:
                self.by_model[model] = self.by_model.get(model, 0) + 1

    def stats_answer(self, n, req):
        content = dumps(self.stats())
        if req["model"] == "stats-reset":
            self.reset()
        return json_response(200, completion(n, req["model"], content, prompt_tokens(req),
                                             words(content)))

    def answer(self, n, req, headers):
        model = req["model"]
        if m := FAIL.fullmatch(model):
            status, secs = int(m.group(1)), m.group(2)
            if status in FAILS and (secs is None or status == 429):
                return fail_response(status, model, bearer_token(headers),
                                     int(secs) if secs else 1)
        if m := FLAKY.fullmatch(model):
            seen = self.flaky.get(model, 0)
            self.flaky[model] = seen + 1
            if seen < int(m.group(1)):
                return fail_response(503, model, retry_secs=0, retry_ms=10)
        if m := HUGE.fullmatch(model):
            return huge_answer(n, model, req, int(m.group(1)))
        if model == "auth" and self.api_key is not None \
                and headers.get("authorization") != "Bearer " + self.api_key:
            _, etype, param, code = FAILS[401]
            return error_response(401, "Incorrect API key provided.", etype, param, code)
        if model == "nonjson":
            return Response(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        if m := LEAK.fullmatch(model):
            body = "x" * int(m.group(1)) + bearer_token(headers) + " end"
            return Response(500, body.encode(), "text/plain")
        answer = normal_answer(n, model, req)
        if model in ("leak-ids", "leak-long-id"):
            token = bearer_token(headers)
            request_id = "req-" + token if model == "leak-ids" else "r" * 110 + token
            if model == "leak-ids":
                answer.update(id="chatcmpl-" + token, model="m-" + token)
                answer["choices"][0]["message"]["content"] = "the key is " + token
            return json_response(200, answer, [("x-request-id", request_id)])
        if model == "nul":
            answer["choices"][0]["message"]["content"] = "bad\u0000tail"
        if model == "truncated":
            full = to_bytes(answer)
            return Response(200, full[:len(full) // 2])
        if model == "nochoices":
            answer = {k: answer[k] for k in ("id", "object", "model", "usage")}
        elif model == "nullcontent":
            answer["choices"][0].update(finish_reason="content_filter", message={
                "role": "assistant", "content": None, "refusal": "I can't help with that."})
        return json_response(200, answer)


# ---------------------------------------------------------------- HTTP/1.1
class HttpProtocol(asyncio.Protocol):
    """One connection: parses pipelined requests in order, one answer at a time."""

    def __init__(self, provider):
        self.provider = provider
        self.transport = None
        self.buf = bytearray()
        self.head = None      # (method, path, headers, length, keep_alive) being read
        self.pending = None   # TimerHandle of a delayed answer
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        self.provider.connections.add(self)
        self.provider.connections_accepted += 1

    def connection_lost(self, exc):
        self.closing = True
        self.provider.connections.discard(self)
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
            self.provider.in_flight -= 1
            self.provider.aborted += 1

    def data_received(self, data):
        self.buf += data
        if self.pending is None:
            self.process()

    def process(self):
        while not self.closing and self.pending is None:
            if self.head is None and not self.read_head():
                return
            method, path, headers, length, keep_alive = self.head
            if len(self.buf) < length:
                return
            body = bytes(self.buf[:length])
            del self.buf[:length]
            self.head = None
            delay, response = self.provider.handle(method, path, headers, body)
            if delay > 0:
                loop = asyncio.get_running_loop()
                self.pending = loop.call_later(delay, self.delayed, response, keep_alive)
            else:
                self.send(response, keep_alive)

    def read_head(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.reject(431, "Request header fields too large.")
            return False
        try:
            self.head = parse_head(bytes(self.buf[:end]))
        except ValueError as exc:
            self.reject(400, f"Malformed HTTP request: {exc}")
            return False
        del self.buf[:end + 4]
        if self.head[2].get("expect", "").lower() == "100-continue":
            self.transport.write(CONTINUE)
        return True

    def delayed(self, response, keep_alive):
        self.pending = None
        self.provider.in_flight -= 1
        self.send(response, keep_alive)
        self.process()

    def send(self, response, keep_alive):
        head = response.head(close=not keep_alive)
        if len(response.body) < 65536:
            self.transport.write(head + response.body)
        else:
            self.transport.write(head)
            self.transport.write(response.body)
        if not keep_alive:
            self.closing = True
            self.transport.close()

    def reject(self, status, message):
        self.send(error_response(status, message, "invalid_request_error"), keep_alive=False)


def parse_head(raw):
    """Parse request line and headers; header names are lower-cased."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError("bad request line")
    method, target, version = parts
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError("bad header line")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise ValueError("only Content-Length bodies are supported")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise ValueError("bad Content-Length")
    connection = headers.get("connection", "").lower()
    keep_alive = ("close" not in connection if version == "HTTP/1.1"
                  else "keep-alive" in connection)
    return method, target.split("?", 1)[0], headers, int(length), keep_alive


# ---------------------------------------------------------------- server
async def serve(provider, host, port, on_ready):
    """Listen until the stop function handed to on_ready(port, stop) is called."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    server = await loop.create_server(lambda: HttpProtocol(provider), host, port, backlog=4096)
    on_ready(server.sockets[0].getsockname()[1], lambda: loop.call_soon_threadsafe(stopped.set))
    try:
        await stopped.wait()
    finally:
        server.close()
        for conn in list(provider.connections):
            conn.transport.abort()


def run_cli(args):
    provider = Provider(args.latency_ms, args.api_key)

    def ready(port, stop):
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        if args.pidfile:
            with open(args.pidfile, "w") as f:
                f.write(f"{os.getpid()}\n")
        print(f"fake_provider listening on {args.host}:{port}", flush=True)

    try:
        # Debian's python3-uvloop, where present, runs the same protocol about
        # twice as fast: benchmarks then measure llmext, not the fake
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        asyncio.run(serve(provider, args.host, args.port, ready))
    except OSError as exc:
        print(f"fake_provider: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.pidfile and os.path.exists(args.pidfile):
            os.unlink(args.pidfile)
    return 0


# ---------------------------------------------------------------- self-test
class Client:
    """Keep-alive http.client wrapper plus a raw-socket helper for the self-test."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

    def json(self, method, path):
        return json.loads(self.request(method, path)[2])

    def chat(self, model, text="hello world", messages=None, auth=None, **fields):
        body = dict(fields, model=model, messages=messages or [{"role": "user", "content": text}])
        headers = {"Authorization": "Bearer " + auth} if auth else {}
        return self.request("POST", "/v1/chat/completions", json.dumps(body), headers)

    def summary(self, model, **kw):
        """(status, content, finish_reason, prompt_tokens, completion_tokens)"""
        status, _, data = self.chat(model, **kw)
        answer = json.loads(data)
        choice, usage = answer["choices"][0], answer["usage"]
        return (status, choice["message"]["content"], choice["finish_reason"],
                usage["prompt_tokens"], usage["completion_tokens"])

    def content(self, model, **kw):
        return self.summary(model, **kw)[1]

    def raw(self, model, extra=""):
        """A connected socket and the request's head and body bytes."""
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        head = f"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock, head.encode(), body.encode()


def read_all(sock):
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def error_of(result):
    """(status, error object) after checking the exact error shape."""
    status, _, data = result
    body = json.loads(data)
    assert list(body) == ["error"]
    assert sorted(body["error"]) == ["code", "message", "param", "type"]
    return status, body["error"]


def check_validation(c):
    post = lambda body: error_of(c.request("POST", "/v1/chat/completions", body))  # noqa: E731
    results = [post(b) for b in ('{nope', '{"messages":[{"role":"user"}]}', '{"model":"m"}',
                                 '{"model":"m","messages":[]}', '{"model":"m","messages":"x"}',
                                 '{"model":"m","messages":[{"content":"x"}]}')]
    return {status for status, _ in results} == {400} \
        and results[0][1]["message"].startswith("We could not parse the JSON body") \
        and [e["param"] for _, e in results[1:5]] == ["model", "messages", "messages", "messages"]


def check_flaky(c):
    first = [c.chat("flaky-2-a") for _ in range(3)]
    other = c.chat("flaky-2-b")[0]
    c.request("POST", "/_reset")
    return [r[0] for r in first] + [other, c.chat("flaky-2-a")[0]] == [503, 503, 200, 503, 503] \
        and (first[0][1]["retry-after"], first[0][1]["retry-after-ms"]) == ("0", "10")


def check_stats_models(c):
    c.request("POST", "/_reset")
    c.chat("echo", auth="sk-secret-123")
    c.chat("echo")
    text, reset_text = c.content("stats"), c.content("stats-reset")
    s = json.loads(text)
    return "sk-secret" not in text and json.loads(reset_text) == s \
        and (s["requests_total"], s["chat_requests"], s["by_model"],
             s["last_request"]["authorization"], s["last_request"]["model"]) \
        == (2, 2, {"echo": 2}, "absent", "echo") and c.json("GET", "/_stats")["chat_requests"] == 0


def check_expect_continue(c):
    sock, head, body = c.raw("echo", "Expect: 100-continue\r\nConnection: close\r\n")
    sock.sendall(head)
    interim = sock.recv(len(CONTINUE))
    sock.sendall(body)
    return interim == CONTINUE and read_all(sock).startswith(b"HTTP/1.1 200 OK\r\n")


def check_pipelining(c):
    sock, head1, body1 = c.raw("slow-50")
    _, head2, body2 = c.raw("echo", "Connection: close\r\n")
    sock.sendall(head1 + body1 + head2 + body2)
    data = read_all(sock)  # returns only once the server has closed the connection
    return data.count(b"HTTP/1.1 200 OK") == 2 and data.index(b'"slow-50"') < data.index(b'"echo"')


def check_abort_and_concurrency(c):
    c.request("POST", "/_reset")
    models = ("slow-5000", "slow-400", "slow-400")
    socks = [c.raw(model, "Connection: close\r\n") for model in models]
    start = time.monotonic()
    for sock, head, body in socks:
        sock.sendall(head + body)
    time.sleep(0.1)
    during = c.json("GET", "/_stats")["in_flight"]
    socks[0][0].close()
    ok = all(read_all(sock).startswith(b"HTTP/1.1 200") for sock, _, _ in socks[1:])
    s, elapsed = c.json("GET", "/_stats"), time.monotonic() - start
    return ok and 0.4 <= elapsed < 3 and (during, s["max_in_flight"], s["in_flight"],
                                           s["aborted"]) == (3, 3, 0, 1)


SCHEMA = {"type": "object", "required": ["name", "age", "tags", "ok", "kind"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                         "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
                         "ok": {"type": "boolean"}, "kind": {"$ref": "#/$defs/k"},
                         "unused": {"type": "string"}},
          "$defs": {"k": {"properties": {"v": {"type": "null"}}}}}
PARTS = [{"role": "system", "content": "be brief"}, {"role": "assistant", "content": None},
         {"role": "user", "content": [{"type": "text", "text": "a b"}, {"type": "image_url"},
                                      {"type": "text", "text": "c"}]}]
JSON_OBJECT = {"type": "json_object"}


def self_checks(c):
    """(name, check) pairs, run in order against a server started with --api-key sk-good."""
    usage = lambda model: json.loads(c.chat(model)[2])["usage"]  # noqa: E731
    error = lambda model, **kw: error_of(c.chat(model, **kw))  # noqa: E731
    header = lambda model, name: c.chat(model)[1].get(name)  # noqa: E731
    return [
        ("GET /v1/models", lambda: c.json("GET", "/v1/models")["data"][0]["id"] == "echo"),
        ("POST /_reset", lambda: c.json("POST", "/_reset") == {"reset": True}),
        ("unknown path is 404", lambda: error_of(c.request("GET", "/nope"))[0] == 404),
        ("requests_total counts /_stats", lambda: c.json("POST", "/_reset") and
         c.json("GET", "/_stats")["requests_total"] == 1),
        ("echo answer", lambda: c.summary("echo") == (200, "echo: hello world", "stop", 6, 3)),
        ("x-request-id matches id", lambda: (lambda r: json.loads(r[2])["id"][14:] ==
                                             r[1]["x-request-id"][9:])(c.chat("echo"))),
        ("content parts", lambda: c.summary("echo", messages=PARTS)[1:4] ==
         ("echo: a b c", "stop", 17)),
        ("max_tokens", lambda: c.summary("echo", text="one two three", max_tokens=2) ==
         (200, "echo: one", "length", 7, 2)),
        ("json_object", lambda: c.summary("echo", response_format=JSON_OBJECT) ==
         (200, '{"echo":"hello world"}', "stop", 6, 2)),
        ("json_schema", lambda: c.content("echo", response_format={
            "type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}}) ==
         '{"name":"hello world","age":1,"tags":["a"],"ok":true,"kind":{"v":null}}'),
        ("usage-details", lambda: usage("usage-details") == {
            "prompt_tokens": 6, "completion_tokens": 10, "total_tokens": 16,
            "prompt_tokens_details": {"cached_tokens": 3},
            "completion_tokens_details": {"reasoning_tokens": 7}}),
        ("request validation", lambda: check_validation(c)),
        ("fail-<status>", lambda: all(error(f"fail-{s}")[0] == s for s in FAILS)),
        ("fail-400 param", lambda: error("fail-400")[1]["param"] == "temperature"),
        ("fail-401 echoes key", lambda: "provided: sk-x." in error("fail-401", auth="sk-x")[1]
         ["message"] and "provided: none." in error("fail-401")[1]["message"]),
        ("fail-429 headers", lambda: [header("fail-429", h) for h in (
            "retry-after", "retry-after-ms", "x-ratelimit-remaining-requests")]
         == ["1", "1000", "0"]),
        ("fail-429-<secs>", lambda: header("fail-429-7", "retry-after-ms") == "7000"),
        ("fail-503", lambda: error("fail-503")[1]["code"] == "server_is_overloaded"
         and header("fail-503", "retry-after") == "1"),
        ("flaky-<n>-<x>", lambda: check_flaky(c)),
        ("truncated", lambda: c.chat("truncated")[2].startswith(b'{"id":"chatcmpl-fake-')
         and not c.chat("truncated")[2].endswith(b"}")),
        ("nonjson", lambda: header("nonjson", "content-type") == "text/html"),
        ("nochoices", lambda: sorted(json.loads(c.chat("nochoices")[2])) ==
         ["id", "model", "object", "usage"]),
        ("nullcontent", lambda: c.summary("nullcontent") == (200, None, "content_filter", 6, 3)),
        ("huge-1000000", lambda: c.content("huge-1000000") == "x" * 1000000),
        ("auth", lambda: (error("auth")[0], error("auth", auth="bad")[1]["message"],
                          c.chat("auth", auth="sk-good")[0])
         == (401, "Incorrect API key provided.", 200)),
        ("badjson", lambda: c.content("badjson", response_format=JSON_OBJECT) == "{not json"
         and c.content("badjson") == "echo: hello world"),
        ("leak-<offset>", lambda: c.chat("leak-3", auth="sk-k")[:3:2] == (500, b"xxxsk-k end")
         and c.chat("leak-0")[2] == b"none end"),
        ("leak-ids", lambda: (lambda r: (r[1]["x-request-id"], json.loads(r[2])["model"],
                                         json.loads(r[2])["id"], json.loads(r[2])["choices"][0]
                                         ["message"]["content"]))(c.chat("leak-ids", auth="sk-k"))
         == ("req-sk-k", "m-sk-k", "chatcmpl-sk-k", "the key is sk-k")),
        ("leak-long-id", lambda: c.chat("leak-long-id", auth="sk-k")[1]["x-request-id"]
         == "r" * 110 + "sk-k"),
        ("nul", lambda: c.content("nul") == "bad\x00tail" and b"\\u0000" in c.chat("nul")[2]),
        ("stats, stats-reset", lambda: check_stats_models(c)),
        ("Expect: 100-continue", lambda: check_expect_continue(c)),
        ("pipelining, Connection: close", lambda: check_pipelining(c)),
        ("concurrent slow requests, aborted", lambda: check_abort_and_concurrency(c)),
    ]


def self_test():
    provider = Provider(latency_ms=0, api_key="sk-good")
    started = queue.Queue()
    thread = threading.Thread(target=asyncio.run, daemon=True, args=(
        serve(provider, "127.0.0.1", 0, lambda port, stop: started.put((port, stop))),))
    thread.start()
    port, stop = started.get(timeout=10)
    passed = failed = 0
    for name, check in self_checks(Client(port)):
        try:
            ok, detail = bool(check()), ""
        except Exception as exc:  # a crashing check is a failed check
            ok, detail = False, f" ({exc!r})"
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{detail}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    stop()
    thread.join(5)
    return 0 if failed == 0 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible LLM server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--api-key")
    parser.add_argument("--pidfile")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    return self_test() if args.self_test else run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
