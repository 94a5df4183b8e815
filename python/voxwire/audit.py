"""The audit log: one JSON object a line for each call start and end, each refused
connection and each limit violation, with the caller's metadata and never audio or a
secret.

Events go to the ``voxwire.audit`` logger, which does not propagate to the application's
logs; :func:`open_audit_log` (``voxwire serve --audit-log FILE``) appends them to a file::

    {"time": "2026-12-02T06:50:01.123Z", "event": "call_start", "call": 7,
     "protocol": "twilio", "remote": "203.0.113.9", "stream_id": "MZ18...", ...}

Events and their fields (besides ``time`` and ``event``):

==========================  ==========================================================
``connection_refused``      ``status`` (401 or 503), ``kind`` (``unauthorized``,
                            ``connections``, ``per_address``), ``reason``, ``remote``
``call_start``              ``call`` (the process's serial number of the call),
                            ``protocol``, ``remote``, ``stream_id``, ``call_id``,
                            ``encoding``, ``rate``, ``custom`` (the start message's custom
                            parameters, without the token and without any whose name
                            suggests a secret), ``token_call`` and ``key_id`` (a signed
                            token's claims)
``auth_failure``            ``call``, ``protocol``, ``remote``, ``kind`` (``auth``,
                            ``auth_deadline``), ``code``, ``reason``
``limit_violation``         the same fields, ``kind`` one of ``too_big``, ``audio_rate``,
                            ``message_rate``, ``idle``, ``slow_peer``
``call_end``                ``call``, ``protocol``, ``remote``, ``stream_id``, ``code``,
                            ``reason``, ``seconds``, ``audio_in_seconds``, ``skipped``
==========================  ==========================================================

Reasons name limits and values, never tokens (:mod:`voxwire.security` keeps tokens out of
its messages).
"""

from __future__ import annotations

import datetime
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

__all__ = ["AUDIT_LOGGER", "JsonLinesFormatter", "audit", "open_audit_log", "safe_parameters"]

AUDIT_LOGGER = "voxwire.audit"
_log = logging.getLogger(AUDIT_LOGGER)
_log.propagate = False
_log.addHandler(logging.NullHandler())

_SECRET_NAME = re.compile(r"token|secret|key|pass|auth|sig|cred", re.IGNORECASE)


def audit(event: str, **fields: object) -> None:
    """Record one audit event (cheap when no audit log is open)."""
    if _log.isEnabledFor(logging.INFO):
        _log.info(event, extra={"audit": {"event": event, **fields}})


def safe_parameters(params: Mapping[str, str], drop: str | None = None) -> dict[str, str]:
    """Custom parameters fit for the audit log: without ``drop`` (the token's parameter)
    and any whose name suggests a secret; values cut to 64 characters."""
    return {
        str(k)[:64]: str(v)[:64]
        for k, v in params.items()
        if k != drop and not _SECRET_NAME.search(str(k))
    }


class JsonLinesFormatter(logging.Formatter):
    """One JSON object a line: UTC ``time``, then the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        data: dict[str, object] = {"time": stamp.isoformat(timespec="milliseconds")[:-6] + "Z"}
        data.update(getattr(record, "audit", {"event": record.getMessage()}))
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str)


def open_audit_log(path: str | Path) -> logging.Handler:
    """Append the audit events to ``path`` (JSON lines); return the handler (remove it
    from ``logging.getLogger(AUDIT_LOGGER)`` and close it to stop)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonLinesFormatter())
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)
    return handler
