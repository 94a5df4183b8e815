"""Call records: one row per call at hang-up, in SQLite, kept for a set number of days.

:class:`CallRecords` writes a :class:`CallRecord` for every call a voice agent held
(``voxwire serve --agent ... --records PATH``): who called whom where the dialect says,
when the call started and ended, how it ended, its turns with their stage timings, and
its media quality. Rows older than ``retention_days`` (by ``ended_at``) are deleted when
the records open and then on a schedule (:meth:`CallRecords.run_retention`, hourly in
``voxwire serve``). Writes run on a thread of the records' own; a failed write is
logged and counted (``counts["add_failed"]``), never raised into the call.

Table ``calls``
---------------
=================  =======  =========================================================
column             type     what
=================  =======  =========================================================
``id``             INTEGER  row id
``call_id``        TEXT     the provider's call id (the stream id where it has none)
``stream_id``      TEXT     the stream's id (a resumed call has one row per stream)
``protocol``       TEXT     the dialect (``twilio``, ``telnyx``, ...)
``caller``         TEXT     the calling number or URI, where the dialect gives it
``called``         TEXT     the called number or URI, where the dialect gives it
``started_at``     REAL     the stream started (Unix seconds)
``ended_at``       REAL     the stream ended (Unix seconds); retention counts from it
``duration_s``     REAL     ``ended_at - started_at``
``outcome``        TEXT     ``caller_hung_up`` (the provider's stop), ``agent_hung_up``
                            (the agent ended the call), ``server_closed`` (the server
                            closed it: drain, limits), ``connection_lost`` (the stream
                            dropped without a stop)
``close_code``     INTEGER  the WebSocket close code where there is one
``resumed``        INTEGER  1 when the stream resumed a stored conversation
``connection``     INTEGER  which stream of the call this was (1, 2, ...)
``turns``          INTEGER  turns held on this stream
``turn_metrics``   TEXT     JSON list, one object per turn
                            (:meth:`voxwire.voice.metrics.TurnMetrics.as_dict`; texts
                            through the agent's ``log_text`` redaction, or left out)
``quality``        TEXT     JSON object: loss ratio, delay, E-model R and MOS
                            (:func:`voxwire.aio.metrics.call_quality`), null where the
                            transport gives no figures
``errors``         TEXT     JSON object: service failures by ``service:reason``
=================  =======  =========================================================

Caller and called ids: Telnyx, Exotel and jambonz put ``from`` and ``to`` in their
start message; Twilio, Plivo, Vonage and the others do not, and the application passes
them as custom parameters (``From``/``To``, ``from``/``to`` or ``caller``/``called``,
looked up in that order).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxwire.protocols.events import CallStarted
from voxwire.store.base import StoreCounts
from voxwire.store.sqlite import open_sqlite

if TYPE_CHECKING:
    from voxwire.agents.pipeline import AgentCallResult
    from voxwire.aio.surface import CallSurface

__all__ = ["CallRecord", "CallRecords", "caller_ids", "record_of"]

log = logging.getLogger("voxwire.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    protocol TEXT NOT NULL,
    caller TEXT,
    called TEXT,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    duration_s REAL NOT NULL,
    outcome TEXT NOT NULL,
    close_code INTEGER,
    resumed INTEGER NOT NULL,
    connection INTEGER NOT NULL,
    turns INTEGER NOT NULL,
    turn_metrics TEXT NOT NULL,
    quality TEXT,
    errors TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_ended_at ON calls (ended_at);
CREATE INDEX IF NOT EXISTS calls_call_id ON calls (call_id);
"""

_COLUMNS = (
    "call_id",
    "stream_id",
    "protocol",
    "caller",
    "called",
    "started_at",
    "ended_at",
    "duration_s",
    "outcome",
    "close_code",
    "resumed",
    "connection",
    "turns",
    "turn_metrics",
    "quality",
    "errors",
)

_CALLER_KEYS = ("from", "From", "caller")
_CALLED_KEYS = ("to", "To", "called")
_TEXT_FIELDS = ("user_text", "reply_text", "heard_text")
_DAY = 86400.0


@dataclass
class CallRecord:
    """One call's record; the fields are the ``calls`` table's columns (module docstring)."""

    call_id: str
    stream_id: str
    protocol: str
    started_at: float
    ended_at: float
    outcome: str
    caller: str | None = None
    called: str | None = None
    close_code: int | None = None
    resumed: bool = False
    connection: int = 1
    turn_metrics: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """``ended_at - started_at``."""
        return max(0.0, self.ended_at - self.started_at)

    def row(self) -> tuple[object, ...]:
        """The values of the table's columns, in :data:`_COLUMNS` order."""
        return (
            self.call_id,
            self.stream_id,
            self.protocol,
            self.caller,
            self.called,
            self.started_at,
            self.ended_at,
            round(self.duration_s, 3),
            self.outcome,
            self.close_code,
            int(self.resumed),
            self.connection,
            len(self.turn_metrics),
            json.dumps(self.turn_metrics, ensure_ascii=False),
            None if self.quality is None else json.dumps(self.quality),
            json.dumps(self.errors, sort_keys=True),
        )


def _first(maps: tuple[Mapping[str, object], ...], keys: tuple[str, ...]) -> str | None:
    for mapping in maps:
        for key in keys:
            value = mapping.get(key)
            if isinstance(value, str) and value:
                return value[:256]
    return None


def caller_ids(started: CallStarted) -> tuple[str | None, str | None]:
    """(caller, called) from the start message, or its custom parameters; see the
    module docstring."""
    maps = (started.metadata, started.custom_parameters)
    return _first(maps, _CALLER_KEYS), _first(maps, _CALLED_KEYS)


def record_of(
    call: CallSurface,
    result: AgentCallResult,
    *,
    text: Callable[[str], str] | None = None,
    quality: dict[str, Any] | None = None,
    ended_at: float | None = None,
) -> CallRecord | None:
    """The record of a voice-agent call that ended with ``result``; None for a call that
    never started. ``text`` redacts the turns' texts (None leaves them out)."""
    started = call.started
    if started is None:
        return None
    caller, called = caller_ids(started)
    turns = []
    for turn in result.turns:
        entry = turn.as_dict()
        for name in _TEXT_FIELDS:
            if text is None:
                entry.pop(name, None)
            else:
                entry[name] = text(entry[name])
        turns.append(entry)
    end = ended_at if ended_at is not None else time.time()
    code = getattr(call, "close_code", None)
    return CallRecord(
        call_id=started.call_id or started.stream_id,
        stream_id=started.stream_id,
        protocol=call.codec.name,
        started_at=result.started_at if result.started_at is not None else end,
        ended_at=end,
        outcome=result.ended_by,
        caller=caller,
        called=called,
        close_code=code if isinstance(code, int) else None,
        resumed=result.resumed,
        connection=result.connection,
        turn_metrics=turns,
        quality=quality,
        errors=dict(result.errors),
    )


class CallRecords:
    """Call records in the SQLite file ``path``; see the module docstring.

    Parameters
    ----------
    path : str or Path
        The database file (created with its table when missing; WAL mode, shared by
        every worker process).
    retention_days : float
        Records whose call ended longer ago than this are deleted (> 0).
    clock : callable
        Wall-clock time in Unix seconds (for tests).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_days: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not retention_days > 0:
            raise ValueError(f"retention_days must be > 0, got {retention_days}")
        self.path = Path(path)
        self.retention_days = retention_days
        self.clock = clock
        self.counts = StoreCounts()
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="voxwire-records")
        self._conn = open_sqlite(self.path)
        try:
            self._conn.executescript(_SCHEMA)
            #: records deleted by the retention when the records opened
            self.purged = self._purge()
        except sqlite3.Error:
            self._conn.close()
            self._executor.shutdown(wait=False)
            raise

    def __repr__(self) -> str:
        return f"CallRecords({str(self.path)!r}, retention_days={self.retention_days:g})"

    def _purge(self) -> int:
        cutoff = self.clock() - self.retention_days * _DAY
        deleted = self._conn.execute("DELETE FROM calls WHERE ended_at < ?", (cutoff,)).rowcount
        if deleted:
            log.info("call records: %d older than %g days deleted", deleted, self.retention_days)
        return deleted

    def _insert(self, record: CallRecord) -> None:
        marks = ", ".join("?" * len(_COLUMNS))
        self._conn.execute(
            f"INSERT INTO calls ({', '.join(_COLUMNS)}) VALUES ({marks})", record.row()
        )

    def submit(self, record: CallRecord) -> None:
        """Write ``record`` on the records' thread; return at once (for callbacks)."""
        future = self._executor.submit(self._insert, record)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(lambda f: self._written(f, record))

    def _written(self, future: Future[None], record: CallRecord) -> None:
        with self._lock:
            self._pending.discard(future)
        exc = future.exception()
        if exc is None:
            self.counts.note("add")
            return
        self.counts.note("add_failed")
        log.warning(
            "call records: %s call %r not recorded: %s", record.protocol, record.call_id, exc
        )

    async def add(self, record: CallRecord) -> None:
        """Write ``record`` and wait for it (a failure is logged and counted)."""
        self.submit(record)
        await self.flush()

    async def flush(self) -> None:
        """Wait for every record submitted so far to be written."""
        with self._lock:
            pending = [asyncio.wrap_future(f) for f in self._pending]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def purge(self) -> int:
        """Delete the records past the retention now; how many."""
        loop = asyncio.get_running_loop()
        try:
            deleted = await loop.run_in_executor(self._executor, self._purge)
        except sqlite3.Error as exc:
            self.counts.note("purge_failed")
            log.warning("call records: retention failed: %s", exc)
            return 0
        self.counts.note("purge")
        return deleted

    async def run_retention(self, interval: float = 3600.0) -> None:
        """Apply the retention every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.purge()

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query on a connection of its own (for analytics and tests)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            return list(conn.execute(sql, params))

    async def aclose(self) -> None:
        """Write what is pending, then close."""
        await self.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)
