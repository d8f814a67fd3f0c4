"""The fake provider's self-test: python3 test/fake_provider.py --self-test.

fake is the fake_provider module.  self_test(fake) serves a fake.Provider
(--api-key sk-good) on a free port in a thread, runs self_checks(fake, c) in
order with c an FtClient on it, prints "ok  <name>" or "FAIL <name>" for each
and then "N passed, M failed", and returns 0 only when none failed.
fake_anthropic.py and fake_batches.py keep their own checks (their
self_checks(c)), run after these.  fake_provider.main imports this module
only for --self-test, so neither imports the other when it loads.
"""
import asyncio
import http.client
import json
import math
import queue
import socket
import threading
import time
from urllib.parse import quote

import fake_anthropic
import fake_batches
import fake_tuning


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


def check_embeddings(fake, c):
    c.json("POST", "/_reset")
    status, answer = embed(c, "emb", ["The cat sat", "the CAT sat!", "cat sat on a mat",
                                      "stock prices fell sharply"])
    vectors = [d["embedding"] for d in answer["data"]]
    norms = [math.sqrt(sum(x * x for x in v)) for v in vectors]
    stats = c.json("GET", "/_stats")
    return status == 200 and [d["index"] for d in answer["data"]] == [0, 1, 2, 3] \
        and len(vectors[0]) == fake.EMBED_DIMENSIONS and all(abs(n - 1) < 1e-4 for n in norms) \
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


def check_expect_continue(fake, c):
    sock, head, body = c.raw("echo", "Expect: 100-continue\r\nConnection: close\r\n")
    sock.sendall(head)
    interim = sock.recv(len(fake.CONTINUE))
    sock.sendall(body)
    return interim == fake.CONTINUE and read_all(sock).startswith(b"HTTP/1.1 200 OK\r\n")


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
                                      {"Content-Type": "application/json"})
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


def check_step_time(fake):
    t = fake_tuning.Tuning(fake, step_ms=30)
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


def self_checks(fake, c):
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
        ("fail-<status>", lambda: all(error(f"fail-{s}")[0] == s for s in fake.FAILS)),
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
        ("Expect: 100-continue", lambda: check_expect_continue(fake, c)),
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
        ("jobs: --finetune-step-ms", lambda: check_step_time(fake)),
        ("learning: tuned and few-shot answers", lambda: check_learning(c)),
        ("learning: temperature, seed, flips", lambda: check_flips(c)),
        ("learning: more examples, more consistent", lambda: check_consistency(c)),
        ("counters: files, jobs, bytes", lambda: check_tuning_counters(c)),
        ("embeddings: vectors, nearness, usage, counters", lambda: check_embeddings(fake, c)),
        ("embeddings: validation and faults", lambda: check_embedding_faults(c)),
    ] + fake_anthropic.self_checks(c) + fake_batches.self_checks(c)


def self_test(fake):
    provider = fake.Provider(latency_ms=0, api_key="sk-good")
    started = queue.Queue()
    thread = threading.Thread(target=asyncio.run, daemon=True, args=(
        fake.serve(provider, "127.0.0.1", 0, lambda port, stop: started.put((port, stop))),))
    thread.start()
    port, stop = started.get(timeout=10)
    passed = failed = 0
    for name, check in self_checks(fake, FtClient(port)):
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
