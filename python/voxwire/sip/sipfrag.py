"""The status line of a ``message/sipfrag`` body (RFC 3420), as a REFER's NOTIFY carries
it (RFC 3515 section 2.4.5)."""

from __future__ import annotations

__all__ = ["sipfrag_status"]


def sipfrag_status(body: bytes) -> int | None:
    """The status code of the body's first line (``SIP/2.0 200 OK``), or None when it is
    not a status line."""
    line = body.split(b"\n", 1)[0].strip().decode("utf-8", "replace")
    parts = line.split(" ", 2)
    if len(parts) >= 2 and parts[0].upper() == "SIP/2.0" and parts[1].isdigit():
        status = int(parts[1])
        return status if 100 <= status <= 699 else None
    return None
