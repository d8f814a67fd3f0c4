"""The fake provider's OpenAI Batch API (/v1/batches...).

fake is the fake_provider module (its helpers), provider its Provider
(tuning: the /v1/files store of fake_tuning.py; chat_response,
embeddings_response: the answers of POST /v1/chat/completions and
/v1/embeddings, uncounted and undelayed).  fake_provider.py's header points
here (section "Batches").

Endpoints
    POST /v1/batches {"input_file_id","endpoint","completion_window",
        "metadata"?} -> 200 batch object, status "validating".  Checked in
        this order, each a 400 invalid_request_error creating nothing (param):
          body not JSON, or not an object                    (null)
          input_file_id, endpoint or completion_window missing (code
            missing_required_parameter) or not a string (invalid_type) (it)
          endpoint not /v1/chat/completions nor /v1/embeddings (endpoint)
          completion_window not "24h"                        (completion_window)
          metadata not null nor <= 16 string values (keys <= 64 characters,
            values <= 512)                                   (metadata)
          input_file_id names no stored file, or one of another purpose
            than "batch": "Invalid 'input_file_id': '<id>'. ..." (input_file_id)
        (the endpoint, window and file refusals have code invalid_value)
    GET  /v1/batches/<id>         the batch, after a look (see Progression)
    POST /v1/batches/<id>/cancel  see Cancel
        unknown id -> 404 "No batch found with id '<id>'." (OpenAI's shape)
    GET  /v1/batches ?after=<id>&limit=(20, at most 100) -> {"object":"list",
        "data","first_id","last_id","has_more"}, newest first; each batch
        on the page is looked at.  No metadata filter (OpenAI has none):
        the caller finds its batch by reading metadata in the list.
    GET|POST /_batch_config  POST {"step_ms": N} (a number >= 0) sets the
        step; both answer {"step_ms": N}.  Bad body -> 400 param step_ms.

Batch object
    {"id":"batch_fake_<n>","object":"batch","endpoint","errors",
     "input_file_id","completion_window":"24h","status","output_file_id",
     "error_file_id","created_at","in_progress_at","expires_at",
     "finalizing_at","completed_at","failed_at","expired_at","cancelling_at",
     "cancelled_at","request_counts":{"total","completed","failed"},
     "metadata","usage"}.  Times are Unix seconds or null; expires_at =
    created_at + 86400.  errors is null unless the batch failed, then
    {"object":"list","data":[{"code","message","param":null,"line"}]}.
    request_counts: all 0 while validating and for a failed batch; else
    total = the number of requests, completed = answers with status 200,
    failed = the other answers.  usage is null until the batch ends, then
    {"input_tokens","input_tokens_details":{"cached_tokens"},
     "output_tokens","output_tokens_details":{"reasoning_tokens"},
     "total_tokens"} summed over the status 200 answers (chat: prompt and
    completion tokens; embeddings: prompt tokens, no output tokens).

Input file (uploaded with purpose "batch"; stored as is, no fine-tune check)
    Each non-blank line is a request {"custom_id": string, "method":
    "POST", "url": the batch's endpoint, "body": object}.  Lines are
    numbered as in the file (a blank line counts in the numbering, then is
    skipped).  A file that breaks a rule still makes a batch, as OpenAI
    does: it fails at the end of validating, errors.data holding each bad
    line once (its first fault, in this order), at most 100 of them:
        not JSON                                      invalid_json_line
        not an object; custom_id, method or url not a string, body not an
          object; method not "POST"                   invalid_request
        custom_id, method, url or body missing        missing_required_parameter
        url not the batch's endpoint                  invalid_url
        custom_id already on an earlier line          duplicate_custom_id
          (line: the repeat's)
    and, instead of those, for the whole file (line null): no request ->
    empty_file; more than 50,000 -> too_many_requests.
    A body is not checked here: a bad body is that request's 400 in the
    error file.  Requests may name different models (OpenAI wants one per
    batch), so one batch can mix the fault models.

Progression (a look: retrieve, list or cancel)
    s = the step (--batch-step-ms, or /_batch_config; the value in force at
    the look, for every batch); e = the time since the batch's creation.
        e < s validating;  e < 2s in_progress;  e < 3s finalizing;  then
        completed.
    A batch never goes back (a larger step does not undo a status).  With
    s = 0 a batch is completed at its first look; create always answers
    "validating".  Requests are answered in input order, at looks, never at
    create: in_progress, the first floor(total * (e - s) / s); finalizing
    and after, all of them.  in_progress_at = created_at + s,
    finalizing_at = created_at + 2s, completed_at = created_at + 3s (each
    at most the time of the look that saw it).

Answers
    Each request's body is answered by the code path of POST <endpoint>:
    its validation, then every model rule of fake_provider.py's header
    (echo, learn... and ft:... (fake_tuning.py's learning rule), judge,
    fail-<status>, flaky-<n>-... (the count shared with direct requests),
    nul, nochoices, auth, leak-...), with the Authorization header of the
    create request.  slow-<ms> and --latency-ms are ignored: nothing waits.
    Requests answered here are not counted in chat_requests, embedding_*,
    by_model or last_request (batch_lines counts them).  Each answer is one line:
        {"id":"batch_req_<n>","custom_id","response":{"status_code",
         "request_id": the answer's x-request-id,"body": the answer's JSON},
         "error":null}
    n counts answered requests, never reset.  A body that is not JSON
    (nonjson, truncated, leak-<offset>) is the JSON string of its text.
    Status 200 lines go to the output file, the others to the error file:
    purpose "batch_output", filenames <batch id>_output.jsonl and
    <batch id>_errors.jsonl, each created only when it gets a line
    (output_file_id / error_file_id stay null otherwise); read them with
    GET /v1/files/<id>/content.
    ORDER: each file lists its lines in REVERSE input order.  A client
    must join the answers to its requests by custom_id.

Batch faults, by the first request's body "model" (a file that fails
validation fails for that instead; that request is answered like any
unlisted model: echo)
    batch-fail         failed at the end of validating: errors.data [{"code":
                       "fake_failure","message":...,"param":null,"line":
                       null}], no files
    batch-expire-<k>   like a normal batch, but where it would finalize it
                       is "expired" (expired_at) with only the first <k>
                       requests (input order) answered: its files hold
                       those, the others are in neither file (unfinished
                       requests of an expired batch are left out)
    batch-stuck        stays in_progress, answering nothing, until cancelled

Cancel (POST /v1/batches/<id>/cancel, after a look)
    validating, in_progress or finalizing -> "cancelling" at once
    (cancelling_at); the requests answered so far are kept (none while
    validating, the in_progress share, all when finalizing) and no more are
    answered.  The first look at least one step later (any with s = 0)
    makes it "cancelled" (cancelled_at), with files of the kept answers; the
    others are in neither file.  A cancelling or cancelled batch is
    returned unchanged; a completed, failed or expired one -> 400 "Cannot
    cancel a batch with status '<status>'.".

Counters (in /_stats)
    batches_created (failed ones included, refused creates not); batch_lines
    (requests answered in batches); batch_requests (requests to
    /v1/batches..., refused ones and 404s included); batches (a gauge, never
    reset).  /_reset zeroes the first three; batches and their files live
    until the fake exits (in memory only).
"""
import json
import math
import re
import time

import fake_tuning

CHAT, EMBEDDINGS = "/v1/chat/completions", "/v1/embeddings"
ENDPOINTS = (CHAT, EMBEDDINGS)
WINDOW = "24h"
MAX_REQUESTS = 50_000
MAX_REPORTED_ERRORS = 100
EXPIRES_AFTER = 86400
BATCH_PATH = re.compile(r"/v1/batches/([^/]+)(/cancel)?")
EXPIRE = re.compile(r"batch-expire-(\d+)")
PHASES = ("validating", "in_progress", "finalizing", "completed")
PHASE_TIMES = (None, "in_progress_at", "finalizing_at", "completed_at")
TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at",
         "cancelling_at", "cancelled_at")
FINAL = ("completed", "failed", "expired", "cancelled")
# a line's fields: (name, type, "must be ..." wording)
LINE_FIELDS = (("custom_id", str, "a string"), ("method", str, "a string"),
               ("url", str, "a string"), ("body", dict, "a JSON object"))
NO_USAGE = (0, 0, 0, 0)  # input, cached, output, reasoning tokens


# ---------------------------------------------------------------- input file
def batch_error(code, message, line=None):
    return {"code": code, "message": message, "param": None, "line": line}


def line_fault(raw, endpoint):
    """(custom_id, None) for a valid request line, else (None, (code, message))."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, ("invalid_json_line", "This line is not parseable as valid JSON.")
    if not isinstance(obj, dict):
        return None, ("invalid_request", "Each line must be a JSON object.")
    for name, kind, wording in LINE_FIELDS:
        if name not in obj:
            return None, ("missing_required_parameter", f"Missing required parameter: '{name}'.")
        if not isinstance(obj[name], kind):
            return None, ("invalid_request", f"'{name}' must be {wording}.")
    if obj["method"] != "POST":
        return None, ("invalid_request", "Only the POST method is supported.")
    if obj["url"] != endpoint:
        return None, ("invalid_url",
                      "The URL provided for this request does not match the batch endpoint.")
    return obj["custom_id"], None


def read_input(data, endpoint):
    """([(custom_id, raw line)] of the valid requests, [errors]) of a batch input file."""
    numbered = list(fake_tuning.jsonl_lines(data))
    if not numbered:
        return [], [batch_error("empty_file", "The batch input file is empty.")]
    if len(numbered) > MAX_REQUESTS:
        return [], [batch_error("too_many_requests", f"The input file has {len(numbered)} "
                                f"requests; a batch holds at most {MAX_REQUESTS}.")]
    requests, errors, seen = [], [], set()
    for number, raw in numbered:
        custom_id, fault = line_fault(raw, endpoint)
        if fault is None and custom_id in seen:
            fault = ("duplicate_custom_id",
                     "The custom_id for this request is a duplicate of another request.")
        if fault is not None:
            errors.append(batch_error(*fault, line=number))
            continue
        seen.add(custom_id)
        requests.append((custom_id, raw))
    return requests, errors[:MAX_REPORTED_ERRORS]


def first_model(requests):
    """The first request's body "model" (it picks the batch's fault), or ""."""
    if not requests:
        return ""
    model = json.loads(requests[0][1])["body"].get("model")
    return model if isinstance(model, str) else ""


def metadata_ok(meta):
    return meta is None or isinstance(meta, dict) and len(meta) <= 16 and all(
        isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in meta.items())


# ---------------------------------------------------------------- answers
def header(response, name):
    return next((str(v) for k, v in response.headers if k.lower() == name), None)


def number_at(obj, *keys):
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj if type(obj) is int else 0


def usage_of(body):
    """(input, cached, output, reasoning) tokens of a chat or embeddings answer."""
    usage = body.get("usage") if isinstance(body, dict) else None
    return (number_at(usage, "prompt_tokens"),
            number_at(usage, "prompt_tokens_details", "cached_tokens"),
            number_at(usage, "completion_tokens"),
            number_at(usage, "completion_tokens_details", "reasoning_tokens"))


def output_line(fake, seq, custom_id, response):
    """(status 200?, the output line's bytes, usage) of one answered request."""
    try:
        body = json.loads(response.body)
    except (ValueError, RecursionError):  # keep a non-JSON answer visible, as text
        body = response.body.decode("utf-8", "replace")
    line = {"id": f"batch_req_{seq}", "custom_id": custom_id,
            "response": {"status_code": response.status,
                         "request_id": header(response, "x-request-id"), "body": body},
            "error": None}
    succeeded = response.status == 200
    return succeeded, fake.to_bytes(line), usage_of(body) if succeeded else NO_USAGE


# ---------------------------------------------------------------- one batch
class Batch:
    """One batch: its valid requests, its fault and what has been answered so far."""

    def __init__(self, n, req, requests, errors, authorization):
        self.id = f"batch_fake_{n}"
        self.req, self.requests, self.total = req, requests, len(requests)
        self.authorization = authorization
        self.started, self.created_wall = time.monotonic(), time.time()
        self.created_at = int(self.created_wall)
        self.status, self.phase, self.cancelling_since = "validating", 0, None
        self.times = dict.fromkeys(TIMES)
        self.answered = []  # (status 200?, output line bytes), in input order
        self.completed = self.failed = 0
        self.tokens = NO_USAGE
        self.output_file_id = self.error_file_id = None
        model = first_model(requests)
        if not errors and model == "batch-fail":
            errors = [batch_error("fake_failure", "The batch failed at the fake provider "
                                  "(first request's model \"batch-fail\").")]
        self.errors = errors or None
        self.stuck = model == "batch-stuck"
        expire = EXPIRE.fullmatch(model)
        self.expires = expire is not None
        # how many requests it will ever answer (cancel aside)
        self.limit = 0 if self.stuck else min(self.total, int(expire.group(1))) if expire \
            else self.total

    def record(self, succeeded, line, usage):
        self.answered.append((succeeded, line))
        self.completed += succeeded
        self.failed += not succeeded
        self.tokens = tuple(a + b for a, b in zip(self.tokens, usage))

    def usage(self):
        inputs, cached, outputs, reasoning = self.tokens
        return {"input_tokens": inputs, "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": outputs, "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": inputs + outputs}

    def public(self):
        counted = self.phase > 0 and self.status != "failed"
        times = self.times
        return {"id": self.id, "object": "batch", "endpoint": self.req["endpoint"],
                "errors": {"object": "list", "data": self.errors}
                if self.status == "failed" else None,
                "input_file_id": self.req["input_file_id"], "completion_window": WINDOW,
                "status": self.status, "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id, "created_at": self.created_at,
                "in_progress_at": times["in_progress_at"],
                "expires_at": self.created_at + EXPIRES_AFTER,
                **{key: times[key] for key in TIMES[1:]},
                "request_counts": {"total": self.total if counted else 0,
                                   "completed": self.completed, "failed": self.failed},
                "metadata": self.req.get("metadata"),
                "usage": self.usage() if self.status in FINAL else None}


# ---------------------------------------------------------------- all batches
class Batches:
    """The batches of one fake process, their step and counters."""

    def __init__(self, fake, provider, step_ms=0.0):
        self.fake, self.provider = fake, provider
        self.step_ms = step_ms
        self.batches = {}
        self.batch_seq = self.line_seq = 0
        self.reset()

    @property
    def step(self):
        return self.step_ms / 1000

    def reset(self):
        self.batches_created = self.batch_lines = self.batch_requests = 0

    def stats(self):
        return {"batches_created": self.batches_created, "batch_lines": self.batch_lines,
                "batch_requests": self.batch_requests, "batches": len(self.batches)}

    def request(self, method, path, query, headers, body):
        """The Response to /_batch_config or /v1/batches..., or None (the caller's 404)."""
        if path == "/_batch_config":
            return self.configure(method, body)
        self.batch_requests += 1
        if path == "/v1/batches":
            if method == "POST":
                return self.create(headers, body)
            return self.list_page(query) if method == "GET" else None
        m = BATCH_PATH.fullmatch(path)
        if not m or method != ("POST" if m.group(2) else "GET"):
            return None
        batch = self.batches.get(m.group(1))
        if batch is None:
            return self.fake.error_response(404, f"No batch found with id '{m.group(1)}'.",
                                            "invalid_request_error")
        self.look(batch)
        if m.group(2):
            return self.cancel(batch)
        return self.fake.json_response(200, batch.public())

    def configure(self, method, body):
        if method == "POST":
            try:
                config = json.loads(body)
            except (ValueError, RecursionError):
                return self.fake.invalid(self.fake.BAD_JSON)
            step = config.get("step_ms") if isinstance(config, dict) else None
            if type(step) not in (int, float) or not math.isfinite(step) or step < 0:
                return self.fake.invalid("'step_ms' must be a number >= 0.", "step_ms")
            self.step_ms = step
        elif method != "GET":
            return None
        return self.fake.json_response(200, {"step_ms": self.step_ms})

    # -- create
    def refusal(self, body):
        """(create request, None) or (None, the 400 that refuses it), checks in header order."""
        invalid = self.fake.invalid
        try:
            req = json.loads(body)
        except (ValueError, RecursionError):
            return None, invalid(self.fake.BAD_JSON)
        if not isinstance(req, dict):
            return None, invalid("The request body must be a JSON object.")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if key not in req:
                return None, invalid(f"Missing required parameter: '{key}'.", key,
                                     "missing_required_parameter")
            if not isinstance(req[key], str):
                return None, invalid(f"Invalid type for '{key}': expected a string.", key,
                                     "invalid_type")
        if req["endpoint"] not in ENDPOINTS:
            return None, invalid(f"Invalid value: '{req['endpoint']}'. Supported values are: "
                                 f"'{CHAT}' and '{EMBEDDINGS}'.", "endpoint", "invalid_value")
        if req["completion_window"] != WINDOW:
            return None, invalid(f"Invalid value: '{req['completion_window']}'. Supported "
                                 f"values are: '{WINDOW}'.", "completion_window",
                                 "invalid_value")
        if not metadata_ok(req.get("metadata")):
            return None, invalid("'metadata' must be an object of at most 16 string values.",
                                 "metadata")
        fid = req["input_file_id"]
        f = self.provider.tuning.files.get(fid)
        if f is None or f["purpose"] != "batch":
            why = "No such file." if f is None else \
                f"The file's purpose is '{f['purpose']}', not 'batch'."
            return None, invalid(f"Invalid 'input_file_id': '{fid}'. {why}", "input_file_id",
                                 "invalid_value")
        return req, None

    def create(self, headers, body):
        req, refused = self.refusal(body)
        if refused is not None:
            return refused
        data = self.provider.tuning.files[req["input_file_id"]]["data"]
        requests, errors = read_input(data, req["endpoint"])
        self.batch_seq += 1
        batch = Batch(self.batch_seq, req, requests, errors, headers.get("authorization"))
        self.batches[batch.id] = batch
        self.batches_created += 1
        return self.fake.json_response(200, batch.public())

    # -- progression
    def phase_at(self, elapsed):
        """0..3 (PHASES) reached after `elapsed` seconds at the current step."""
        return 3 if self.step <= 0 else min(3, int(elapsed // self.step))

    def moment(self, batch, phases):
        """Unix time at which `phases` steps had passed, never later than now."""
        return int(min(time.time(), batch.created_wall + phases * self.step))

    def look(self, batch):
        """Bring batch up to the time elapsed since its creation (the header's Progression)."""
        if batch.status in FINAL:
            return
        now = time.monotonic()
        if batch.cancelling_since is not None:
            if now - batch.cancelling_since >= self.step:
                self.end(batch, "cancelled", int(time.time()))
            return
        elapsed = now - batch.started
        phase = max(batch.phase, self.phase_at(elapsed))
        if batch.stuck:
            phase = min(phase, 1)
        if phase == 0:
            return
        if batch.errors is not None:
            return self.end(batch, "failed", self.moment(batch, 1))
        self.enter(batch, 1)
        if phase == 1:
            share = min(1.0, max(0.0, elapsed / self.step - 1)) if self.step > 0 else 1.0
            return self.answer(batch, min(batch.limit, int(batch.total * share)))
        self.answer(batch, batch.limit)
        if batch.expires:
            return self.end(batch, "expired", self.moment(batch, 2))
        self.enter(batch, 2)
        if phase == 3:
            self.end(batch, "completed", self.moment(batch, 3))

    def enter(self, batch, phase):
        if batch.phase < phase:
            batch.phase, batch.status = phase, PHASES[phase]
            batch.times[PHASE_TIMES[phase]] = self.moment(batch, phase)

    def end(self, batch, status, when):
        """A final status: its time, its files; the requests are let go (memory)."""
        batch.status, batch.times[f"{status}_at"] = status, when
        if status != "failed":
            self.write_files(batch)
        batch.requests = batch.answered = None

    def cancel(self, batch):
        if batch.status in ("completed", "failed", "expired"):
            return self.fake.invalid(f"Cannot cancel a batch with status '{batch.status}'.")
        if batch.status not in ("cancelling", "cancelled"):
            batch.status, batch.cancelling_since = "cancelling", time.monotonic()
            batch.times["cancelling_at"] = int(time.time())
        return self.fake.json_response(200, batch.public())

    # -- answers and files
    def respond(self, endpoint, headers, body):
        """The Response POST <endpoint> would give body, by the server's own code path."""
        if endpoint == EMBEDDINGS:
            req, inputs, error = self.fake.validate_embeddings(body)
            return self.provider.embeddings_response(req, inputs, error, headers)
        req, error = self.fake.validate_chat(body)
        return self.provider.chat_response(req, error, headers)

    def answer(self, batch, upto):
        """Answer batch's requests in input order until `upto` of them are answered."""
        headers = {"authorization": batch.authorization} if batch.authorization else {}
        for custom_id, raw in batch.requests[len(batch.answered):upto]:
            body = self.fake.to_bytes(json.loads(raw)["body"])
            response = self.respond(batch.req["endpoint"], headers, body)
            self.line_seq += 1
            batch.record(*output_line(self.fake, self.line_seq, custom_id, response))
            self.batch_lines += 1

    def write_files(self, batch):
        """The output and error files, lines in REVERSE input order (clients join on custom_id)."""
        for succeeded, suffix in ((True, "output"), (False, "errors")):
            lines = [line for ok, line in reversed(batch.answered) if ok is succeeded]
            if lines:
                f = self.provider.tuning.new_file(f"{batch.id}_{suffix}.jsonl", "batch_output",
                                                  b"\n".join(lines) + b"\n")
                setattr(batch, "output_file_id" if succeeded else "error_file_id", f["id"])

    # -- list
    def list_page(self, query):
        args, _ = fake_tuning.query_args(query)
        limit = args.get("limit", "")
        limit = min(100, max(1, int(limit))) if limit.isdigit() else 20
        batches = list(reversed(self.batches.values()))
        after = args.get("after")
        if after:
            ids = [b.id for b in batches]
            batches = batches[ids.index(after) + 1:] if after in ids else []
        page = batches[:limit]
        for batch in page:
            self.look(batch)
        data = [batch.public() for batch in page]
        return self.fake.json_response(200, {
            "object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(batches) > limit})


# ---------------------------------------------------------------- self-checks
# c is fake_selftest's FtClient (request, json, upload, post_json) on a fake
# started with a batch step of 0; checks that need a step set it and put it back.
def request_line(custom_id, model="echo", text=None, url=CHAT, **fields):
    if url == EMBEDDINGS:
        body = dict(fields, model=model, input=text or custom_id)
    else:
        body = dict(fields, model=model,
                    messages=[{"role": "user", "content": text or f"say {custom_id}"}])
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl_of(lines):
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines).encode()


def post(c, path, obj, auth=None):
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Bearer " + auth
    status, _, data = c.request("POST", path, json.dumps(obj), headers)
    return status, json.loads(data)


def create(c, lines, endpoint=CHAT, window=WINDOW, auth=None, **fields):
    """(status, body) of a batch created from a new upload of `lines`."""
    fid = c.upload("requests.jsonl", jsonl_of(lines), purpose="batch")[1]["id"]
    return post(c, "/v1/batches", dict(fields, input_file_id=fid, endpoint=endpoint,
                                       completion_window=window), auth)


def get(c, batch_id):
    return c.json("GET", f"/v1/batches/{batch_id}")


def file_lines(c, file_id):
    if file_id is None:
        return []
    data = c.request("GET", f"/v1/files/{file_id}/content")[2]
    return [json.loads(line) for line in data.splitlines()]


def outputs(c, batch):
    """(output lines, error lines) of a batch object."""
    return file_lines(c, batch["output_file_id"]), file_lines(c, batch["error_file_id"])


def joined(lines):
    return {line["custom_id"]: line["response"] for line in lines}


def content(response):
    return response["body"]["choices"][0]["message"]["content"]


def set_step(c, ms):
    return post(c, "/_batch_config", {"step_ms": ms})[1]


def wait_until(start, seconds):
    time.sleep(max(0.0, start + seconds - time.monotonic()))


def check_create_and_join(c):
    ids = ["b-10", "b-9", "b-2", "b-1"]
    before = c.json("GET", "/_stats")
    status, created = create(c, [request_line(i) for i in ids], metadata={"llmext_batch": "7"})
    done = get(c, created["id"])
    (out, errors), after = outputs(c, done), c.json("GET", "/_stats")
    out_file = c.json("GET", f"/v1/files/{done['output_file_id']}")
    answers = joined(out)
    first = answers["b-10"]
    return status == 200 and created["id"].startswith("batch_fake_") \
        and (created["status"], created["request_counts"], created["usage"]) == \
        ("validating", {"total": 0, "completed": 0, "failed": 0}, None) \
        and (done["status"], done["request_counts"], done["error_file_id"], errors) == \
        ("completed", {"total": 4, "completed": 4, "failed": 0}, None, []) \
        and done["metadata"] == {"llmext_batch": "7"} and done["errors"] is None \
        and all(done[k] for k in ("in_progress_at", "finalizing_at", "completed_at")) \
        and [line["custom_id"] for line in out] == ids[::-1] \
        and all(content(answers[i]) == f"echo: say {i}" for i in ids) \
        and first["status_code"] == 200 and first["request_id"].startswith("req_fake_") \
        and first["request_id"][9:] == first["body"]["id"][14:] \
        and all(line["id"].startswith("batch_req_") and line["error"] is None for line in out) \
        and done["usage"]["input_tokens"] == 4 * 6 and done["usage"]["output_tokens"] == 4 * 3 \
        and done["usage"]["total_tokens"] == 36 \
        and (out_file["purpose"], out_file["filename"]) == ("batch_output",
                                                            done["id"] + "_output.jsonl") \
        and after["batches_created"] - before["batches_created"] == 1 \
        and after["batch_lines"] - before["batch_lines"] == 4 \
        and after["chat_requests"] == before["chat_requests"]


def check_progression(c):
    step = 0.5
    set_step(c, step * 1000)
    try:
        start = time.monotonic()
        batch = create(c, [request_line(f"p-{i}") for i in range(10)])[1]
        seen = [get(c, batch["id"])]
        for at in (1.5, 2.5, 3.3):
            wait_until(start, at * step)
            seen.append(get(c, batch["id"]))
    finally:
        set_step(c, 0)
    statuses = [b["status"] for b in seen]
    answered = [b["request_counts"]["completed"] for b in seen]
    return statuses == ["validating", "in_progress", "finalizing", "completed"] \
        and answered[0] == 0 and 0 < answered[1] < 10 and answered[2:] == [10, 10] \
        and seen[1]["request_counts"]["total"] == 10 and seen[1]["output_file_id"] is None \
        and seen[3]["in_progress_at"] <= seen[3]["finalizing_at"] <= seen[3]["completed_at"] \
        and len(file_lines(c, seen[3]["output_file_id"])) == 10


def check_line_faults(c):
    lines = [request_line("ok-1"), request_line("boom", "fail-500"),
             request_line("fl-1", "flaky-1-batchcheck"), request_line("fl-2", "flaky-1-batchcheck"),
             request_line("html", "nonjson"), request_line("nap", "slow-5000"),
             request_line("key", "auth"), request_line("nomsg", messages=None)]
    lines[-1]["body"].pop("messages")
    start = time.monotonic()
    batch = get(c, create(c, lines, auth="sk-good")[1]["id"])
    elapsed = time.monotonic() - start
    out, errors = outputs(c, batch)
    good, bad = joined(out), joined(errors)
    unauthorized = outputs(c, get(c, create(c, [request_line("k", "auth")])[1]["id"]))[1]
    return batch["status"] == "completed" and elapsed < 2 \
        and batch["request_counts"] == {"total": 8, "completed": 5, "failed": 3} \
        and sorted(good) == ["fl-2", "html", "key", "nap", "ok-1"] \
        and sorted(bad) == ["boom", "fl-1", "nomsg"] \
        and (bad["boom"]["status_code"], bad["boom"]["body"]["error"]["type"]) == \
        (500, "server_error") and bad["boom"]["request_id"].startswith("req_fake_") \
        and bad["fl-1"]["status_code"] == 503 and content(good["fl-2"]) == "echo: say fl-2" \
        and bad["nomsg"]["status_code"] == 400 \
        and bad["nomsg"]["body"]["error"]["param"] == "messages" \
        and good["html"]["body"] == "<html><body>502 Bad Gateway</body></html>" \
        and content(good["nap"]) == "echo: say nap" \
        and [line["response"]["status_code"] for line in unauthorized] == [401]


def check_embeddings(c):
    lines = [request_line("e-1", "emb", "red apples", url=EMBEDDINGS),
             request_line("e-2", "emb", "green pears", url=EMBEDDINGS, dimensions=4)]
    batch = get(c, create(c, lines, endpoint=EMBEDDINGS)[1]["id"])
    answers = joined(outputs(c, batch)[0])
    return batch["status"] == "completed" \
        and len(answers["e-1"]["body"]["data"][0]["embedding"]) == 32 \
        and len(answers["e-2"]["body"]["data"][0]["embedding"]) == 4 \
        and batch["usage"]["input_tokens"] == 4 and batch["usage"]["output_tokens"] == 0


def check_refusals(c):
    """Refused creates: (status, type, param) of each, and nothing created."""
    good, before = [request_line("r-1")], c.json("GET", "/_stats")["batches_created"]
    tuning_file = c.upload("t.jsonl", b'{"prompt":"a","completion":"b"}\n')[1]["id"]
    by_id = lambda fid: post(c, "/v1/batches", {  # noqa: E731
        "input_file_id": fid, "endpoint": CHAT, "completion_window": WINDOW})
    results = [create(c, good, window="48h"), create(c, good, endpoint="/v1/completions"),
               by_id("file-nope"), by_id(tuning_file), by_id(None),
               post(c, "/v1/batches", {"endpoint": CHAT, "completion_window": WINDOW}),
               create(c, good, metadata={"k": 1})]
    return [(s, e["error"]["type"], e["error"]["param"]) for s, e in results] == [
        (400, "invalid_request_error", p) for p in (
            "completion_window", "endpoint", "input_file_id", "input_file_id",
            "input_file_id", "input_file_id", "metadata")] \
        and c.request("POST", "/v1/batches", "{nope")[0] == 400 \
        and c.json("GET", "/_stats")["batches_created"] == before


def check_invalid_files(c):
    def failure(lines, endpoint=CHAT):
        status, created = create(c, lines, endpoint=endpoint)
        batch = get(c, created["id"])
        assert status == 200 and batch["status"] == "failed" and batch["failed_at"]
        assert batch["output_file_id"] is None is batch["error_file_id"]
        return [(e["code"], e["line"]) for e in batch["errors"]["data"]]
    duplicate = failure([request_line("d-1"), "", request_line("d-2"), request_line("d-1")])
    wrong_url = request_line("u-1", url=EMBEDDINGS)
    mixed = failure([request_line("m-1"), "{nope", wrong_url, {"custom_id": "m-4"},
                     dict(request_line("m-5"), method="GET"), "[1]"])
    return duplicate == [("duplicate_custom_id", 4)] \
        and mixed == [("invalid_json_line", 2), ("invalid_url", 3),
                      ("missing_required_parameter", 4), ("invalid_request", 5),
                      ("invalid_request", 6)] \
        and failure([]) == [("empty_file", None)] \
        and failure(["{}"] * (MAX_REQUESTS + 1)) == [("too_many_requests", None)]


def check_batch_fail_and_expire(c):
    failed = get(c, create(c, [request_line("f-1", "batch-fail"), request_line("f-2")])[1]["id"])
    lines = [request_line("x-1", "batch-expire-1"), request_line("x-2"), request_line("x-3")]
    expired = get(c, create(c, lines)[1]["id"])
    out, errors = outputs(c, expired)
    return (failed["status"], failed["errors"]["data"][0]["code"],
            failed["errors"]["data"][0]["line"], failed["output_file_id"],
            failed["request_counts"]["total"]) == ("failed", "fake_failure", None, None, 0) \
        and (expired["status"], expired["request_counts"]) == \
        ("expired", {"total": 3, "completed": 1, "failed": 0}) \
        and expired["expired_at"] and expired["completed_at"] is None \
        and [line["custom_id"] for line in out] == ["x-1"] and errors == [] \
        and content(out[0]["response"]) == "echo: say x-1"


def check_cancel_stuck(c):
    batch = create(c, [request_line("s-1", "batch-stuck"), request_line("s-2")])[1]
    seen = [get(c, batch["id"])["status"] for _ in range(3)]
    cancelling = post(c, f"/v1/batches/{batch['id']}/cancel", {})
    cancelled = get(c, batch["id"])
    again = post(c, f"/v1/batches/{batch['id']}/cancel", {})
    done = get(c, create(c, [request_line("c-1")])[1]["id"])
    late = post(c, f"/v1/batches/{done['id']}/cancel", {})
    return seen == ["in_progress"] * 3 \
        and (cancelling[0], cancelling[1]["status"]) == (200, "cancelling") \
        and cancelling[1]["cancelling_at"] and cancelled["status"] == "cancelled" \
        and cancelled["cancelled_at"] and cancelled["request_counts"]["completed"] == 0 \
        and cancelled["output_file_id"] is None and again[1]["status"] == "cancelled" \
        and late[0] == 400 \
        and late[1]["error"]["message"] == "Cannot cancel a batch with status 'completed'."


def check_cancel_share(c):
    """Cancelled mid in_progress: the first requests answered by then, and no others."""
    step = 0.5
    set_step(c, step * 1000)
    try:
        start = time.monotonic()
        batch = create(c, [request_line(f"h-{i:02d}") for i in range(20)])[1]
        wait_until(start, 1.5 * step)
        cancelling = post(c, f"/v1/batches/{batch['id']}/cancel", {})[1]
        right_after = get(c, batch["id"])
        wait_until(start, 2.7 * step)
        cancelled = get(c, batch["id"])
    finally:
        set_step(c, 0)
    kept = cancelling["request_counts"]["completed"]
    out = outputs(c, cancelled)[0]
    return cancelling["status"] == right_after["status"] == "cancelling" \
        and cancelled["status"] == "cancelled" and 0 < kept < 20 \
        and cancelled["request_counts"]["completed"] == kept \
        and sorted(line["custom_id"] for line in out) == [f"h-{i:02d}" for i in range(kept)]


def check_list_and_404s(c):
    made = [create(c, [request_line("l-1")], metadata={"llmext_batch": str(i)})[1]
            for i in range(3)]
    first = c.json("GET", "/v1/batches?limit=2")
    rest = c.json("GET", f"/v1/batches?limit=2&after={first['last_id']}")
    missing = c.request("GET", "/v1/batches/batch_fake_nope")
    missing_cancel = c.request("POST", "/v1/batches/batch_fake_nope/cancel", "{}")
    wrong_method = c.request("DELETE", f"/v1/batches/{made[0]['id']}")[0]
    body = json.loads(missing[2])
    return [b["id"] for b in first["data"]] == [made[2]["id"], made[1]["id"]] \
        and first["has_more"] and first["object"] == "list" \
        and (first["first_id"], first["last_id"]) == (made[2]["id"], made[1]["id"]) \
        and rest["data"][0]["id"] == made[0]["id"] \
        and [b["metadata"]["llmext_batch"] for b in first["data"]] == ["2", "1"] \
        and all(b["status"] == "completed" for b in first["data"]) \
        and missing[0] == 404 and list(body) == ["error"] \
        and body["error"]["message"] == "No batch found with id 'batch_fake_nope'." \
        and missing_cancel[0] == 404 and wrong_method == 404


def check_config_and_counters(c):
    shown = c.json("GET", "/_batch_config")
    bad = post(c, "/_batch_config", {"step_ms": -1})
    c.request("POST", "/_reset")
    create(c, [request_line("k-1"), request_line("k-2")])
    c.json("GET", "/v1/batches")
    c.request("GET", "/v1/batches/batch_fake_nope")
    s = c.json("GET", "/_stats")
    c.request("POST", "/_reset")
    zero = c.json("GET", "/_stats")
    return shown == {"step_ms": 0} and (bad[0], bad[1]["error"]["param"]) == (400, "step_ms") \
        and (s["batches_created"], s["batch_lines"], s["batch_requests"]) == (1, 2, 3) \
        and (zero["batches_created"], zero["batch_lines"], zero["batch_requests"]) == (0, 0, 0) \
        and zero["batches"] == s["batches"] > 0


def check_fifty_thousand(c):
    lines = [request_line(f"q{i}", text=f"question {i}") for i in range(MAX_REQUESTS)]
    start = time.monotonic()
    batch = get(c, create(c, lines)[1]["id"])
    out = file_lines(c, batch["output_file_id"])
    elapsed = time.monotonic() - start
    return batch["request_counts"]["completed"] == MAX_REQUESTS and len(out) == MAX_REQUESTS \
        and content(joined(out)["q123"]) == "echo: question 123" and elapsed < 15


def self_checks(c):
    return [
        ("batches: create from an upload, output joined by custom_id",
         lambda: check_create_and_join(c)),
        ("batches: validating -> in_progress -> finalizing -> completed with a step",
         lambda: check_progression(c)),
        ("batches: fail-500, flaky, nonjson, slow, auth, bad body lines",
         lambda: check_line_faults(c)),
        ("batches: /v1/embeddings", lambda: check_embeddings(c)),
        ("batches: refused creates (window, endpoint, file, metadata)", lambda: check_refusals(c)),
        ("batches: invalid input files fail the batch", lambda: check_invalid_files(c)),
        ("batches: batch-fail, batch-expire-1", lambda: check_batch_fail_and_expire(c)),
        ("batches: cancel of a stuck batch, cancel of a completed one",
         lambda: check_cancel_stuck(c)),
        ("batches: cancel mid in_progress keeps the answered share", lambda: check_cancel_share(c)),
        ("batches: list, paging, metadata, 404s", lambda: check_list_and_404s(c)),
        ("batches: /_batch_config, counters, /_reset", lambda: check_config_and_counters(c)),
        ("batches: 50,000 requests", lambda: check_fifty_thousand(c)),
    ]
