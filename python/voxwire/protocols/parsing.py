"""Reading and writing the JSON messages of the media-stream protocols.

Each reader raises :class:`Skip` with the expected and the received value when a message
does not fit, so a codec's ``receive`` drops that one message and counts it in
:class:`~voxwire.protocols.stats.SessionStats` under the skip's kind. :func:`dumps` writes
compact JSON, as the providers' examples are sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

__all__ = [
    "Skip",
    "b64decode",
    "b64encode",
    "dumps",
    "get_int",
    "get_obj",
    "get_str",
    "parse_json_object",
    "str_mapping",
]


class Skip(Exception):
    """Raised inside a codec to drop one message; ``receive`` counts it and goes on."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# --- parsing helpers: each raises Skip with the expected and the received value -------


def parse_json_object(data: str | bytes, *, binary_ok: bool = False) -> dict[str, object]:
    """Parse one JSON text message into a dict, or raise :class:`Skip`."""
    if isinstance(data, bytes):
        if not binary_ok:
            raise Skip("wrong_frame_type", f"expected a JSON text frame, got {len(data)} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Skip("malformed", f"binary frame is not UTF-8 JSON: {exc}") from None
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Skip("malformed", f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Skip("malformed", f"expected a JSON object, got {type(value).__name__}")
    return value


def get_str(obj: Mapping[str, object], key: str, default: str | None = None) -> str:
    """``obj[key]`` as a string; a missing key gives ``default`` or skips."""
    value = obj.get(key)
    if value is None:
        if default is not None:
            return default
        raise Skip("malformed", f"missing string field {key!r}")
    if not isinstance(value, str):
        raise Skip("malformed", f"field {key!r}: expected a string, got {type(value).__name__}")
    return value


def get_obj(obj: Mapping[str, object], key: str, *, required: bool = True) -> dict[str, object]:
    """``obj[key]`` as a JSON object; a missing optional key gives ``{}``."""
    value = obj.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Skip("malformed", f"field {key!r}: expected an object, got {type(value).__name__}")
    return value


def get_int(obj: Mapping[str, object], key: str, *, required: bool = False) -> int | None:
    """``obj[key]`` as an int, accepting the decimal strings many providers send."""
    value = obj.get(key)
    if type(value) is str and value.isdigit() and value.isascii() and len(value) <= 20:
        return int(value)  # the common case (counters sent as decimal strings), first
    if value is None:
        if required:
            raise Skip("malformed", f"missing integer field {key!r}")
        return None
    if isinstance(value, bool):
        raise Skip("malformed", f"field {key!r}: expected an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.strip().lstrip("-").isdigit():
        if len(value) > 20:
            raise Skip("malformed", f"field {key!r}: integer string too long ({len(value)})")
        return int(value)
    raise Skip("malformed", f"field {key!r}: expected an integer, got {value!r:.40}")


def str_mapping(value: object, key: str) -> dict[str, str]:
    """A JSON object of custom parameters, values converted to strings."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Skip("malformed", f"field {key!r}: expected an object, got {type(value).__name__}")
    try:
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
    except (ValueError, RecursionError) as exc:
        raise Skip("malformed", f"field {key!r}: {exc}") from None


def b64decode(payload: str) -> bytes:
    """Strict base64 (RFC 4648 alphabet, padding required), or skip as ``bad_base64``."""
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Skip("bad_base64", f"payload is not valid base64: {exc}") from None


def b64encode(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


# One encoder for every message: json.dumps with non-default separators builds a new
# JSONEncoder on each call, which costs more than encoding a 20 ms media message.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def dumps(obj: Mapping[str, object]) -> str:
    """Compact JSON text, as the providers' examples are sent."""
    return _COMPACT.encode(obj)
