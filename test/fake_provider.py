#!/usr/bin/env python3
"""Fake OpenAI-compatible LLM server for llmext's offline tests and benchmarks.

Python 3.11 standard library only (uvloop is used when it can be imported).  One asyncio.Protocol per connection with
hand-rolled HTTP/1.1 (Content-Length bodies, keep-alive, pipelining,
"Expect: 100-continue"), so one core serves thousands of requests per second.

    python3 test/fake_provider.py --port N [--host 127.0.0.1] [--latency-ms 0]
                                  [--api-key KEY] [--pidfile FILE]
                                  [--finetune-step-ms 0] [--batch-step-ms 0]
    python3 test/fake_provider.py --self-test

--self-test runs the checks in fake_selftest.py (then fake_anthropic.py's and
fake_batches.py's) against a fake of its own.

--port 0 picks a free port.  When ready it prints exactly
"fake_provider listening on HOST:PORT" on stdout (after writing --pidfile).
SIGTERM / SIGINT stop it with exit code 0.

Endpoints
    POST /v1/chat/completions  behaviour chosen by the body's "model" (below)
    POST /v1/messages          the Anthropic Messages API (see "Anthropic")
    POST /v1/embeddings        see "Embeddings"
    GET  /v1/models            {"object":"list","data":[{"id":"echo",...},...]},
                               then every succeeded job's fine_tuned_model
    GET  /_stats               counters as JSON (see "Counters")
    POST /_reset               zero the counters -> {"reset":true}
    /v1/files..., /v1/fine_tuning/jobs...   see "Files, fine-tuning..."
    /v1/batches..., /_batch_config          see "Batches"
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
    learn<any>, ft:<...>  the learning rule (see "Files, fine-tuning...")
    judge            a deterministic judge: content is the JSON object
                     {"score": S, "reason": "word overlap A/B"} (whatever the
                     response_format), from the last user message's text: E is
                     the text after the last "Expected:" up to the next
                     "Output:", O the text after that "Output:"; S = 1 when
                     both have the same lower-cased words (\w+ runs) in the
                     same order, else the Jaccard A/B of their word sets
                     rounded to 4 places (0 when either marker is missing:
                     reason "no Expected:/Output: in the message")
Body validation (400, type invalid_request_error): body not JSON; "model"
missing or empty (param "model"); "messages" missing, not a list or empty
(param "messages"); a message that is not an object with a string "role".

Embeddings (POST /v1/embeddings, OpenAI wire format)
    body {"model", "input": a string or a non-empty list of strings,
    "dimensions"?: int 1..4096, "encoding_format"?: "float"} ->
    {"object":"list","data":[{"object":"embedding","index":i,"embedding":[...]}],
     "model","usage":{"prompt_tokens","total_tokens"}}, header x-request-id.
    vector(text): the lower-cased words of text (\w+ runs; a text without any
    counts as the one word ""), each word's vector being `dimensions` (default
    32) Gaussian numbers drawn by random.Random(sha256(word)), summed and
    L2-normalised, each number rounded to 6 places.  So the same text always
    gets the same vector, and texts that share words are nearer (cosine) than
    texts that do not.  prompt_tokens = total_tokens = sum of max(1, words).
    400 (invalid_request_error): body not JSON, "model" missing (param
    "model"), "input" missing, empty, not a string or list of strings, or
    holding an empty string (param "input"), a bad "dimensions" (param
    "dimensions"), an encoding_format other than "float".
    The chat fault models work here too, with the same answers: fail-<status>,
    fail-429-<secs>, slow-<ms>, flaky-<n>-<any>, auth, nonjson, truncated,
    leak-<offset>; and two of its own:
    emb-short       data lacks the last input's item
    emb-shuffled    data in reverse order (each item keeps its index)
    Counters: requests_total, by_model, bytes_received, in_flight as for chat;
    embedding_requests and embedding_inputs count the valid and invalid
    requests and the inputs they carried (chat_requests does not count them).

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
    bytes_received  request body bytes, every request counted in requests_total
    files_uploaded, upload_requests, upload_bytes, jobs_created,
    job_create_requests, cancel_requests, files, jobs
                    see "Files, fine-tuning..." (jobs_created never counts a
                    refused create: a test proves a paid job is created once)
    batches_created, batch_lines, batch_requests, batches   see "Batches"
Requests for the "stats" models are left out of every counter.  A reset keeps
in_flight (a gauge) and sets max_in_flight to it.  A reset never deletes files,
jobs or tuned models; they live until the fake exits (in memory only).

Files, fine-tuning and the learning rule (rules and implementation in
fake_tuning.py)
    /v1/files (multipart upload of fine-tune, batch, ... files; list,
    retrieve, content, delete; a fine-tune file is checked line by line) and
    /v1/fine_tuning/jobs (create, list with a metadata filter, retrieve,
    cancel, events, checkpoints), in OpenAI's wire format.  A job steps
    validating_files -> queued -> running -> succeeded, one step per GET of
    it (or one every --finetune-step-ms ms); its fine_tuned_model, and each
    checkpoint's model as soon as it exists, then answers by the learning
    rule.  Faults by a word in the upload's filename or X-Fake-Fault header
    (reject, fail-<status>, flaky-<n>) or in the job's model or suffix
    (create-<status>, lost, invalid, never, fail).
    The learning rule (chat models "learn<any>", e.g. "learner", and
    "ft:<...>"): the answer of the example nearest the last user message (an
    exact input, else the most shared words), from the request's few-shot
    pairs, after the job's training lines for ft:<...> (an ft: id of no
    succeeded job nor checkpoint -> 404 model_not_found); no shared word ->
    the echo.  At a temperature > 0 a near tie may flip to the runner-up
    (repeatable with a "seed"), so a model trained on more examples like the
    questions is more consistent than its few-shot base.

Batches (OpenAI Batch API; rules and implementation in fake_batches.py)
    POST /v1/batches {input_file_id, endpoint, completion_window "24h",
    metadata?} from a file uploaded with purpose "batch", for endpoint
    /v1/chat/completions or /v1/embeddings; GET /v1/batches/<id>, POST
    /v1/batches/<id>/cancel, GET /v1/batches ?after=&limit=.  A refused
    create is a 400; an input file that breaks the line rules makes a batch
    that fails with errors.data (code, line), as OpenAI does.
    Status is time-based, from s = --batch-step-ms (or POST /_batch_config
    {"step_ms": N}; default 0): validating < s <= in_progress < 2s <=
    finalizing < 3s <= completed; with s = 0, completed at the first look.
    Each request is answered, at a look (never at create), by the same code
    as a direct POST to its endpoint: every model rule above applies line
    by line, without delays.  Status 200 answers go to the output file,
    others to the error file (purpose "batch_output"), each in REVERSE
    input order: a client must join on custom_id.
    Batch faults by the first request's model: batch-fail, batch-expire-<k>
    (expired, only the first <k> answered), batch-stuck (in_progress until
    cancelled).  Cancel: cancelling at once, cancelled one step later with
    the answers made so far.
    Counters: batches_created, batch_lines (requests answered in batches,
    not counted in chat_requests), batch_requests (to /v1/batches...),
    batches (gauge); /_reset zeroes all but the gauge.

Anthropic (POST /v1/messages; implemented in fake_anthropic.py)
    Checked in this order, every error in Anthropic's shape {"type":"error",
    "error":{"type","message"},"request_id":"req_fake_<n>"}:
      no anthropic-version header       400 invalid_request_error
      no x-api-key header               401 authentication_error
      with --api-key K, x-api-key <> K  401 "invalid x-api-key"
      body: not a JSON object, "model" missing or empty, "max_tokens" not a
        whole number >= 1 (Anthropic requires it), "messages" empty or not a
        list, a role other than user/assistant (a "system" message must be
        the top-level "system"), "system" neither string nor list, or an
        OpenAI-only key (stop, max_completion_tokens, response_format)
                                        400 invalid_request_error
    Every response (errors included) carries header request-id: req_fake_<n>
    (the chat counter), never x-request-id.  Requests count in chat_requests,
    by_model and last_request (with "x_api_key": "present"|"absent" and
    "anthropic_version": the header's value or null) like chat ones, and
    --latency-ms and slow-<ms> delay them alike.
    Answer: {"id":"msg_fake_<n>","type":"message","role":"assistant","model",
    "content":[{"type":"text","text":"echo: <last user text>"}],
    "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens",
    "output_tokens","cache_read_input_tokens":0,"cache_creation_input_tokens":0}}
    with input_tokens = sum(4 + words(text(m))) + words(text(system)),
    output_tokens = words(text).
      stop_sequences   the text is cut before the first listed sequence found
                       in it: stop_reason "stop_sequence", stop_sequence it
      max_tokens       then the text is cut to that many words: "max_tokens"
      tool_choice {"type":"tool","name":N} naming one of "tools": content is
                       [{"type":"tool_use","id":"toolu_fake_<n>","name":N,
                       "input": a minimal instance of its input_schema (as for
                       json_schema above)}], stop_reason "tool_use"
    Models:
      cache-<r>-<w>    cache_read_input_tokens r, cache_creation_input_tokens w
                       (input_tokens, which excludes them, as usual)
      fail-<status>    that status, for 400 401 403 404 408 409 413 422 429 500
                       502 503 504 529, with Anthropic's error type
                       (overloaded_error for 529); 401 echoes the caller's
                       x-api-key ON PURPOSE; 429, 503, 529 send retry-after: 1
      flaky-<n>-<any>  the first <n> requests get 529 (retry-after: 0), then
                       an answer (the count shared with chat's flaky-<n>)
      slow-<ms>, nonjson, truncated   as for chat
"""
import argparse
import asyncio
import hashlib
import json
import math
import os
import random
import re
import signal
import sys
from http import HTTPStatus

import fake_anthropic
import fake_batches
import fake_tuning

JSON_TYPE = "application/json"
MAX_HEAD = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MODEL_NAMES = ["echo", "usage-details", "stats", "slow-1000", "fail-429",
               "flaky-2-demo", "nullcontent", "learner"]
SLOW, HUGE = re.compile(r"slow-(\d+)"), re.compile(r"huge-(\d+)")
LEAK = re.compile(r"leak-(\d+)")
EMBED_DIMENSIONS = 32  # when the request names none
WORD = re.compile(r"\w+")
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


def judge_content(req):
    """The "judge" model's answer (see the header)."""
    text = last_user_text(req["messages"])
    e, o = text.rfind("Expected:"), -1
    if e >= 0:
        o = text.find("Output:", e)
    if e < 0 or o < 0:
        return json.dumps({"score": 0, "reason": "no Expected:/Output: in the message"})
    expected, output = text[e + len("Expected:"):o], text[o + len("Output:"):]
    a, b = fake_tuning.word_set(expected), fake_tuning.word_set(output)
    shared, union = fake_tuning.overlap(a, b)
    if WORD.findall(expected.lower()) == WORD.findall(output.lower()):
        score = 1
    else:
        score = round(shared / union, 4)
    return json.dumps({"score": score, "reason": f"word overlap {shared}/{union}"})


def normal_answer(n, model, req, learned=None):
    content = echo_content(req) if learned is None else learned
    if model == "judge":
        content = judge_content(req)
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


# ---------------------------------------------------------------- embeddings
def embed_words(text):
    return [w.lower() for w in WORD.findall(text)] or [""]


def embed_vector(text, dimensions):
    """The header's vector(text): hashed word vectors, summed, L2-normalised."""
    total = [0.0] * dimensions
    for word in embed_words(text):
        rng = random.Random(hashlib.sha256(word.encode()).digest())
        for j in range(dimensions):
            total[j] += rng.gauss(0.0, 1.0)
    norm = math.sqrt(sum(x * x for x in total)) or 1.0
    return [round(x / norm, 6) for x in total]


def validate_embeddings(body):
    """Return (request dict or None, inputs list, error Response or None)."""
    try:
        req = json.loads(body)
    except (ValueError, RecursionError):
        return None, [], invalid(BAD_JSON)
    if not isinstance(req, dict):
        return None, [], invalid("The request body must be a JSON object.")
    if not isinstance(req.get("model"), str) or not req["model"]:
        return req, [], invalid("You must provide a model parameter.", "model")
    inputs = req.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs \
            or not all(isinstance(x, str) and x for x in inputs):
        return req, inputs if isinstance(inputs, list) else [], \
            invalid("'input' must be a non-empty string or array of non-empty strings.", "input")
    dimensions = req.get("dimensions", EMBED_DIMENSIONS)
    if type(dimensions) is not int or not 1 <= dimensions <= 4096:
        return req, inputs, invalid("'dimensions' must be an integer from 1 to 4096.",
                                    "dimensions")
    if req.get("encoding_format", "float") != "float":
        return req, inputs, invalid("Only encoding_format \"float\" is supported here.",
                                    "encoding_format")
    return req, inputs, None


def embeddings_answer(model, inputs, dimensions):
    data = [{"object": "embedding", "index": i, "embedding": embed_vector(t, dimensions)}
            for i, t in enumerate(inputs)]
    if model == "emb-short":
        data = data[:-1]
    elif model == "emb-shuffled":
        data.reverse()
    tokens = sum(len(embed_words(t)) for t in inputs)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def bearer_token(headers):
    value = headers.get("authorization", "")
    if value[:7].lower() == "bearer ":
        value = value[7:].strip()
    return value or "none"


# ---------------------------------------------------------------- provider state
class Provider:
    """Configuration, counters and request handling shared by all connections."""

    def __init__(self, latency_ms=0.0, api_key=None, finetune_step_ms=0.0, batch_step_ms=0.0):
        self.latency = latency_ms / 1000
        self.api_key = api_key
        self.tuning = fake_tuning.Tuning(sys.modules[__name__], finetune_step_ms)
        self.batches = fake_batches.Batches(sys.modules[__name__], self, batch_step_ms)
        self.rng = random.Random()
        self.answers = 0
        self.in_flight = 0
        self.connections = set()
        self.reset()

    def reset(self):
        self.requests_total = self.chat_requests = self.aborted = 0
        self.embedding_requests = self.embedding_inputs = 0
        self.connections_accepted = self.bytes_received = 0
        self.max_in_flight = self.in_flight
        self.by_model, self.flaky, self.last_request = {}, {}, None
        if hasattr(self, "tuning"):
            self.tuning.reset()
        if hasattr(self, "batches"):
            self.batches.reset()

    def stats(self):
        return {"requests_total": self.requests_total, "chat_requests": self.chat_requests,
                "by_model": self.by_model, "aborted": self.aborted,
                "embedding_requests": self.embedding_requests,
                "embedding_inputs": self.embedding_inputs,
                "connections": self.connections_accepted,
                "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                "last_request": self.last_request,
                "bytes_received": self.bytes_received} | self.tuning.stats() \
            | self.batches.stats()

    def handle(self, method, path, headers, body, query=""):
        """Return (delay in seconds, Response); delayed chat answers are in_flight."""
        if method == "POST" and path == "/v1/chat/completions":
            return self.chat(headers, body)
        if method == "POST" and path == "/v1/messages":
            return self.messages(headers, body)
        if method == "POST" and path == "/v1/embeddings":
            return self.embeddings(headers, body)
        self.requests_total += 1
        self.bytes_received += len(body)
        try:
            if method == "POST" and path == "/v1/files":
                response = self.tuning.upload(headers, body)
            elif path.startswith("/v1/files"):
                response = self.tuning.file_request(method, path, query)
            elif path.startswith("/v1/fine_tuning/jobs"):
                response = self.tuning.job_request(method, path, query, body)
            elif path.startswith("/v1/batches") or path == "/_batch_config":
                response = self.batches.request(method, path, query, headers, body)
            else:
                response = None
        except ValueError as exc:  # a bad query string
            response = invalid(f"Invalid query: {exc}")
        except Exception as exc:  # a bug of the fake: say so, keep serving
            response = error_response(500, f"fake_provider error: {exc!r}", "server_error")
        if response is not None:
            return 0, response
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                    for m in MODEL_NAMES]
            data += [{"id": m, "object": "model", "created": job.created_at,
                      "owned_by": "llmext-fake"} for m, job in self.tuning.models.items()
                     if m == job.fine_tuned_model]
            return 0, json_response(200, {"object": "list", "data": data})
        if method == "GET" and path == "/_stats":
            return 0, json_response(200, self.stats())
        if method == "POST" and path == "/_reset":
            self.reset()
            return 0, json_response(200, {"reset": True})
        return 0, error_response(404, f"Invalid URL ({method} {path})", "invalid_request_error")

    def chat(self, headers, body):
        req, error = validate_chat(body)
        if error is None and req["model"] in ("stats", "stats-reset"):
            return 0, self.chat_response(req, error, headers)  # never counted nor delayed
        self.count_chat(req, headers, len(body))
        response, delay = self.chat_response(req, error, headers), self.latency
        if error is None and (m := SLOW.fullmatch(req["model"])):
            delay += int(m.group(1)) / 1000
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if delay <= 0:
            self.in_flight -= 1
        return delay, response

    def chat_response(self, req, error, headers):
        """The answer to a validated chat body, uncounted and undelayed (batch lines use it)."""
        self.answers += 1
        n = self.answers
        if error is None and req["model"] in ("stats", "stats-reset"):
            response = self.stats_answer(n, req)
        else:
            response = error or self.answer(n, req, headers)
        if not any(name == "x-request-id" for name, _ in response.headers):
            response.headers.append(("x-request-id", f"req_fake_{n}"))
        return response

    def messages(self, headers, body):
        self.answers += 1
        n = self.answers
        req, response = fake_anthropic.messages(sys.modules[__name__], self, headers, body, n)
        self.count_chat(req, headers, len(body))
        if isinstance(req, dict):
            self.last_request.update(
                x_api_key="present" if "x-api-key" in headers else "absent",
                anthropic_version=headers.get("anthropic-version"))
        delay = self.latency
        if req is not None and response.status == 200 and (m := SLOW.fullmatch(req["model"])):
            delay += int(m.group(1)) / 1000
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if delay <= 0:
            self.in_flight -= 1
        response.headers.append(("request-id", f"req_fake_{n}"))
        return delay, response

    def embeddings(self, headers, body):
        req, inputs, error = validate_embeddings(body)
        self.count_chat(req, headers, len(body))
        self.chat_requests -= 1
        self.embedding_requests += 1
        self.embedding_inputs += len(inputs)
        response, delay = self.embeddings_response(req, inputs, error, headers), self.latency
        if error is None and (m := SLOW.fullmatch(req["model"])):
            delay += int(m.group(1)) / 1000
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if delay <= 0:
            self.in_flight -= 1
        return delay, response

    def embeddings_response(self, req, inputs, error, headers):
        """The answer to a validated embeddings body, uncounted and undelayed (batch lines too)."""
        self.answers += 1
        n = self.answers
        response = error
        if response is None:
            model = req["model"]
            # the chat path's faults, answered alike (never its content models)
            if FAIL.fullmatch(model) or FLAKY.fullmatch(model) or LEAK.fullmatch(model) \
                    or model in ("auth", "nonjson"):
                response = self.answer(n, req | {"messages": []}, headers)
                if response.status == 200:
                    response = None
            if response is None:
                answer = embeddings_answer(model, inputs,
                                           req.get("dimensions", EMBED_DIMENSIONS))
                response = json_response(200, answer)
                if model == "truncated":
                    response = Response(200, response.body[:len(response.body) // 2])
        response.headers.append(("x-request-id", f"req_fake_{n}"))
        return response

    def count_chat(self, req, headers, size):
        self.requests_total += 1
        self.chat_requests += 1
        self.bytes_received += size
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
        learned = None
        if model.startswith(("ft:", "learn")):
            examples = fake_tuning.few_shot_pairs(sys.modules[__name__], req["messages"])
            if model.startswith("ft:"):
                job = self.tuning.tuned(model)
                if job is None:
                    return fail_response(404, model)
                examples = job.learned() + examples
            learned = self.learned_answer(model, req, examples)
        answer = normal_answer(n, model, req, learned)
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


    def learned_answer(self, model, req, examples):
        """The learning rule's answer, or None to echo (see fake_tuning.py's header)."""
        text = last_user_text(req["messages"])
        found = fake_tuning.nearest(examples, text)
        if found is None:
            return None
        answer, runner_up = found
        temperature, seed = req.get("temperature"), req.get("seed")
        if runner_up is not None and type(temperature) in (int, float) and temperature > 0:
            rng = random.Random(f"{seed}|{model}|{text}") if type(seed) is int else self.rng
            if rng.random() < 0.5:
                return runner_up
        return answer


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
            method, path, query, headers, length, keep_alive = self.head
            if len(self.buf) < length:
                return
            with memoryview(self.buf) as view:  # one copy, even of a 300 MB upload
                body = bytes(view[:length])
            del self.buf[:length]
            self.head = None
            delay, response = self.provider.handle(method, path, headers, body, query)
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
        if self.head[3].get("expect", "").lower() == "100-continue":
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
    path, _, query = target.partition("?")
    return method, path, query, headers, int(length), keep_alive


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
    provider = Provider(args.latency_ms, args.api_key, args.finetune_step_ms,
                        args.batch_step_ms)

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


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible LLM server.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--api-key")
    parser.add_argument("--finetune-step-ms", type=float, default=0.0)
    parser.add_argument("--batch-step-ms", type=float, default=0.0)
    parser.add_argument("--pidfile")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    if args.self_test:
        import fake_selftest  # only here: it drives this module's server
        return fake_selftest.self_test(sys.modules[__name__])
    return run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
