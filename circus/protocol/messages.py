"""Request, reply and event shapes of the control protocol, and their one codec.

Request (one ZeroMQ frame of JSON, from a DEALER)::

    {"id": <any JSON, echoed>, "command": "<name>", "properties": {...}, "msg_type": "cast"?}

Success reply: ``{"status": "ok", "time": <epoch>, ...fields, "node": <node>, "id": <echo>}``.
A command's own ``status`` field replaces ``"ok"`` (0.19's ``status NAME`` quirk).
Error reply: ``{"status": "error", "reason", "errno", "code", "tb": null, "time", "node", "id"}``.
Casts (``msg_type: "cast"``) get no reply, even on error. Events: two frames, ``[topic, json]``.
"""
from __future__ import annotations

import json
import time
from typing import Any, Mapping

from circus.protocol.errors import ErrorCode, ProtocolError
from circus.protocol.limits import MAX_CONTAINERS, MAX_DEPTH, MAX_FRAME, shape_problem
from circus.records import Record, record

__all__ = ["Request", "decode_request", "ok_reply", "error_reply", "encode", "decode",
           "make_request", "encode_event", "decode_event", "read_event", "MAX_FRAME", "output_topic", "topic_name"]



@record
class Request(Record):
    id: Any
    command: str
    properties: dict[str, Any]
    cast: bool = False


class BadRequest(ProtocolError):
    """A request that cannot be served; ``request_id`` and ``cast`` if they could be read."""

    def __init__(self, code: ErrorCode, reason: str, request_id: Any = None, cast: bool = False):
        super().__init__(code, reason)
        self.request_id = request_id
        self.cast = cast


def decode_request(body: bytes, max_size: int = MAX_FRAME) -> Request:
    if len(body) > max_size:
        raise BadRequest(ErrorCode.OVERSIZE, f"message of {len(body)} bytes exceeds {max_size}")
    try:
        # what json.loads does; a request opening with "{" then not NUL is UTF-8 by that rule
        # (no BOM, no UTF-16/32), which saves detect_encoding's look at nearly every request
        encoding = "utf-8" if body[:1] == b"{" and body[1:2] != b"\0" else json.detect_encoding(body)
        text = body.decode(encoding, "surrogatepass")
        data = _decode(text)
    except _NotJSON as exc:
        raise BadRequest(ErrorCode.INVALID_JSON, f"json invalid: {exc}") from None
    except (ValueError, RecursionError):
        raise BadRequest(ErrorCode.INVALID_JSON, "json invalid") from None
    if not isinstance(data, dict):
        raise BadRequest(ErrorCode.INVALID_MESSAGE, "message invalid: not a JSON object")
    # every object or array of the request opens with one of these bytes: few of them, no walk
    few = body.count(b"{") + body.count(b"[") <= _FEW
    problem = None if few else shape_problem(data)
    if problem:
        raise BadRequest(ErrorCode.INVALID_MESSAGE, f"message invalid: {problem}")
    # a string can hold a lone surrogate only from a \\u escape or from non-ASCII bytes
    # (surrogatepass): an ASCII request without "\\u" needs no walk
    if (not body.isascii() or b"\\u" in body) and _lone_surrogate(data):
        raise BadRequest(ErrorCode.INVALID_JSON, "json invalid: a string holds a lone surrogate "
                         "(\\ud800-\\udfff): it is no Unicode text")
    req_id = data.get("id")
    cast = data.get("msg_type") == "cast"
    command = data.get("command")
    if not isinstance(command, str) or not command:
        raise BadRequest(ErrorCode.INVALID_MESSAGE, "message invalid: 'command' is missing", req_id, cast)
    props = data.get("properties", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise BadRequest(ErrorCode.INVALID_MESSAGE, "message invalid: 'properties' must be an object",
                         req_id, cast)
    return Request(req_id, command, props, cast)


#: a request with at most this many "{" and "[" cannot be too deep or hold too many containers
_FEW = min(MAX_DEPTH, MAX_CONTAINERS)


class _NotJSON(ValueError):
    pass


def _no_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (Python's json accepts them)."""
    raise _NotJSON(f"{name} is not a JSON value")


def _lone_surrogate(obj: Any) -> bool:
    """Whether a string of ``obj`` (decoded JSON, of a bounded shape) holds a lone surrogate:
    JSON's ``\\ud800`` escapes allow them, UTF-8 (logs, files, terminals) does not."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``; a text from ``{`` to ``}`` (no whitespace around it) is
    scanned at once, without decode's two whitespace searches. ValueError if it is no JSON."""
    if text[:1] == "{" and text[-1:] == "}":
        try:
            data, end = _SCAN(text, 0)
        except StopIteration:
            raise ValueError("json invalid") from None
        if end == len(text):
            return data
    return _DECODER.decode(text)          # whitespace around, or something after the object


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotJSON(f"{text[:40]} is too large for a number")
    return value


#: made once: ``json.loads``/``json.dumps`` with options build a new decoder/encoder per call
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)
_SCAN = _DECODER.scan_once
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False)
#: the C encoder ``_ENCODER.encode`` makes anew at each call (with a closure and a dict), made
#: once: with no circularity markers it keeps no state, and a reply is never circular (a cycle
#: ends in RecursionError either way: ``_finite`` below would not stop on one either)
_ONE_SHOT = (json.encoder.c_make_encoder(None, str, json.encoder.encode_basestring_ascii, None,
                                         ":", ",", False, False, False)
             if json.encoder.c_make_encoder is not None else None)


def ok_reply(req_id: Any, fields: Mapping[str, Any], node: str) -> dict[str, Any]:
    # the fields may replace status and time (in place); node and id come last, always ours
    return {"status": "ok", "time": time.time(), **fields, "node": node, "id": req_id}


def error_reply(req_id: Any, code: ErrorCode, reason: str, node: str) -> dict[str, Any]:
    return {"status": "error", "reason": reason, "tb": None, "time": time.time(),
            "errno": int(code.errno), "code": code.text, "node": node, "id": req_id}


def encode(obj: Any) -> bytes:
    """Strict JSON: a non-finite float (a sampler's NaN...) is sent as ``null``, never as the
    ``NaN``/``Infinity`` that other parsers refuse."""
    try:
        if _ONE_SHOT is not None:
            return "".join(_ONE_SHOT(obj, 0)).encode()
        return _ENCODER.encode(obj).encode()
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), default=str,
                          allow_nan=False).encode()


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def decode(body: bytes) -> Any:
    return json.loads(body)


def make_request(command: str, properties: Mapping[str, Any] | None = None, *,
                 cast: bool = False, id: Any = None) -> dict[str, Any]:
    if id is None:
        import uuid

        id = uuid.uuid4().hex
    msg: dict[str, Any] = {"id": id, "command": command,
                           "properties": dict(properties or {})}
    if cast:
        msg["msg_type"] = "cast"
    return msg


def encode_event(topic: str, payload: Mapping[str, Any]) -> list[bytes]:
    return [topic.encode(), encode(payload)]


def topic_name(watcher: str) -> str:
    """A watcher's name as event topics write it (``watcher.<name>.<event>``): lower case, ``_``
    for spaces."""
    return watcher.lower().replace(" ", "_")


def output_topic(watcher: str, stream: str = "") -> str:
    """The topic of a watcher's output lines, ``output.<watcher>.<stream>``; without a stream,
    the prefix of both."""
    return f"output.{topic_name(watcher)}.{stream}"


def read_event(frames: list[bytes]) -> tuple[str, Any] | None:
    """``(topic, payload)`` of a two-frame event, or ``None`` for anything else (a wrong frame
    count, a topic that is not UTF-8, a body that is not JSON): what a subscriber skips."""
    if len(frames) != 2:
        return None
    try:
        return frames[0].decode("utf-8"), json.loads(frames[1])
    except (UnicodeDecodeError, ValueError):
        return None


def decode_event(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    topic, body = frames[0], frames[-1]
    return topic.decode(errors="replace"), json.loads(body)
