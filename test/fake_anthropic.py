"""The fake provider's Anthropic Messages API (POST /v1/messages).

fake is the fake_provider module (its helpers: Response, json_response,
to_bytes, words, text_of, last_user_text, schema_instance, FAIL, FLAKY),
provider its Provider (api_key, flaky counts).

Imported by fake_provider.py, whose header documents the rules (section
"Anthropic"); this module only implements them and their self-checks.
"""
import json
import re

ANTHROPIC_VERSION = "2023-06-01"
CACHE = re.compile(r"cache-(\d+)-(\d+)")

# status -> (message, Anthropic error type); {model} and {key} are filled in
ERRORS = {
    400: ("temperature: range: 0..1", "invalid_request_error"),
    401: ("invalid x-api-key: {key}", "authentication_error"),
    403: ("Your API key does not have permission to use the specified resource.",
          "permission_error"),
    404: ("model: {model}", "not_found_error"),
    408: ("Request timed out.", "timeout_error"),
    409: ("The request conflicts with another request in progress.", "invalid_request_error"),
    413: ("Request exceeds the maximum allowed number of bytes.", "request_too_large"),
    422: ("The request could not be processed.", "invalid_request_error"),
    429: ("Number of request tokens has exceeded your per-minute rate limit", "rate_limit_error"),
    500: ("Internal server error", "api_error"),
    502: ("Bad gateway.", "api_error"),
    503: ("Service unavailable.", "api_error"),
    504: ("Gateway timeout.", "timeout_error"),
    529: ("Overloaded", "overloaded_error"),
}


def error(fake, status, message, etype, n, headers=()):
    body = {"type": "error", "error": {"type": etype, "message": message},
            "request_id": f"req_fake_{n}"}
    return fake.json_response(status, body, list(headers))


def fail(fake, status, model, key, n, retry_secs=1):
    message, etype = ERRORS[status]
    headers = [("retry-after", retry_secs)] if status in (429, 503, 529) else []
    return error(fake, status, message.format(model=model, key=key), etype, n, headers)


def validate(fake, body, n):
    """(request dict or None, error Response or None)."""
    invalid = lambda m: (None, error(fake, 400, m, "invalid_request_error", n))  # noqa: E731
    try:
        req = json.loads(body)
    except (ValueError, RecursionError):
        return invalid("There was an issue with your request: the body is not valid JSON.")
    if not isinstance(req, dict):
        return invalid("The request body must be a JSON object.")
    if not isinstance(req.get("model"), str) or not req["model"]:
        return invalid("model: Field required")
    if type(req.get("max_tokens")) is not int or req["max_tokens"] < 1:
        return invalid("max_tokens: Field required (a whole number of at least 1)")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        return invalid("messages: at least one message is required")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
    system = req.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return invalid("system: Input should be a valid string or list of text blocks")
    if "stop" in req or "max_completion_tokens" in req or "response_format" in req:
        key = next(k for k in ("stop", "max_completion_tokens", "response_format") if k in req)
        return invalid(f"{key}: Extra inputs are not permitted")
    return req, None


def forced_tool(req):
    """The tool that tool_choice forces, from req's tools, or None."""
    choice, tools = req.get("tool_choice"), req.get("tools")
    if not isinstance(choice, dict) or choice.get("type") != "tool" or not isinstance(tools, list):
        return None
    return next((t for t in tools if isinstance(t, dict) and t.get("name") == choice.get("name")),
                None)


def answer(fake, provider, n, req, headers):
    model = req["model"]
    if m := fake.FAIL.fullmatch(model):
        status = int(m.group(1))
        if status in ERRORS and m.group(2) is None:
            return fail(fake, status, model, headers.get("x-api-key", "none"), n)
    if m := fake.FLAKY.fullmatch(model):
        seen = provider.flaky.get(model, 0)
        provider.flaky[model] = seen + 1
        if seen < int(m.group(1)):
            return fail(fake, 529, model, "none", n, retry_secs=0)
    if model == "nonjson":
        return fake.Response(200, b"<html><body>502 Bad Gateway</body></html>", "text/html")

    user = fake.last_user_text(req["messages"])
    tool = forced_tool(req)
    stop_reason, stop_sequence = "end_turn", None
    if tool is not None:
        schema = tool.get("input_schema")
        content = [{"type": "tool_use", "id": f"toolu_fake_{n}", "name": tool["name"],
                    "input": fake.schema_instance(schema, user, schema)}]
        stop_reason, output_tokens = "tool_use", fake.words(json.dumps(content[0]["input"]))
    else:
        text = "echo: " + user
        for seq in req.get("stop_sequences") or []:
            if isinstance(seq, str) and seq and seq in text:
                text, stop_reason, stop_sequence = text[:text.index(seq)], "stop_sequence", seq
                break
        if fake.words(text) > req["max_tokens"]:
            text, stop_reason = " ".join(text.split()[:req["max_tokens"]]), "max_tokens"
        content, output_tokens = [{"type": "text", "text": text}], fake.words(text)
    system = req.get("system")
    prompt = sum(4 + fake.words(fake.text_of(m.get("content"))) for m in req["messages"])
    prompt += fake.words(fake.text_of(system)) if system is not None else 0
    read = write = 0
    if m := CACHE.fullmatch(model):
        read, write = int(m.group(1)), int(m.group(2))
    body = {"id": f"msg_fake_{n}", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": prompt, "output_tokens": output_tokens,
                      "cache_read_input_tokens": read, "cache_creation_input_tokens": write}}
    if model == "truncated":
        full = fake.to_bytes(body)
        return fake.Response(200, full[:len(full) // 2])
    return fake.json_response(200, body)


def messages(fake, provider, headers, body, n):
    """(request dict or None, Response) for POST /v1/messages."""
    key = headers.get("x-api-key")
    if headers.get("anthropic-version") is None:
        return None, error(fake, 400, "anthropic-version: header is required",
                           "invalid_request_error", n)
    if key is None:
        return None, error(fake, 401, "x-api-key header is required", "authentication_error", n)
    if provider.api_key is not None and key != provider.api_key:
        return None, error(fake, 401, "invalid x-api-key", "authentication_error", n)
    req, response = validate(fake, body, n)
    if response is None:
        response = answer(fake, provider, n, req, headers)
    return req, response


# ---------------------------------------------------------------- self-checks
def post(c, model, text="hello world", key="sk-good", version=ANTHROPIC_VERSION, **fields):
    body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 100}
    body.update(fields)
    headers = {}
    if key is not None:
        headers["x-api-key"] = key
    if version is not None:
        headers["anthropic-version"] = version
    status, head, data = c.request("POST", "/v1/messages", json.dumps(body), headers)
    return status, head, json.loads(data) if data.startswith(b"{") and data.endswith(b"}") else data


def check_messages(c):
    status, head, body = post(c, "claude", system="Be brief.")
    return status == 200 and head["request-id"].startswith("req_fake_") \
        and "x-request-id" not in head and body["id"].startswith("msg_fake_") \
        and body["content"] == [{"type": "text", "text": "echo: hello world"}] \
        and (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None) \
        and body["usage"] == {"input_tokens": 8, "output_tokens": 3,
                              "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def check_limits(c):
    cut = post(c, "claude", text="one two three four", max_tokens=2)[2]
    stop = post(c, "claude", text="one two three", stop_sequences=["two"])[2]
    cache = post(c, "cache-30-20")[2]["usage"]
    return (cut["content"][0]["text"], cut["stop_reason"]) == ("echo: one", "max_tokens") \
        and (stop["content"][0]["text"], stop["stop_reason"], stop["stop_sequence"]) \
        == ("echo: one ", "stop_sequence", "two") \
        and (cache["cache_read_input_tokens"], cache["cache_creation_input_tokens"]) == (30, 20)


def check_tool(c):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    body = post(c, "claude", text="Paris", tools=[{"name": "respond", "input_schema": schema}],
                tool_choice={"type": "tool", "name": "respond"})[2]
    block = body["content"][0]
    return body["stop_reason"] == "tool_use" and block["type"] == "tool_use" \
        and (block["name"], block["input"]) == ("respond", {"city": "Paris"})


def check_errors(c):
    def err(result):
        status, head, body = result
        assert sorted(body) == ["error", "request_id", "type"] and body["type"] == "error"
        assert sorted(body["error"]) == ["message", "type"]
        return status, body["error"]["type"], head.get("retry-after")
    no_version = err(post(c, "claude", version=None))
    no_key = err(post(c, "claude", key=None))
    bad_key = err(post(c, "claude", key="sk-bad"))
    echoed = post(c, "fail-401", key="sk-good")[2]["error"]["message"]
    overloaded = err(post(c, "fail-529"))
    flaky = [post(c, "flaky-1-anthropic")[0] for _ in range(2)]
    no_max = err(post(c, "claude", max_tokens=None))
    system_role = post(c, "claude", messages=[{"role": "system", "content": "x"}])
    return no_version == (400, "invalid_request_error", None) \
        and no_key == bad_key == (401, "authentication_error", None) \
        and echoed == "invalid x-api-key: sk-good" \
        and overloaded == (529, "overloaded_error", "1") and flaky == [529, 200] \
        and no_max[:2] == (400, "invalid_request_error") and system_role[0] == 400


def self_checks(c):
    return [
        ("anthropic: messages, request-id, usage", lambda: check_messages(c)),
        ("anthropic: max_tokens, stop_sequences, cache-<read>-<write>", lambda: check_limits(c)),
        ("anthropic: forced tool answers with tool_use", lambda: check_tool(c)),
        ("anthropic: headers, fail-<status>, 529, flaky, errors", lambda: check_errors(c)),
    ]
