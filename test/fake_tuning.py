"""The fake provider's files, fine-tuning jobs and learning rule.

/v1/files..., /v1/fine_tuning/jobs... and the answers of the chat models
"learn<any>" and "ft:<...>".  fake is the fake_provider module (its helpers:
Response, json_response, error_response, fail_response, invalid, text_of,
last_user_text, FAILS, BAD_JSON).  Tuning is one Provider's store
(provider.tuning); the Provider answers the learn/ft models with
few_shot_pairs, Tuning.tuned and nearest (its learned_answer draws rule 3's
coin), and judge with word_set and overlap.  fake_batches.py keeps its
files in this store.  fake_provider.py's header points here (section
"Files, fine-tuning and the learning rule") and documents the error shape.

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
    is the OpenAI shape (fake_provider.py's header).

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

Counters (in /_stats)
    files_uploaded  files stored by POST /v1/files
    upload_requests POST /v1/files requests, refused ones included
    upload_bytes    their body bytes
    jobs_created    fine-tuning jobs created (a "lost" create counts: the job
                    exists), never the refused ones: a test proves that a paid
                    job is created once
    job_create_requests  POST /v1/fine_tuning/jobs requests, refused included
    cancel_requests POSTs to .../cancel of an existing job
    files, jobs     files stored and jobs existing now (gauges; never reset)
/_reset zeroes all but the gauges (and forgets the flaky-<n> upload counts);
files, jobs and tuned models live until the fake exits (in memory only).
"""
import json
import math
import re
import time
from fractions import Fraction
from urllib.parse import parse_qsl, unquote


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


def few_shot_pairs(fake, messages):
    """(user, assistant) pairs before the last user message, as Examples."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
    return [Example(fake.text_of(messages[i].get("content")),
                    fake.text_of(messages[i + 1].get("content")))
            for i in range(last - 1) if messages[i]["role"] == "user"
            and messages[i + 1]["role"] == "assistant"]


def example_of_line(fake, obj):
    """The Example of one training line (chat, DPO or legacy prompt/completion)."""
    if "messages" in obj:
        msgs = obj["messages"]
        return Example(fake.last_user_text(msgs[:-1]), fake.text_of(msgs[-1].get("content")))
    if "input" in obj:
        return Example(fake.last_user_text(obj["input"]["messages"]),
                       fake.text_of(obj["preferred_completion"][0].get("content")))
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


def training_examples(fake, data):
    return [example_of_line(fake, json.loads(line)) for _, line in jsonl_lines(data)]


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

    def __init__(self, fake, n, req, training, validation, now):
        self.fake = fake
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
            self.examples = training_examples(self.fake, self.training["data"])
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
                held = training_examples(self.fake, self.validation["data"])
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

    def __init__(self, fake, step_ms=0.0):
        self.fake = fake
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
            return self.fake.invalid(str(exc))
        filename, data = fields.get("file", (None, None))
        if data is None or filename is None:
            return self.fake.invalid("Missing required parameter: 'file'.", "file",
                                     "missing_required_parameter")
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace").strip()
        if purpose not in PURPOSES:
            return self.fake.invalid(f"Invalid value for 'purpose': {purpose!r}.", "purpose")
        faults = filename + " " + headers.get("x-fake-fault", "")
        if "reject" in faults:
            return self.fake.invalid("upload rejected", "file", "upload_rejected")
        if (m := FILE_FAIL.search(faults)) and int(m.group(1)) in self.fake.FAILS:
            return self.fake.fail_response(int(m.group(1)), "files")
        if m := FILE_FLAKY.search(filename):
            seen = self.flaky.get(filename, 0)
            self.flaky[filename] = seen + 1
            if seen < int(m.group(1)):
                return self.fake.fail_response(503, "files", retry_secs=0, retry_ms=10)
        examples = tokens = None
        if purpose == "fine-tune":
            try:
                examples, tokens = scan_training_file(data)
            except (ValueError, UnicodeDecodeError) as exc:
                return self.fake.invalid(f"Invalid file format for fine-tuning: {exc}.",
                                         "file", "invalid_file_format")
        f = self.new_file(filename, purpose, data, examples)
        f["tokens"] = tokens
        self.files_uploaded += 1
        return self.fake.json_response(200, self.public_file(f))

    def file_request(self, method, path, query):
        if path == "/v1/files":
            if method != "GET":
                return None
            args, _ = query_args(query)
            files = sorted(self.files.values(), key=lambda f: f["id"],
                           reverse=args.get("order", "desc") != "asc")
            files = [f for f in files if args.get("purpose") in (None, "", f["purpose"])]
            data, more = page([self.public_file(f) for f in files], args, 10000)
            return self.fake.json_response(200, {"object": "list", "data": data,
                                                 "first_id": data[0]["id"] if data else None,
                                                 "last_id": data[-1]["id"] if data else None,
                                                 "has_more": more})
        m = FILE_PATH.fullmatch(path)
        if not m or (method, bool(m.group(2))) not in (("GET", False), ("GET", True),
                                                       ("DELETE", False)):
            return None
        f = self.files.get(m.group(1))
        if f is None:
            return self.fake.error_response(404, f"No such File object: {m.group(1)}",
                                            "invalid_request_error", "id")
        if method == "DELETE":
            del self.files[f["id"]]
            return self.fake.json_response(200, {"id": f["id"], "object": "file",
                                                 "deleted": True})
        if m.group(2):
            return self.fake.Response(200, f["data"], "application/octet-stream")
        return self.fake.json_response(200, self.public_file(f))

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
            return self.fake.invalid(self.fake.BAD_JSON)
        if not isinstance(req, dict):
            return self.fake.invalid("The request body must be a JSON object.")
        if not isinstance(req.get("model"), str) or not req["model"]:
            return self.fake.invalid("Missing required parameter: 'model'.", "model",
                                     "missing_required_parameter")
        files = {}
        for key in ("training_file", "validation_file"):
            fid = req.get(key)
            if fid is None and key == "validation_file":
                continue
            f = self.files.get(fid) if isinstance(fid, str) else None
            if f is None or f["purpose"] != "fine-tune":
                return self.fake.invalid(f"invalid {key}: {fid}", key, "invalid_file")
            files[key] = f
        suffix, seed, meta = req.get("suffix"), req.get("seed"), req.get("metadata")
        if suffix is not None and not (isinstance(suffix, str) and 1 <= len(suffix) <= 64):
            return self.fake.invalid("'suffix' must be a string of 1 to 64 characters.",
                                     "suffix")
        if seed is not None and not (type(seed) is int and 0 <= seed <= 2147483647):
            return self.fake.invalid("'seed' must be an integer from 0 to 2147483647.", "seed")
        if meta is not None and not (isinstance(meta, dict) and len(meta) <= 16 and all(
                isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in meta.items())):
            return self.fake.invalid(
                "'metadata' must be an object of at most 16 string values.", "metadata")
        epochs = n_epochs_of(req)
        if epochs != "auto" and not (type(epochs) is int and 1 <= epochs <= 50):
            return self.fake.invalid("'n_epochs' must be \"auto\" or an integer from 1 to 50.",
                                     "hyperparameters.n_epochs")
        triggers = req["model"] + " " + (suffix or "")
        if (m := CREATE_FAIL.search(triggers)) and int(m.group(1)) in self.fake.FAILS:
            return self.fake.fail_response(int(m.group(1)), req["model"])
        self.job_seq += 1
        job = Job(self.fake, self.job_seq, req, files["training_file"],
                  files.get("validation_file"), int(time.time()))
        job.started, job.ticks = time.monotonic(), 0
        self.jobs[job.id] = job
        self.jobs_created += 1
        self.event(job, f"Created fine-tuning job: {job.id}")
        self.event(job, f"Validating training file: {req['training_file']}"
                   + (f" and validation file: {req['validation_file']}"
                      if req.get("validation_file") else ""))
        if "lost" in triggers:
            return self.fake.fail_response(500, req["model"])
        return self.fake.json_response(200, job.public())

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
            return self.fake.json_response(200, {"object": "list", "data": data,
                                                 "has_more": more})
        m = JOB_PATH.fullmatch(path)
        action = m.group(2) if m else None
        if not m or method != ("POST" if action == "cancel" else "GET"):
            return None
        job = self.jobs.get(m.group(1))
        if job is None:
            return self.fake.error_response(404, f"Could not find fine-tuning job: {m.group(1)}",
                                            "invalid_request_error", "id", "not_found")
        self.catch_up(job)
        if action is None:
            if self.step <= 0:
                self.advance(job)
            return self.fake.json_response(200, job.public())
        if action == "cancel":
            self.cancel_requests += 1
            if job.status in ("succeeded", "failed"):
                return self.fake.invalid(
                    f"Cannot cancel a job that has already {job.status}.", "id")
            if job.status != "cancelled":
                self.finish(job, "cancelled")
                self.event(job, "Fine-tuning job cancelled")
            return self.fake.json_response(200, job.public())
        args, _ = query_args(query)
        items = list(reversed(job.events if action == "events" else job.checkpoints))
        data, more = page(items, args, 20 if action == "events" else 10)
        out = {"object": "list", "data": data, "has_more": more}
        if action == "checkpoints":
            out.update(first_id=data[0]["id"] if data else None,
                       last_id=data[-1]["id"] if data else None)
        return self.fake.json_response(200, out)

    def tuned(self, model):
        """The job whose fine-tuned model (or checkpoint) is `model`, after catching up."""
        for job in self.jobs.values():
            if job.status not in FINAL:
                self.catch_up(job)
        return self.models.get(model)
