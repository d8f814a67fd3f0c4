#!/usr/bin/env python3
"""Fake OpenAI-compatible LLM server for llmext's offline tests and benchmarks.

Python 3.11 standard library only (uvloop is used when it can be imported).  One asyncio.Protocol per connection with
hand-rolled HTTP/1.1 (Content-Length bodies, keep-alive, pipelining,
"Expect: 100-continue"), so one core serves thousands of requests per second.

    python3 test/fake_provider.py --port N [--host 127.0.0.1] [--latency-ms 0]
                                  [--api-key KEY] [--pidfile FILE]
                                  [--finetune-step-ms 0] [--batch-step-ms 0]
    python3 test/fake_provider.py --self-test

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
    /v1/files..., /v1/fine_tuning/jobs...   see "Files and fine-tuning"
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
    learn<any>, ft:<...>  the learning rule (see "Learning rule")
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
    files_uploaded  files stored by POST /v1/files
    upload_requests POST /v1/files requests, refused ones included
    upload_bytes    their body bytes
    jobs_created    fine-tuning jobs created (a "lost" create counts: the job
                    exists), never the refused ones: a test proves that a paid
                    job is created once
    job_create_requests  POST /v1/fine_tuning/jobs requests, refused included
    cancel_requests POSTs to .../cancel of an existing job
    files, jobs     files stored and jobs existing now (gauges; never reset)
    batches_created, batch_lines, batch_requests, batches   see "Batches"
Requests for the "stats" models are left out of every counter.  A reset keeps
in_flight (a gauge) and sets max_in_flight to it.  A reset never deletes files,
jobs or tuned models; they live until the fake exits (in memory only).

Files and fine-tuning (OpenAI wire format; ids are unique per fake process)
    POST   /v1/files            multipart/form-data (Content-Length body, any
           size; boundary from Content-Type), fields "purpose" (assistants,
           batch, fine-tune, vision, user_data or evals) and "file" (with a
           filename).  -> 200 file object {"id":"file-fake000001","object":
           "file","bytes","created_at","expires_at":null,"filename","purpose",
           "status":"processed","status_details":null}.
           A fine-tune file is checked: every non-blank line (blank lines are
           skipped; at least one line) must be a JSON object that is either
           chat {"messages":[...]} (non-empty, each an object with a string
           "role", the last one "assistant"), DPO {"input":{"messages":[...]},
           "preferred_completion":[{assistant}],"non_preferred_completion":
           [{assistant}]} or legacy {"prompt":"...","completion":"..."}; else
           400 code "invalid_file_format", param "file", message "Invalid file
           format for fine-tuning: line N: <reason>.".  Bad multipart, no file
           -> 400; purpose missing or unknown -> 400 param "purpose".
           Faults, by the filename or the request header X-Fake-Fault (a
           provider's "headers" option sets it on every request llmext
           sends), checked in this order, after the fields:
             contains "reject"       400 {"message":"upload rejected","type":
                                     "invalid_request_error","param":"file",
                                     "code":"upload_rejected"}
             contains "fail-<status>" that status as for the chat model
                                     fail-<status> (429: Retry-After: 1)
             contains "flaky-<n>"    the first <n> uploads of this exact
                                     filename get 503 (Retry-After: 0), later
                                     ones are stored; /_reset forgets the count
           A refused upload stores nothing.  A batch file is stored as is (its
           lines are checked when a batch is created from it).
    GET    /v1/files            ?purpose=&order=asc|desc(default)&after=<id>
           &limit=(10000) -> {"object":"list","data","first_id","last_id",
           "has_more"}, newest first
    GET    /v1/files/<id>       the file object; unknown -> 404 "No such File
           object: <id>" (param "id")
    GET    /v1/files/<id>/content   the exact bytes, application/octet-stream
    DELETE /v1/files/<id>       {"id","object":"file","deleted":true}; a job
           that used the file keeps what it learned
    POST   /v1/fine_tuning/jobs {model, training_file, validation_file?,
           suffix? (1-64 chars), seed? (0..2147483647), metadata? (<= 16
           string values), method? {"type":"supervised"|"dpo", <type>:
           {"hyperparameters":{...}}}, hyperparameters? {n_epochs,...}}
           -> 200 job object, status "validating_files".  training_file and
           validation_file must name stored fine-tune files (else 400, param
           the field, code "invalid_file").  n_epochs: method's, else the
           top-level hyperparameters', "auto" or absent -> 3 (1..50, else 400).
           Job object: {"object":"fine_tuning.job","id":"ftjob-fake000001",
           created_at, error, fine_tuned_model, finished_at, hyperparameters
           {"batch_size":1,"learning_rate_multiplier":1.8,"n_epochs"}, model,
           "organization_id":"org-llmext-fake", result_files, status,
           trained_tokens, training_file, validation_file, seed (the job's
           number when none was given), "estimated_finish":null,
           "integrations":[], user_provided_suffix, metadata, method}.
    GET    /v1/fine_tuning/jobs ?after=<job id>&limit=(20)&metadata[<k>]=<v>
           (repeatable, all must match; brackets may be %5B %5D) or
           metadata=<JSON object> or metadata=null (jobs without metadata)
           -> {"object":"list","data","has_more"}, newest first.  Listing
           never advances a job: it is how llmext finds, after a crash, the
           job it created (metadata {"llmext_job": "<its id>"}).
    GET    /v1/fine_tuning/jobs/<id>            the job (see Progression)
    POST   /v1/fine_tuning/jobs/<id>/cancel     -> the job, status "cancelled"
           (finished_at set); cancelling a cancelled job returns it unchanged;
           a succeeded or failed one -> 400
    GET    /v1/fine_tuning/jobs/<id>/events     ?after=<event id>&limit=(20)
           -> {"object":"list","data","has_more"}, newest first; an event is
           {"object":"fine_tuning.job.event","id":"ftevent-fake...",created_at,
           level info|error, message, type message|metrics, data}
    GET    /v1/fine_tuning/jobs/<id>/checkpoints  ?after=&limit=(10) ->
           {"object":"list","data","first_id","last_id","has_more"}, newest
           first
    Unknown job id -> 404 "Could not find fine-tuning job: <id>" (code
    "not_found"); a metadata query that is not JSON -> 400.  Every error body
    is the OpenAI shape above.

Progression
    A job steps validating_files -> queued -> running -> succeeded.  By default
    each GET /v1/fine_tuning/jobs/<id> first advances the job one step, then
    returns it: a new job answers "queued", "running", "succeeded" to its first
    three GETs.  With --finetune-step-ms N > 0, GETs advance nothing: a job
    takes one step every N ms after its creation (applied on any read).
    Entering running: event "Fine-tuning job started" and epoch 1's
    checkpoint.  Entering succeeded: the other epochs' checkpoints,
    trained_tokens, fine_tuned_model, finished_at, one result file
    (purpose fine-tune-results, step_metrics.csv), events "New fine-tuned
    model created: <model>" and "The job has successfully completed".
    fine_tuned_model = "ft:<model>:llmext-fake:<suffix or ft>:job<nnnnn>",
        nnnnn the last 5 digits of the job id (ftjob-fake000007 -> job00007).
    trained_tokens = n_epochs x sum over the training file's non-blank lines
        of ceil(bytes of the line without its newline / 4).
    Checkpoint of epoch e (1..n_epochs), n = training examples (lines):
        {"object":"fine_tuning.job.checkpoint","id":"ftckpt-fake...",
         created_at, "fine_tuned_model_checkpoint": fine_tuned_model +
         ":ckpt-step-<step>", "step_number": step, fine_tuning_job_id,
         metrics {step = e*n (batch size 1), train_loss = round(2 / (1 + e *
         ln(1 + n)), 4) (falls with epochs and with examples),
         train_mean_token_accuracy = round(1 - train_loss / 2.5, 4),
         valid_loss, valid_mean_token_accuracy, full_valid_loss,
         full_valid_mean_token_accuracy}}; the valid_* and full_valid_* are
        null without a validation file; with one, valid accuracy a = the
        share of validation examples that the tuned model answers with their
        own ideal answer (the rule below, no flips) rounded to 4 places, and
        valid_loss = round(train_loss + 1 - a, 4); full_* = the same.
        Each checkpoint also adds a "metrics" event (data = metrics plus
        total_steps) and a "Checkpoint created at step <step>" event.
    A checkpoint's model id answers from the job's examples as soon as the
    checkpoint exists; the job's model once it succeeded.
    Job faults, by a word in the job's model or suffix:
        "create-<status>"  that status (as fail-<status>), no job created
        "lost"             the job IS created (and counted) but the answer is
                           500: the caller must find it by its metadata
        "invalid"          validating_files -> failed, error {"code":
                           "invalid_training_file","param":"training_file",...}
        "never"            stays running forever (until cancelled)
        "fail"             running -> failed, error {"code":"training_failed",
                           "param":null,"message":...}; finished_at set,
                           fine_tuned_model null; its checkpoint stays
        ("never" wins over "fail"; the others combine.)

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

Learning rule (chat models "learn<any>", e.g. "learner", and "ft:<...>")
    An example is (input, answer).  A training line's input is its last "user"
    message before the final assistant message (DPO: the last user message of
    input.messages; legacy: prompt), its answer the final assistant content
    (DPO: preferred_completion[0]; legacy: completion).  A request's few-shot
    examples are the (user, assistant) pairs of adjacent messages before its
    last user message (system messages and lone turns are ignored).
        learn<any>   examples = the request's few-shot pairs only
        ft:<model>   examples = the job's training lines, in file order, then
                     the request's few-shot pairs.  An ft: id that names no
                     succeeded job (nor an existing checkpoint) -> 404
                     model_not_found, like fail-404.
    The query is the last user message's text (stripped).
    1. An example whose input (stripped) equals the query exactly -> its
       answer, always (a certain answer, never flipped).
    2. Else similarity = Jaccard of lower-cased word sets (words: \w+ runs),
       |A & B| / |A | B|.  The nearest example is the most similar, the
       earlier one on ties; the runner-up the most similar of the rest.  If
       no example shares a word (best similarity 0, or no examples at all)
       -> the normal echo answer.  Else -> the nearest example's answer.
    3. Flip: when the request's temperature is a number > 0 (absent counts as
       0, unlike OpenAI's default 1, so tests are deterministic unless they
       ask), the runner-up exists with similarity > 0, and best - runner-up
       <= 0.1 (exact fractions), the answer is the runner-up's with
       probability 0.5.  The coin is random.Random("<seed>|<model>|<query>")
       when the request has an integer "seed" (the same seed, model and query
       always give the same answer), else a fresh draw per request.
    The answer replaces the echo content whatever the response_format; then
    max_tokens / max_completion_tokens cut it as usual; usage as for echo
    (prompt_tokens from all messages, completion_tokens = words(answer)).
    Why a model that has seen more examples is measurably more consistent:
    repeats of a question at temperature > 0 disagree only when its nearest
    and runner-up examples are within 0.1 of each other and answer
    differently.  Training inputs are answered with certainty (rule 1), and
    the more examples a model has, the likelier one of them is much closer
    to a new question than the rest, so fewer questions are uncertain: a
    few-shot base model flips on "red blue" between ("red green" -> A) and
    ("blue yellow" -> B), a model also trained on ("red blue purple" -> B)
    answers B every time (the self-test checks this).  Train on examples like
    the evaluation's questions and consistency (the share of repeats that
    agree) rises; train on unrelated ones and it does not.
"""
import argparse
import asyncio
import hashlib
import http.client
import json
import math
import os
import queue
import random
import re
import signal
import socket
import sys
import threading
import time
from fractions import Fraction
from http import HTTPStatus
from urllib.parse import parse_qsl, quote, unquote

import fake_anthropic
import fake_batches

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
    a, b = word_set(expected), word_set(output)
    shared, union = overlap(a, b)
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


# ---------------------------------------------------------------- learning rule
WORD = re.compile(r"\w+")
FLIP_MARGIN = Fraction(1, 10)


def word_set(text):
    return frozenset(WORD.findall(text.lower()))


class Example:
    """One (input, ideal answer) pair a model answers from."""
    __slots__ = ("input", "words", "answer")

    def __init__(self, text, answer):
        self.input, self.answer = text.strip(), answer
        self.words = word_set(self.input)


def overlap(a, b):
    """Jaccard similarity as (shared words, words in either)."""
    union = len(a | b)
    return (len(a & b), union) if union else (0, 1)


def nearest(examples, text):
    """(answer, runner-up answer or None) by the rule in the header; None if no overlap."""
    query = text.strip()
    for ex in examples:
        if ex.input == query:
            return ex.answer, None
    words_ = word_set(query)
    best = second = None  # (similarity as a float, (shared, union), example)
    for ex in examples:
        shared, union = overlap(words_, ex.words)
        entry = (shared / union, (shared, union), ex)
        if best is None or entry[0] > best[0]:
            best, second = entry, best
        elif second is None or entry[0] > second[0]:
            second = entry
    if best is None or best[0] == 0:
        return None
    if second is None or second[0] == 0 or \
            Fraction(*best[1]) - Fraction(*second[1]) > FLIP_MARGIN:
        return best[2].answer, None
    return best[2].answer, second[2].answer


def few_shot_pairs(messages):
    """(user, assistant) pairs before the last user message, as Examples."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
    return [Example(text_of(messages[i].get("content")), text_of(messages[i + 1].get("content")))
            for i in range(last - 1) if messages[i]["role"] == "user"
            and messages[i + 1]["role"] == "assistant"]


def example_of_line(obj):
    """The Example of one training line (chat, DPO or legacy prompt/completion)."""
    if "messages" in obj:
        msgs = obj["messages"]
        return Example(last_user_text(msgs[:-1]), text_of(msgs[-1].get("content")))
    if "input" in obj:
        return Example(last_user_text(obj["input"]["messages"]),
                       text_of(obj["preferred_completion"][0].get("content")))
    return Example(obj["prompt"], obj["completion"])


def line_error(obj):
    """Why a training line is invalid, or None."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not msgs:
            return "'messages' must be a non-empty array"
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in msgs):
            return "every message must be an object with a string 'role'"
        if msgs[-1]["role"] != "assistant":
            return "the last message must have role 'assistant'"
        return None
    if "input" in obj:
        inp, pref = obj.get("input"), obj.get("preferred_completion")
        if not isinstance(inp, dict) or not isinstance(inp.get("messages"), list) \
                or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                           for m in inp["messages"]):
            return "'input.messages' must be an array of messages"
        for key in ("preferred_completion", "non_preferred_completion"):
            value = obj.get(key)
            if not isinstance(value, list) or not value or not isinstance(value[0], dict) \
                    or value[0].get("role") != "assistant":
                return f"'{key}' must be an array starting with an assistant message"
        return None if pref else "missing 'preferred_completion'"
    if isinstance(obj.get("prompt"), str) and isinstance(obj.get("completion"), str):
        return None
    return "no 'messages' (nor DPO 'input', nor 'prompt'/'completion')"


def jsonl_lines(data):
    """(line number, bytes) of the non-blank lines of a file's bytes."""
    start, end, number = 0, len(data), 0
    while start < end:
        nl = data.find(b"\n", start)
        stop = end if nl < 0 else nl
        number += 1
        line = data[start:stop]
        if line.strip():
            yield number, line
        start = stop + 1


def scan_training_file(data):
    """(examples, estimated tokens) of a fine-tune file, or raise ValueError(reason)."""
    examples = tokens = 0
    for number, line in jsonl_lines(data):
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise ValueError(f"line {number} is not valid JSON") from None
        reason = line_error(obj)
        if reason:
            raise ValueError(f"line {number}: {reason}")
        examples += 1
        tokens += -(-len(line.rstrip(b"\r")) // 4)
    if not examples:
        raise ValueError("the file has no examples")
    return examples, tokens


def training_examples(data):
    return [example_of_line(json.loads(line)) for _, line in jsonl_lines(data)]


# ---------------------------------------------------------------- files and fine-tuning
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
STEPS = ("validating_files", "queued", "running", "succeeded")
FINAL = ("succeeded", "failed", "cancelled")
DISPOSITION = re.compile(r';\s*([\w*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
FILE_PATH = re.compile(r"/v1/files/([^/]+)(/content)?")
JOB_PATH = re.compile(r"/v1/fine_tuning/jobs/([^/]+)(?:/(cancel|events|checkpoints))?")
CREATE_FAIL = re.compile(r"create-(\d{3})")
FILE_FAIL, FILE_FLAKY = re.compile(r"fail-(\d{3})"), re.compile(r"flaky-(\d+)")


def multipart(content_type, body):
    """{field name: (filename or None, bytes)} of a multipart/form-data body."""
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise ValueError("expected a multipart/form-data body")
    boundary = dict((k.lower(), v.strip('"')) for k, v in DISPOSITION.findall(";" + params)) \
        .get("boundary")
    if not boundary:
        raise ValueError("the multipart/form-data Content-Type has no boundary")
    delim = b"--" + boundary.encode("latin-1")
    pos = body.find(delim)
    fields = {}
    while pos >= 0:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return fields
        head_end = body.find(b"\r\n\r\n", pos)
        if body[pos:pos + 2] != b"\r\n" or head_end < 0:
            break
        headers = {}
        for line in body[pos + 2:head_end].decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value
        end = body.find(b"\r\n" + delim, head_end + 4)
        if end < 0:
            break
        params = {k.lower(): v[1:-1].replace('\\"', '"') if v.startswith('"') else v.strip()
                  for k, v in DISPOSITION.findall(headers.get("content-disposition", ""))}
        if "filename*" in params and "''" in params["filename*"]:
            params["filename"] = unquote(params["filename*"].split("''", 1)[1])
        if "name" in params:
            fields[params["name"]] = (params.get("filename"), body[head_end + 4:end])
        pos = end + 2
    raise ValueError("malformed multipart/form-data body (no closing boundary)")


def query_args(query):
    """(plain {key: value}, metadata filter {k: v} or None, or "null")."""
    args, meta = {}, None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.startswith("metadata[") and key.endswith("]"):
            meta = (meta if isinstance(meta, dict) else {}) | {key[9:-1]: value}
        elif key == "metadata":
            parsed = json.loads(value) if value not in ("", "null") else None
            if parsed is not None and not isinstance(parsed, dict):
                raise ValueError("metadata must be a JSON object or null")
            meta = parsed if isinstance(parsed, dict) else "null"
        else:
            args[key] = value
    return args, meta


def page(items, args, default_limit):
    """OpenAI cursor paging of a newest-first list: after=<id>, limit=<n>."""
    after = args.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1:] if after in ids else []
    limit = int(args["limit"]) if args.get("limit", "").isdigit() else default_limit
    limit = max(1, limit)
    return items[:limit], len(items) > limit


def n_epochs_of(req):
    method = req.get("method")
    for spec in ([method.get(method.get("type"))] if isinstance(method, dict) else []) \
            + [{"hyperparameters": req.get("hyperparameters")}]:
        hyper = spec.get("hyperparameters") if isinstance(spec, dict) else None
        if isinstance(hyper, dict) and "n_epochs" in hyper:
            return hyper["n_epochs"]
    return "auto"


class Job:
    """One fine-tuning job; step = index into STEPS reached so far."""

    def __init__(self, n, req, training, validation, now):
        self.n, self.req, self.training, self.validation = n, req, training, validation
        self.id, self.short = f"ftjob-fake{n:06d}", f"job{n:05d}"
        triggers = req["model"] + " " + (req.get("suffix") or "")
        self.never, self.fails = "never" in triggers, "fail" in triggers
        self.invalid = "invalid" in triggers
        self.step, self.status, self.created_at, self.finished_at = 0, STEPS[0], now, None
        self.error = self.fine_tuned_model = self.trained_tokens = None
        epochs = n_epochs_of(req)
        self.n_epochs = 3 if epochs == "auto" else epochs
        self.events, self.checkpoints, self.result_files = [], [], []
        self.examples = self.valid_accuracy = None
        self.steps_per_epoch = training["examples"]  # batch_size 1

    def learned(self):
        if self.examples is None:
            self.examples = training_examples(self.training["data"])
        return self.examples

    def model_name(self):
        return f"ft:{self.req['model']}:llmext-fake:{self.req.get('suffix') or 'ft'}:{self.short}"

    def metrics(self, epoch):
        n = self.training["examples"]
        loss = round(2 / (1 + epoch * math.log(1 + n)), 4)
        out = {"step": epoch * self.steps_per_epoch, "train_loss": loss,
               "train_mean_token_accuracy": round(1 - loss / 2.5, 4),
               "valid_loss": None, "valid_mean_token_accuracy": None,
               "full_valid_loss": None, "full_valid_mean_token_accuracy": None}
        if self.validation is not None:
            if self.valid_accuracy is None:
                held = training_examples(self.validation["data"])
                hits = sum((nearest(self.learned(), ex.input) or (None,))[0] == ex.answer
                           for ex in held)
                self.valid_accuracy = round(hits / len(held), 4)
            valid = round(loss + 1 - self.valid_accuracy, 4)
            out.update(valid_loss=valid, valid_mean_token_accuracy=self.valid_accuracy,
                       full_valid_loss=valid, full_valid_mean_token_accuracy=self.valid_accuracy)
        return out

    def public(self):
        hyper = {"batch_size": 1, "learning_rate_multiplier": 1.8, "n_epochs": self.n_epochs}
        method = self.req.get("method")
        kind = method.get("type") if isinstance(method, dict) else "supervised"
        return {"object": "fine_tuning.job", "id": self.id, "created_at": self.created_at,
                "error": self.error, "fine_tuned_model": self.fine_tuned_model,
                "finished_at": self.finished_at, "hyperparameters": hyper,
                "model": self.req["model"], "organization_id": "org-llmext-fake",
                "result_files": self.result_files, "status": self.status,
                "trained_tokens": self.trained_tokens,
                "training_file": self.req["training_file"],
                "validation_file": self.req.get("validation_file"),
                "seed": self.req.get("seed", self.n), "estimated_finish": None,
                "integrations": [], "user_provided_suffix": self.req.get("suffix"),
                "metadata": self.req.get("metadata"),
                "method": {"type": kind, kind: {"hyperparameters": hyper}}}


class Tuning:
    """Files, fine-tuning jobs and the models they made (kept until the fake exits)."""

    def __init__(self, step_ms=0.0):
        self.step = step_ms / 1000
        self.files, self.jobs, self.models = {}, {}, {}
        self.file_seq = self.job_seq = self.event_seq = self.ckpt_seq = 0
        self.flaky = {}
        self.reset()

    def reset(self):
        self.files_uploaded = self.upload_requests = self.upload_bytes = 0
        self.jobs_created = self.job_create_requests = self.cancel_requests = 0
        self.flaky = {}

    def stats(self):
        return {"files_uploaded": self.files_uploaded, "upload_requests": self.upload_requests,
                "upload_bytes": self.upload_bytes, "jobs_created": self.jobs_created,
                "job_create_requests": self.job_create_requests,
                "cancel_requests": self.cancel_requests,
                "files": len(self.files), "jobs": len(self.jobs)}

    # -- files
    def new_file(self, filename, purpose, data, examples=None):
        self.file_seq += 1
        fid = f"file-fake{self.file_seq:06d}"
        self.files[fid] = {"id": fid, "object": "file", "bytes": len(data),
                           "created_at": int(time.time()), "expires_at": None,
                           "filename": filename, "purpose": purpose, "status": "processed",
                           "status_details": None, "data": data, "examples": examples}
        return self.files[fid]

    @staticmethod
    def public_file(f):
        return {k: v for k, v in f.items() if k not in ("data", "examples", "tokens")}

    def upload(self, headers, body):
        self.upload_requests += 1
        self.upload_bytes += len(body)
        try:
            fields = multipart(headers.get("content-type", ""), body)
        except ValueError as exc:
            return invalid(str(exc))
        filename, data = fields.get("file", (None, None))
        if data is None or filename is None:
            return invalid("Missing required parameter: 'file'.", "file",
                           "missing_required_parameter")
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
        if purpose not in PURPOSES:
            return invalid(f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        faults = filename + " " + headers.get("x-fake-fault", "")
        if "reject" in faults:
            return invalid("upload rejected", "file", "upload_rejected")
        if (m := FILE_FAIL.search(faults)) and int(m.group(1)) in FAILS:
            return fail_response(int(m.group(1)), "files")
        if m := FILE_FLAKY.search(filename):
            seen = self.flaky.get(filename, 0)
            self.flaky[filename] = seen + 1
            if seen < int(m.group(1)):
                return fail_response(503, "files", retry_secs=0, retry_ms=10)
        examples = tokens = None
        if purpose == "fine-tune":
            try:
                examples, tokens = scan_training_file(data)
            except (ValueError, UnicodeDecodeError) as exc:
                return invalid(f"Invalid file format for fine-tuning: {exc}.", "file",
                               "invalid_file_format")
        f = self.new_file(filename, purpose, data, examples)
        f["tokens"] = tokens
        self.files_uploaded += 1
        return json_response(200, self.public_file(f))

    def file_request(self, method, path, query):
        if path == "/v1/files":
            if method != "GET":
                return None
            args, _ = query_args(query)
            files = sorted(self.files.values(), key=lambda f: f["id"],
                           reverse=args.get("order", "desc") != "asc")
            files = [f for f in files if args.get("purpose") in (None, "", f["purpose"])]
            data, more = page([self.public_file(f) for f in files], args, 10000)
            return json_response(200, {"object": "list", "data": data,
                                       "first_id": data[0]["id"] if data else None,
                                       "last_id": data[-1]["id"] if data else None,
                                       "has_more": more})
        m = FILE_PATH.fullmatch(path)
        if not m or (method, bool(m.group(2))) not in (("GET", False), ("GET", True),
                                                       ("DELETE", False)):
            return None
        f = self.files.get(m.group(1))
        if f is None:
            return error_response(404, f"No such File object: {m.group(1)}",
                                  "invalid_request_error", "id")
        if method == "DELETE":
            del self.files[f["id"]]
            return json_response(200, {"id": f["id"], "object": "file", "deleted": True})
        if m.group(2):
            return Response(200, f["data"], "application/octet-stream")
        return json_response(200, self.public_file(f))

    # -- jobs
    def event(self, job, message, level="info", kind="message", data=None):
        self.event_seq += 1
        job.events.append({"object": "fine_tuning.job.event",
                           "id": f"ftevent-fake{self.event_seq:06d}",
                           "created_at": int(time.time()), "level": level,
                           "message": message, "type": kind, "data": data or {}})

    def checkpoint(self, job, epoch):
        self.ckpt_seq += 1
        metrics = job.metrics(epoch)
        model = f"{job.model_name()}:ckpt-step-{metrics['step']}"
        job.checkpoints.append({"object": "fine_tuning.job.checkpoint",
                                "id": f"ftckpt-fake{self.ckpt_seq:06d}",
                                "created_at": int(time.time()),
                                "fine_tuned_model_checkpoint": model,
                                "step_number": metrics["step"], "fine_tuning_job_id": job.id,
                                "metrics": metrics})
        self.models[model] = job
        total = job.n_epochs * job.steps_per_epoch
        self.event(job, f"Step {metrics['step']}/{total}: training loss={metrics['train_loss']}",
                   kind="metrics", data=dict(metrics, total_steps=total))
        self.event(job, f"Checkpoint created at step {metrics['step']}")

    def finish(self, job, status, error=None):
        job.status, job.finished_at, job.error = status, int(time.time()), error
        if error:
            self.event(job, error["message"], level="error")

    def advance(self, job):
        """One step along validating_files -> queued -> running -> succeeded."""
        if job.status in FINAL:
            return
        if job.status == "validating_files":
            if job.invalid:
                return self.finish(job, "failed", {
                    "code": "invalid_training_file", "param": "training_file",
                    "message": "The job failed validation: the training file was refused by "
                               "the fake provider (suffix or model contains \"invalid\")."})
            job.step, job.status = 1, "queued"
            return self.event(job, "Files validated, moving job to queued state")
        if job.status == "queued":
            job.step, job.status = 2, "running"
            self.event(job, "Fine-tuning job started")
            return self.checkpoint(job, 1)
        if job.never:
            return
        if job.fails:
            return self.finish(job, "failed", {
                "code": "training_failed", "param": None,
                "message": "Fine-tuning failed at the fake provider "
                           "(suffix or model contains \"fail\")."})
        for epoch in range(2, job.n_epochs + 1):
            self.checkpoint(job, epoch)
        job.step = 3
        job.trained_tokens = job.training["tokens"] * job.n_epochs
        job.fine_tuned_model = job.model_name()
        self.models[job.fine_tuned_model] = job
        csv = "step,train_loss,train_mean_token_accuracy,valid_loss,valid_mean_token_accuracy\n" \
            + "".join(",".join("" if c["metrics"][k] is None else str(c["metrics"][k]) for k in (
                "step", "train_loss", "train_mean_token_accuracy", "valid_loss",
                "valid_mean_token_accuracy")) + "\n" for c in job.checkpoints)
        job.result_files = [self.new_file("step_metrics.csv", "fine-tune-results",
                                          csv.encode())["id"]]
        self.event(job, f"New fine-tuned model created: {job.fine_tuned_model}")
        self.finish(job, "succeeded")
        self.event(job, "The job has successfully completed")

    def catch_up(self, job):
        """With --finetune-step-ms, the steps that time has made due."""
        if self.step > 0:
            due = int((time.monotonic() - job.started) / self.step)
            while job.status not in FINAL and job.ticks < due:
                job.ticks += 1
                self.advance(job)
        return job

    def create_job(self, body):
        self.job_create_requests += 1
        try:
            req = json.loads(body)
        except (ValueError, RecursionError):
            return invalid(BAD_JSON)
        if not isinstance(req, dict):
            return invalid("The request body must be a JSON object.")
        if not isinstance(req.get("model"), str) or not req["model"]:
            return invalid("Missing required parameter: 'model'.", "model",
                           "missing_required_parameter")
        files = {}
        for key in ("training_file", "validation_file"):
            fid = req.get(key)
            if fid is None and key == "validation_file":
                continue
            f = self.files.get(fid) if isinstance(fid, str) else None
            if f is None or f["purpose"] != "fine-tune":
                return invalid(f"invalid {key}: {fid}", key, "invalid_file")
            files[key] = f
        suffix, seed, meta = req.get("suffix"), req.get("seed"), req.get("metadata")
        if suffix is not None and not (isinstance(suffix, str) and 1 <= len(suffix) <= 64):
            return invalid("'suffix' must be a string of 1 to 64 characters.", "suffix")
        if seed is not None and not (type(seed) is int and 0 <= seed <= 2147483647):
            return invalid("'seed' must be an integer from 0 to 2147483647.", "seed")
        if meta is not None and not (isinstance(meta, dict) and len(meta) <= 16 and all(
                isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in meta.items())):
            return invalid("'metadata' must be an object of at most 16 string values.",
                           "metadata")
        epochs = n_epochs_of(req)
        if epochs != "auto" and not (type(epochs) is int and 1 <= epochs <= 50):
            return invalid("'n_epochs' must be \"auto\" or an integer from 1 to 50.",
                           "hyperparameters.n_epochs")
        triggers = req["model"] + " " + (suffix or "")
        if (m := CREATE_FAIL.search(triggers)) and int(m.group(1)) in FAILS:
            return fail_response(int(m.group(1)), req["model"])
        self.job_seq += 1
        job = Job(self.job_seq, req, files["training_file"], files.get("validation_file"),
                  int(time.time()))
        job.started, job.ticks = time.monotonic(), 0
        self.jobs[job.id] = job
        self.jobs_created += 1
        self.event(job, f"Created fine-tuning job: {job.id}")
        self.event(job, f"Validating training file: {req['training_file']}"
                   + (f" and validation file: {req['validation_file']}"
                      if req.get("validation_file") else ""))
        if "lost" in triggers:
            return fail_response(500, req["model"])
        return json_response(200, job.public())

    def job_request(self, method, path, query, body):
        if path == "/v1/fine_tuning/jobs":
            if method == "POST":
                return self.create_job(body)
            if method != "GET":
                return None
            args, meta = query_args(query)
            jobs = [self.catch_up(j) for j in reversed(self.jobs.values())]
            if meta == "null":
                jobs = [j for j in jobs if not j.req.get("metadata")]
            elif meta:
                jobs = [j for j in jobs if isinstance(j.req.get("metadata"), dict)
                        and all(j.req["metadata"].get(k) == v for k, v in meta.items())]
            data, more = page([j.public() for j in jobs], args, 20)
            return json_response(200, {"object": "list", "data": data, "has_more": more})
        m = JOB_PATH.fullmatch(path)
        action = m.group(2) if m else None
        if not m or method != ("POST" if action == "cancel" else "GET"):
            return None
        job = self.jobs.get(m.group(1))
        if job is None:
            return error_response(404, f"Could not find fine-tuning job: {m.group(1)}",
                                  "invalid_request_error", "id", "not_found")
        self.catch_up(job)
        if action is None:
            if self.step <= 0:
                self.advance(job)
            return json_response(200, job.public())
        if action == "cancel":
            self.cancel_requests += 1
            if job.status in ("succeeded", "failed"):
                return invalid(f"Cannot cancel a job that has already {job.status}.", "id")
            if job.status != "cancelled":
                self.finish(job, "cancelled")
                self.event(job, "Fine-tuning job cancelled")
            return json_response(200, job.public())
        args, _ = query_args(query)
        items = list(reversed(job.events if action == "events" else job.checkpoints))
        data, more = page(items, args, 20 if action == "events" else 10)
        out = {"object": "list", "data": data, "has_more": more}
        if action == "checkpoints":
            out.update(first_id=data[0]["id"] if data else None,
                       last_id=data[-1]["id"] if data else None)
        return json_response(200, out)

    def tuned(self, model):
        """The job whose fine-tuned model (or checkpoint) is `model`, after catching up."""
        for job in self.jobs.values():
            if job.status not in FINAL:
                self.catch_up(job)
        return self.models.get(model)


# ---------------------------------------------------------------- provider state
class Provider:
    """Configuration, counters and request handling shared by all connections."""

    def __init__(self, latency_ms=0.0, api_key=None, finetune_step_ms=0.0, batch_step_ms=0.0):
        self.latency = latency_ms / 1000
        self.api_key = api_key
        self.tuning = Tuning(finetune_step_ms)
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
            examples = few_shot_pairs(req["messages"])
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
        """The learning rule's answer, or None to echo (see the header)."""
        text = last_user_text(req["messages"])
        found = nearest(examples, text)
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


def embed(c, model, inputs, **fields):
    """(status, body as JSON) of POST /v1/embeddings."""
    body = dict(fields, model=model, input=inputs)
    status, _, data = c.request("POST", "/v1/embeddings", json.dumps(body))
    return status, json.loads(data) if data.startswith(b"{") and data.endswith(b"}") else data


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b))


def check_embeddings(c):
    c.json("POST", "/_reset")
    status, answer = embed(c, "emb", ["The cat sat", "the CAT sat!", "cat sat on a mat",
                                      "stock prices fell sharply"])
    vectors = [d["embedding"] for d in answer["data"]]
    norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
    stats = c.json("GET", "/_stats")
    return status == 200 and [d["index"] for d in answer["data"]] == [0, 1, 2, 3] \
        and len(vectors[0]) == EMBED_DIMENSIONS and all(abs(n - 1) < 1e-4 for n in norms) \
        and vectors[0] == vectors[1] \
        and cosine(vectors[0], vectors[2]) > cosine(vectors[0], vectors[3]) \
        and answer["usage"] == {"prompt_tokens": 15, "total_tokens": 15} \
        and answer["model"] == "emb" and answer["object"] == "list" \
        and (stats["embedding_requests"], stats["embedding_inputs"], stats["chat_requests"],
             stats["by_model"]) == (1, 4, 0, {"emb": 1}) \
        and len(embed(c, "emb", "one", dimensions=5)[1]["data"][0]["embedding"]) == 5 \
        and embed(c, "emb", "!!")[1]["usage"]["prompt_tokens"] == 1


def check_embedding_faults(c):
    codes = [embed(c, "emb", x, **kw)[1]["error"]["param"] for x, kw in (
        ([], {}), ([""], {}), ([1], {}), ("a", {"dimensions": 0}), ("a", {"dimensions": 1.5}))]
    short = embed(c, "emb-short", ["a", "b"])[1]["data"]
    shuffled = embed(c, "emb-shuffled", ["a", "b"])[1]["data"]
    start = time.monotonic()
    slow = embed(c, "slow-200", "a")[0]
    elapsed = time.monotonic() - start
    return codes == ["input", "input", "input", "dimensions", "dimensions"] \
        and embed(c, "fail-500", "a")[0] == 500 \
        and embed(c, "fail-429", "a")[1]["error"]["code"] == "rate_limit_exceeded" \
        and [embed(c, "flaky-1-e", "a")[0] for _ in range(2)] == [503, 200] \
        and embed(c, "nonjson", "a")[0] == 200 \
        and isinstance(embed(c, "truncated", "a")[1], bytes) \
        and [d["index"] for d in short] == [0] and [d["index"] for d in shuffled] == [1, 0] \
        and slow == 200 and elapsed >= 0.2


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


def multipart_body(fields, boundary="llmextFakeBoundary7MA4YWxk"):
    """(Content-Type, body) of a multipart/form-data upload.

    fields: name -> str, or (filename, bytes) for a file."""
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{value[0]}"\r\n'
                    "Content-Type: application/octet-stream")
            data = value[1]
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"', value.encode()
        parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode() + b"\r\n\r\n" + data
                     + b"\r\n")
    return (f"multipart/form-data; boundary={boundary}",
            b"".join(parts) + b"--" + boundary.encode() + b"--\r\n")


def jsonl(pairs, system=None):
    """A chat training file: one line per (user, assistant) pair."""
    lines = []
    for user, answer in pairs:
        msgs = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": msgs}))
    return ("\n".join(lines) + "\n").encode()


TRAIN = [("the invoice was charged twice", "billing"),
         ("my password reset link expired", "account"),
         ("the app crashes when I open settings", "bug"),
         ("please refund my last payment", "billing"),
         ("I cannot log in to my account", "account"),
         ("the export button does nothing", "bug")]
VALID = [("I was charged twice this month", "billing"), ("the app crashes on start", "bug"),
         ("change the email of my account", "account")]
# "red blue" is equally close (1/3) to both examples: an uncertain answer
TIE = [("red green", "A"), ("blue yellow", "B")]


class FtClient(Client):
    """Client plus files and fine-tuning helpers."""

    def upload(self, filename, data, purpose="fine-tune"):
        ctype, body = multipart_body({"purpose": purpose, "file": (filename, data)})
        status, _, out = self.request("POST", "/v1/files", body, {"Content-Type": ctype})
        return status, json.loads(out)

    def post_multipart(self, fields):
        ctype, body = multipart_body(fields)
        return self.request("POST", "/v1/files", body, {"Content-Type": ctype})

    def post_json(self, path, obj):
        status, _, out = self.request("POST", path, json.dumps(obj),
                                      {"Content-Type": JSON_TYPE})
        return status, json.loads(out)

    def job(self, training_file, **fields):
        return self.post_json("/v1/fine_tuning/jobs", dict(
            fields, model=fields.get("model", "learner"), training_file=training_file))

    def poll(self, job_id, times=1):
        for _ in range(times):
            job = self.json("GET", f"/v1/fine_tuning/jobs/{job_id}")
        return job

    def tuned_model(self, pairs, suffix="t", **fields):
        fid = self.upload("train.jsonl", jsonl(pairs))[1]["id"]
        return self.poll(self.job(fid, suffix=suffix, **fields)[1]["id"], 3)

    def answers(self, model, text, n, messages=None, **fields):
        msgs = (messages or []) + [{"role": "user", "content": text}]
        return [self.content(model, messages=msgs, **fields) for _ in range(n)]


def shots(pairs):
    return [m for user, answer in pairs for m in ({"role": "user", "content": user},
                                                  {"role": "assistant", "content": answer})]


def check_files(c):
    data = jsonl(TRAIN)
    status, f = c.upload("train.jsonl", data)
    listed = c.json("GET", "/v1/files")
    by_purpose = c.json("GET", "/v1/files?purpose=batch")["data"]
    got = c.json("GET", f"/v1/files/{f['id']}")
    content = c.request("GET", f"/v1/files/{f['id']}/content")
    deleted = c.json("DELETE", f"/v1/files/{f['id']}")
    gone = error_of(c.request("GET", f"/v1/files/{f['id']}"))
    return status == 200 and f["id"].startswith("file-") and (
        f["object"], f["bytes"], f["filename"], f["purpose"], f["status"]) == (
        "file", len(data), "train.jsonl", "fine-tune", "processed") \
        and listed["object"] == "list" and listed["data"][0] == f == got \
        and all(x["purpose"] == "batch" for x in by_purpose) \
        and (content[0], content[1]["content-type"], content[2]) == (
            200, "application/octet-stream", data) \
        and deleted == {"id": f["id"], "object": "file", "deleted": True} \
        and gone[0] == 404 and f["id"] not in [x["id"] for x in c.json("GET", "/v1/files")["data"]]


def check_invalid_files(c):
    bad_role = jsonl(TRAIN[:1]) + b'{"messages":[{"role":"user","content":"x"}]}\n'
    results = [c.upload("a.jsonl", bad_role), c.upload("b.jsonl", b"{nope\n"),
               c.upload("c.jsonl", b"\n\n"), c.upload("d.jsonl", b'{"x":1}\n')]
    bad_multipart = c.request("POST", "/v1/files", b"--zz\r\n",
                              {"Content-Type": "multipart/form-data; boundary=zz"})
    no_purpose = c.post_multipart({"file": ("x.jsonl", b"x")})
    return [s for s, _ in results] == [400] * 4 \
        and all(e["error"]["code"] == "invalid_file_format" for _, e in results) \
        and "line 2: the last message must have role 'assistant'" in \
        results[0][1]["error"]["message"] \
        and error_of(bad_multipart)[0] == 400 and error_of(no_purpose)[1]["param"] == "purpose"


def check_upload_faults(c):
    data = jsonl(TRAIN)
    before = c.json("GET", "/_stats")
    rejected = c.upload("set-reject-v1.jsonl", data)
    limited = c.post_multipart({"purpose": "fine-tune", "file": ("x-fail-429.jsonl", data)})
    server = c.upload("x-fail-500.jsonl", data)[0]
    flaky = [c.upload("y-flaky-1.jsonl", data)[0] for _ in range(2)]
    ctype, body = multipart_body({"purpose": "fine-tune", "file": ("plain.jsonl", data)})
    by_header = c.request("POST", "/v1/files", body, {"Content-Type": ctype,
                                                      "X-Fake-Fault": "reject"})[0]
    after = c.json("GET", "/_stats")
    return rejected == (400, {"error": {"message": "upload rejected",
                                        "type": "invalid_request_error", "param": "file",
                                        "code": "upload_rejected"}}) \
        and limited[0] == 429 and limited[1]["retry-after"] == "1" and server == 500 \
        and flaky == [503, 200] and by_header == 400 \
        and after["files_uploaded"] - before["files_uploaded"] == 1 \
        and after["upload_requests"] - before["upload_requests"] == 6


def check_big_upload(c):
    data = b'{"messages":[{"role":"user","content":"' + b"w " * 200 + \
        b'"},{"role":"assistant","content":"ok"}]}\n'
    data *= (8 << 20) // len(data)
    start = time.monotonic()
    status, f = c.upload("big.jsonl", data)
    same = c.request("GET", f"/v1/files/{f['id']}/content")[2] == data
    c.request("DELETE", f"/v1/files/{f['id']}")
    return status == 200 and f["bytes"] == len(data) and same and time.monotonic() - start < 5


def check_progression(c):
    data = jsonl(TRAIN)
    fid = c.upload("train.jsonl", data)[1]["id"]
    before = c.json("GET", "/_stats")["jobs_created"]
    status, job = c.job(fid, suffix="support", method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}})
    seen = [job["status"]] + [c.poll(job["id"])["status"] for _ in range(4)]
    done = c.poll(job["id"])
    tokens = sum(-(-len(line) // 4) for line in data.split(b"\n") if line)
    return status == 200 and job["id"].startswith("ftjob-") and job["object"] == \
        "fine_tuning.job" and seen == ["validating_files", "queued", "running", "succeeded",
                                       "succeeded"] \
        and done["fine_tuned_model"] == f"ft:learner:llmext-fake:support:job{job['id'][-5:]}" \
        and done["trained_tokens"] == tokens * 2 and done["hyperparameters"]["n_epochs"] == 2 \
        and done["error"] is None and done["finished_at"] and len(done["result_files"]) == 1 \
        and c.json("GET", "/_stats")["jobs_created"] == before + 1 \
        and done["fine_tuned_model"] in [m["id"] for m in c.json("GET", "/v1/models")["data"]]


def check_metadata_filter(c):
    fid = c.upload("train.jsonl", jsonl(TRAIN))[1]["id"]
    mine = c.job(fid, metadata={"llmext_job": "4242", "db": "x"})[1]
    c.job(fid, metadata={"llmext_job": "4243"})
    plain = c.job(fid)[1]
    by_key = c.json("GET", "/v1/fine_tuning/jobs?metadata[llmext_job]=4242")["data"]
    encoded = c.json("GET", "/v1/fine_tuning/jobs?metadata%5Bllmext_job%5D=4242&"
                     "metadata%5Bdb%5D=x")["data"]
    as_json = c.json("GET", "/v1/fine_tuning/jobs?metadata=" + quote('{"llmext_job":"4242"}'))
    none = c.json("GET", "/v1/fine_tuning/jobs?metadata=null&limit=1")
    bad = error_of(c.request("GET", "/v1/fine_tuning/jobs?metadata=%7Bnope"))
    paged = c.json("GET", f"/v1/fine_tuning/jobs?limit=1&after={plain['id']}")["data"]
    return [j["id"] for j in by_key] == [j["id"] for j in encoded] == \
        [j["id"] for j in as_json["data"]] == [mine["id"]] \
        and by_key[0]["status"] == "validating_files" \
        and none["data"][0]["id"] == plain["id"] and none["has_more"] and bad[0] == 400 \
        and [j["metadata"]["llmext_job"] for j in paged] == ["4243"]


def check_cancel(c):
    fid = c.upload("train.jsonl", jsonl(TRAIN))[1]["id"]
    job = c.job(fid)[1]
    c.poll(job["id"], 2)
    first = c.post_json(f"/v1/fine_tuning/jobs/{job['id']}/cancel", {})
    again = c.post_json(f"/v1/fine_tuning/jobs/{job['id']}/cancel", {})
    after = c.poll(job["id"], 3)
    done = c.tuned_model(TRAIN)
    late = c.post_json(f"/v1/fine_tuning/jobs/{done['id']}/cancel", {})
    return (first[0], first[1]["status"], again[1]["status"], after["status"],
            after["fine_tuned_model"], late[0]) == (200, "cancelled", "cancelled",
                                                    "cancelled", None, 400) \
        and error_of(c.request("GET", "/v1/fine_tuning/jobs/ftjob-nope"))[0] == 404


def check_job_faults(c):
    fid = c.upload("train.jsonl", jsonl(TRAIN))[1]["id"]
    failed = c.poll(c.job(fid, suffix="will-fail")[1]["id"], 3)
    invalid_ = c.poll(c.job(fid, suffix="invalid")[1]["id"], 1)
    never = c.poll(c.job(fid, suffix="never-ends")[1]["id"], 10)
    before = c.json("GET", "/_stats")["jobs_created"]
    refused = c.job(fid, suffix="create-503")
    lost = c.job(fid, suffix="lost", metadata={"llmext_job": "lost-1"})
    found = c.json("GET", "/v1/fine_tuning/jobs?metadata[llmext_job]=lost-1")["data"]
    no_file = c.job("file-nope")
    return (failed["status"], failed["error"]["code"], failed["fine_tuned_model"]) == \
        ("failed", "training_failed", None) \
        and (invalid_["status"], invalid_["error"]["code"]) == ("failed", "invalid_training_file") \
        and (never["status"], never["finished_at"]) == ("running", None) \
        and refused[0] == 503 and lost[0] == 500 and len(found) == 1 \
        and c.json("GET", "/_stats")["jobs_created"] == before + 1 \
        and (no_file[0], no_file[1]["error"]["param"]) == (400, "training_file")


def check_events_checkpoints(c):
    vid = c.upload("valid.jsonl", jsonl(VALID))[1]["id"]
    job = c.tuned_model(TRAIN, validation_file=vid)
    small = c.tuned_model(TRAIN[:2])
    base = f"/v1/fine_tuning/jobs/{job['id']}"
    events = c.json("GET", base + "/events")["data"]
    two = c.json("GET", base + "/events?limit=2")
    rest = c.json("GET", base + f"/events?after={two['data'][1]['id']}")["data"]
    ckpts = c.json("GET", base + "/checkpoints")
    small_ckpts = c.json("GET", f"/v1/fine_tuning/jobs/{small['id']}/checkpoints")["data"]
    losses = [k["metrics"]["train_loss"] for k in reversed(ckpts["data"])]
    valid = ckpts["data"][0]["metrics"]
    return events[0]["message"] == "The job has successfully completed" \
        and events[-1]["message"].startswith("Created fine-tuning job") \
        and two["has_more"] and events[2:] == rest \
        and any(e["type"] == "metrics" for e in events) \
        and len(ckpts["data"]) == 3 and losses == sorted(losses, reverse=True) \
        and ckpts["first_id"] == ckpts["data"][0]["id"] \
        and [k["step_number"] for k in ckpts["data"]] == [18, 12, 6] \
        and ckpts["data"][0]["fine_tuned_model_checkpoint"] == job["fine_tuned_model"] \
        + ":ckpt-step-18" \
        and small_ckpts[0]["metrics"]["train_loss"] > ckpts["data"][0]["metrics"]["train_loss"] \
        and small_ckpts[0]["metrics"]["valid_loss"] is None \
        and valid["valid_mean_token_accuracy"] == 1.0 and valid["valid_loss"] is not None


def check_learning(c):
    model = c.tuned_model(TRAIN)["fine_tuned_model"]
    trained = c.content(model, text="my password reset link expired")
    unseen = c.content(model, text="a refund of the payment please")
    unrelated = c.content(model, text="zzz")
    base = c.content("learner", text="a refund of the payment please")
    few = c.answers("learner", "a refund of the payment please", 1,
                    messages=shots(TRAIN[2:4]))[0]
    ckpt = c.content(model + ":ckpt-step-6", text="the export button does nothing")
    pending = c.job(c.upload("t.jsonl", jsonl(TRAIN))[1]["id"])[1]
    early = error_of(c.chat(f"ft:learner:llmext-fake:ft:job{pending['id'][-5:]}"))
    usage = json.loads(c.chat(model, text="my password reset link expired")[2])["usage"]
    return (trained, unseen, unrelated, base, few, ckpt, early[0], early[1]["code"]) == (
        "account", "billing", "echo: zzz", "echo: a refund of the payment please", "billing",
        "bug", 404, "model_not_found") and usage["completion_tokens"] == 1


def check_flips(c):
    tie = shots(TIE)
    cold = set(c.answers("learner", "red blue", 20, messages=tie, temperature=0))
    seeded = [set(c.answers("learner", "red blue", 5, messages=tie, temperature=0.7, seed=s))
              for s in range(16)]
    hot = c.answers("learner", "red blue", 100, messages=tie, temperature=1)
    clear = set(c.answers("learner", "red green blue", 30, messages=tie, temperature=1))
    return cold == {"A"} and all(len(s) == 1 for s in seeded) \
        and set().union(*seeded) == {"A", "B"} and set(hot) == {"A", "B"} and clear == {"A"}


def check_consistency(c):
    """The same uncertain question: a few-shot base flips, a model trained on more does not."""
    more = TIE + [("red blue purple", "B")]
    tuned = c.tuned_model(more)["fine_tuned_model"]
    base = c.answers("learner", "red blue", 60, messages=shots(TIE), temperature=1)
    ft = c.answers(tuned, "red blue", 60, temperature=1)
    agree = lambda xs: max(xs.count(x) for x in set(xs)) / len(xs)  # noqa: E731
    return agree(base) < 0.9 and agree(ft) == 1.0


def check_step_time():
    t = Tuning(step_ms=30)
    ctype, body = multipart_body({"purpose": "fine-tune", "file": ("t.jsonl", jsonl(TRAIN))})
    fid = json.loads(t.upload({"content-type": ctype}, body).body)["id"]
    jid = json.loads(t.create_job(json.dumps({"model": "m", "training_file": fid})).body)["id"]
    path = f"/v1/fine_tuning/jobs/{jid}"
    get = lambda: json.loads(t.job_request("GET", path, "", b"").body)  # noqa: E731
    first, second = get()["status"], get()["status"]
    time.sleep(0.1)
    return (first, second, get()["status"]) == ("validating_files", "validating_files",
                                                "succeeded")


def check_tuning_counters(c):
    c.request("POST", "/_reset")
    ctype, body = multipart_body({"purpose": "fine-tune", "file": ("t.jsonl", jsonl(TRAIN))})
    c.request("POST", "/v1/files", body, {"Content-Type": ctype})
    c.upload("reject.jsonl", b"x")
    fid = c.json("GET", "/v1/files")["data"][0]["id"]
    create = json.dumps({"model": "learner", "training_file": fid})
    c.request("POST", "/v1/fine_tuning/jobs", create)
    s = c.json("GET", "/_stats")
    return (s["files_uploaded"], s["upload_requests"], s["jobs_created"],
            s["job_create_requests"], s["bytes_received"]) == (
        1, 2, 1, 1, len(body) + len(multipart_body(
            {"purpose": "fine-tune", "file": ("reject.jsonl", b"x")})[1]) + len(create)) \
        and s["jobs"] >= 1 and s["files"] >= 1


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
        ("judge", lambda: json.loads(c.content("judge", text="Expected: A b\nOutput: a, B")) ==
         {"score": 1, "reason": "word overlap 2/2"}
         and json.loads(c.content("judge", text="Expected: a b c\nOutput: a d")) ==
         {"score": 0.25, "reason": "word overlap 1/4"}
         and json.loads(c.content("judge", text="Output: a"))["score"] == 0),
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
        ("files: upload, list, retrieve, content, delete", lambda: check_files(c)),
        ("files: invalid training files, bad multipart", lambda: check_invalid_files(c)),
        ("files: reject, fail-<status>, flaky-<n> uploads", lambda: check_upload_faults(c)),
        ("files: 8 MB upload", lambda: check_big_upload(c)),
        ("jobs: validating_files -> queued -> running -> succeeded", lambda: check_progression(c)),
        ("jobs: metadata filter, paging", lambda: check_metadata_filter(c)),
        ("jobs: cancel", lambda: check_cancel(c)),
        ("jobs: fail, invalid, never, create-<status>, lost", lambda: check_job_faults(c)),
        ("jobs: events, checkpoints, metrics", lambda: check_events_checkpoints(c)),
        ("jobs: --finetune-step-ms", check_step_time),
        ("learning: tuned and few-shot answers", lambda: check_learning(c)),
        ("learning: temperature, seed, flips", lambda: check_flips(c)),
        ("learning: more examples, more consistent", lambda: check_consistency(c)),
        ("counters: files, jobs, bytes", lambda: check_tuning_counters(c)),
        ("embeddings: vectors, nearness, usage, counters", lambda: check_embeddings(c)),
        ("embeddings: validation and faults", lambda: check_embedding_faults(c)),
    ] + fake_anthropic.self_checks(c) + fake_batches.self_checks(c)


def self_test():
    provider = Provider(latency_ms=0, api_key="sk-good")
    started = queue.Queue()
    thread = threading.Thread(target=asyncio.run, daemon=True, args=(
        serve(provider, "127.0.0.1", 0, lambda port, stop: started.put((port, stop))),))
    thread.start()
    port, stop = started.get(timeout=10)
    passed = failed = 0
    for name, check in self_checks(FtClient(port)):
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
    parser.add_argument("--finetune-step-ms", type=float, default=0.0)
    parser.add_argument("--batch-step-ms", type=float, default=0.0)
    parser.add_argument("--pidfile")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    return self_test() if args.self_test else run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
