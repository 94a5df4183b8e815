"""Prometheus metrics and the per-call summary of a server (``pip install
"voxwire[metrics]"``, the ``prometheus-client`` library).

:class:`ServerMetrics` keeps one registry per server and is fed by the server
(:func:`voxwire.agents.server.serve_agent` with ``metrics=``): every call that ends
(:meth:`~ServerMetrics.call_ended`), each echo agent's stats
(:meth:`~ServerMetrics.echo_ended`) and each voice-agent turn
(:meth:`~ServerMetrics.turn_ended`). The WebSocket adapter answers ``GET /metrics`` with
:meth:`~ServerMetrics.exposition` before any upgrade.

Metrics
-------
================================================  ==========================================
name                                              what
================================================  ==========================================
``voxwire_active_calls``                          calls up now (the worker's admission)
``voxwire_draining``, ``voxwire_load``            1 while draining; the share of
                                                  ``max_calls`` in use
``voxwire_calls_total{outcome}``                  calls ended, by outcome: the close code's
                                                  name (``normal``, ``going_away``,
                                                  ``protocol_error``, ``policy``,
                                                  ``too_big``, ``internal_error``,
                                                  ``idle``, ``slow_peer``)
``voxwire_calls_refused_total{reason}``           calls refused (``draining``, ``full``)
``voxwire_errors_total{stage,type}``              exceptions on calls' paths
                                                  (:data:`voxwire.aio.session.ERRORS`)
``voxwire_reply_latency_seconds``                 per turn: the voice agent's end of speech
                                                  to the reply playing; the echo agent's
                                                  end of speech to the reply queued
``voxwire_clear_latency_seconds``                 per barge-in (echo agent): the speech
                                                  onset to the clear
``voxwire_service_ttfb_seconds{service}``         per turn and service (``stt``, ``llm``,
                                                  ``tts``): time to the first result
``voxwire_call_loss_ratio``                       per call: media lost (sequence gaps and
                                                  late drops) over media expected
``voxwire_call_r_factor``, ``voxwire_call_mos``   per call: the G.107 E-model estimate
                                                  (:mod:`voxwire.quality`)
``voxwire_state_operations_total``               the store's, call records' and
``{source,operation}``                            recordings' operations (``source``
                                                  ``store``, ``records``, ``recordings``;
                                                  ``operation`` e.g. ``save``,
                                                  ``save_failed``, ``add_failed``,
                                                  ``failed``, ``deleted``)
``voxwire_asyncio_tasks``                         tasks of the server's event loop now (a
                                                  task leak shows here first)
``process_resident_memory_bytes``,                the process's RSS and open file
``process_open_fds``, ...                         descriptors (prometheus-client's process
                                                  collector, Linux)
================================================  ==========================================

Media jitter, concealment and jitter-buffer delay exist on RTP calls only; the WebSocket
and AudioSocket transports run over TCP, which has none of them (a stalled connection
delivers late, in order). The E-model's delay is the one-way delay the server adds (one
frame, the pacer's lead) plus the ``network_delay_ms`` it is configured with: a planning
estimate, not a measured mouth-to-ear delay.

The per-call summary
--------------------
When a call ends, :meth:`~ServerMetrics.call_ended` logs one line on the
``voxwire.calls`` logger, ``call summary {...}``, with a JSON object: the call id, the
protocol, the outcome and close code, the duration, messages and audio seconds each way,
the loss, R and MOS, and the agent's figures (the echo agent's replies and barge-ins and
their delays, or the voice agent's turns with their latency and TTFB).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from voxwire.aio.admission import METRICS_PATH, Admission
from voxwire.aio.session import ERRORS, Call
from voxwire.quality import mos, r_factor

if TYPE_CHECKING:
    from voxwire.agents.echo import EchoStats
    from voxwire.voice.metrics import TurnMetrics

__all__ = ["METRICS_PATH", "OUTCOMES", "ServerMetrics", "call_quality"]

log = logging.getLogger("voxwire.calls")

OUTCOMES = {
    1000: "normal",
    1001: "going_away",
    1002: "protocol_error",
    1008: "policy",
    1009: "too_big",
    1011: "internal_error",
    4000: "idle",
    4001: "slow_peer",
}
"""Outcome names of the close codes (:mod:`voxwire.aio.session`)."""

_LATENCY_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
_MOS_BUCKETS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5)
_R_BUCKETS = (0, 50, 60, 70, 80, 85, 90, 93, 95, 100)
_LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def call_quality(call: Call, server_delay_ms: float, network_delay_ms: float) -> dict[str, Any]:
    """The media quality of a WebSocket or AudioSocket call from its codec's stats: loss
    ratio, and the E-model R and MOS for that loss and the delay (G.711 with
    concealment)."""
    stats = call.stats
    lost = stats.gaps + stats.late_dropped
    expected = stats.audio_chunks_in + stats.gaps
    loss = lost / expected if expected else 0.0
    delay = server_delay_ms + network_delay_ms
    r = r_factor(delay, 100 * loss, codec="g711-plc")
    return {
        "loss_ratio": round(loss, 5),
        "delay_ms": round(delay, 1),
        "r_factor": round(r, 2),
        "mos": round(mos(r), 3),
    }


def _import_prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'the metrics need prometheus-client: pip install "voxwire[metrics]"'
        ) from exc
    return prometheus_client


class ServerMetrics:
    """The metrics of one server; see the module docstring.

    Parameters
    ----------
    admission : Admission
        The server's admission (calls up, drain, refusals).
    lead : float
        The pacer's lead in seconds (part of the delay the server adds).
    network_delay_ms : float
        The one-way network delay to assume for the E-model (default 0).
    """

    def __init__(
        self, admission: Admission, *, lead: float = 0.06, network_delay_ms: float = 0.0
    ) -> None:
        prom = _import_prometheus()
        from prometheus_client.core import CounterMetricFamily

        self.admission = admission
        self.server_delay_ms = 20.0 + 1000 * lead  # one frame, then the pacer's lead
        self.network_delay_ms = network_delay_ms
        self.registry = prom.CollectorRegistry()
        reg = self.registry
        prom.Gauge("voxwire_active_calls", "Calls up now.", registry=reg).set_function(
            lambda: admission.active
        )
        prom.Gauge("voxwire_draining", "1 while draining.", registry=reg).set_function(
            lambda: float(admission.draining)
        )
        prom.Gauge("voxwire_load", "Share of max_calls in use.", registry=reg).set_function(
            lambda: admission.load
        )
        prom.Gauge(
            "voxwire_asyncio_tasks", "Tasks of the server's event loop.", registry=reg
        ).set_function(_tasks)
        prom.ProcessCollector(registry=reg)
        self.calls = prom.Counter(
            "voxwire_calls", "Calls ended, by outcome.", ["outcome"], registry=reg
        )
        self.reply_latency = prom.Histogram(
            "voxwire_reply_latency_seconds",
            "End of the caller's speech to the reply (see the docs for each agent).",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.clear_latency = prom.Histogram(
            "voxwire_clear_latency_seconds",
            "Onset of the barge-in speech to the clear.",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.ttfb = prom.Histogram(
            "voxwire_service_ttfb_seconds",
            "Per turn, a service's time to its first result.",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.loss = prom.Histogram(
            "voxwire_call_loss_ratio",
            "Per call, media lost over media expected.",
            buckets=_LOSS_BUCKETS,
            registry=reg,
        )
        self.r = prom.Histogram(
            "voxwire_call_r_factor",
            "Per call, the ITU-T G.107 E-model rating R.",
            buckets=_R_BUCKETS,
            registry=reg,
        )
        self.mos = prom.Histogram(
            "voxwire_call_mos",
            "Per call, the E-model's estimated MOS.",
            buckets=_MOS_BUCKETS,
            registry=reg,
        )

        counted = self._counted = dict[str, Callable[[], Mapping[str, int]]]()

        class _Counted:
            """Counters kept elsewhere (admission refusals, ERRORS), read at scrape."""

            def collect(self) -> Iterator[Any]:
                refused = CounterMetricFamily(
                    "voxwire_calls_refused", "Calls refused, by reason.", labels=["reason"]
                )
                for reason, n in sorted(admission.refused.items()):
                    refused.add_metric([reason], n)
                yield refused
                errors = CounterMetricFamily(
                    "voxwire_errors",
                    "Exceptions raised on calls' paths, by stage and type.",
                    labels=["stage", "type"],
                )
                for (stage, kind), n in sorted(ERRORS.as_dict().items()):
                    errors.add_metric([stage, kind], n)
                yield errors
                operations = CounterMetricFamily(
                    "voxwire_state_operations",
                    "Operations of the store, the call records and the recordings, by "
                    "what did them and outcome.",
                    labels=["source", "operation"],
                )
                for source, read in sorted(counted.items()):
                    for operation, n in sorted(read().items()):
                        operations.add_metric([source, operation], n)
                yield operations

        reg.register(_Counted())
        self._content_type: str = prom.CONTENT_TYPE_LATEST
        self._generate = prom.generate_latest
        self._agent: weakref.WeakKeyDictionary[Call, dict[str, Any]] = weakref.WeakKeyDictionary()
        self._started: weakref.WeakKeyDictionary[Call, float] = weakref.WeakKeyDictionary()

    # --- what the server feeds -------------------------------------------------------

    def count(self, source: str, read: Callable[[], Mapping[str, int]]) -> None:
        """Expose the counts ``read()`` gives at each scrape as
        ``voxwire_state_operations{source=..., operation=...}`` (the store's
        ``counts.as_dict``, the call records', a recorder's)."""
        self._counted[source] = read

    def call_started(self, call: Call) -> None:
        """A call's handler started (for the summary's duration)."""
        self._started[call] = time.monotonic()

    def echo_ended(self, call: Call, stats: EchoStats) -> None:
        """The echo agent of ``call`` ended with ``stats``."""
        for delay in stats.reply_delays:
            self.reply_latency.observe(delay)
        for delay in stats.clear_delays:
            self.clear_latency.observe(delay)
        self._agent[call] = {
            "agent": "echo",
            "utterances": stats.utterances,
            "replies_played": stats.replies_played,
            "barge_ins": stats.barge_ins,
            "reply_delays_s": [round(d, 4) for d in stats.reply_delays],
            "clear_delays_s": [round(d, 4) for d in stats.clear_delays],
        }

    def turn_ended(self, turn: TurnMetrics, call: Call | None = None) -> None:
        """A voice-agent turn ended (its reply played or was cut)."""
        if turn.reply_latency is not None:
            self.reply_latency.observe(turn.reply_latency)
        for service, seconds in turn.ttfb().items():
            if seconds is not None:
                self.ttfb.labels(service).observe(seconds)
        if call is not None:
            entry = self._agent.setdefault(call, {"agent": "voice", "turns": []})
            entry["turns"].append(
                {
                    "index": turn.index,
                    "reply_latency_s": _round(turn.reply_latency),
                    "ttfb_s": {k: _round(v) for k, v in turn.ttfb().items()},
                    "interrupted": turn.interrupted,
                }
            )

    def call_ended(self, call: Call) -> dict[str, Any]:
        """Count the ended ``call``, observe its quality, log its summary; return it."""
        code = call.close_code if call.close_code is not None else 1000
        outcome = OUTCOMES.get(code, f"code_{code}")
        self.calls.labels(outcome).inc()
        quality = call_quality(call, self.server_delay_ms, self.network_delay_ms)
        self.loss.observe(quality["loss_ratio"])
        self.r.observe(quality["r_factor"])
        self.mos.observe(quality["mos"])
        started = call.started
        stats = call.stats
        begun = self._started.pop(call, None)
        rate = started.media_format.sample_rate if started else 0
        summary: dict[str, Any] = {
            "call_id": started.stream_id if started else f"#{call.serial}",
            "protocol": call.codec.name,
            "outcome": outcome,
            "close_code": code,
            "close_reason": call.close_reason,
            "duration_s": None if begun is None else round(time.monotonic() - begun, 3),
            **stats.traffic(rate),
            "skipped": stats.skipped,
            "quality": quality,
            **self._agent.pop(call, {}),
        }
        log.info("call summary %s", json.dumps(summary, sort_keys=True))
        return summary

    # --- what the server answers -----------------------------------------------------

    def exposition(self) -> tuple[str, bytes]:
        """(content type, body) of ``GET /metrics``: the Prometheus text format."""
        return self._content_type, self._generate(self.registry)


def _tasks() -> float:
    """The tasks of the running loop (a scrape is answered on the server's loop); NaN
    when read from outside any loop."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return float("nan")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
