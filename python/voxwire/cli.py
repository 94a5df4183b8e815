"""The ``voxwire`` command line.

``voxwire bench`` runs the side-by-side microbenchmarks against whichever peers are
installed (audioop, soxr, ...) and prints one table per benchmark.

``voxwire serve --protocol twilio --echo`` runs a media-stream server whose agent echoes
each utterance back (:mod:`voxwire.agents`); ``--protocol sip`` answers SIP calls over UDP
with the same agents (:mod:`voxwire.aio.sip`); ``voxwire call --protocol twilio URL`` calls
it as the provider would, with a simulated caller that speaks, listens, barges in, and
reports what it heard and the timings (:mod:`voxwire.sim`); ``voxwire loadtest --protocol
twilio --calls N URL`` places N such calls at once and reports latency percentiles, pacing,
errors and the server's CPU per call (:mod:`voxwire.sim.load`).

``voxwire serve --agent demo`` and ``voxwire demo`` take services by name and URL
(``--llm openai-compatible:http://127.0.0.1:11434/v1 --model llama3.2``, ``--stt
deepgram``, ``--tts elevenlabs --voice ID``; :mod:`voxwire.services.registry`), their
keys from the environment.

``voxwire dial sip:user@host`` places an outbound SIP call with the same agents and
leaves with a status saying whether it was answered, busy or not answered
(:mod:`voxwire.cli_dial`).

``voxwire token --ttl 60 --call ID`` mints a signed, expiring, single-use token for one
call (:class:`voxwire.security.CallTokens`) with the key set in ``$VOXWIRE_TOKEN_KEY`` or
``--key-file``; ``voxwire serve`` given the same key set accepts it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from voxwire import __version__
from voxwire.benchmarks import BENCHMARKS
from voxwire.benchmarks._harness import Table
from voxwire.cli_dial import add_dial, dial_main
from voxwire.protocols.registry import CODECS

__all__ = ["main"]

_T = TypeVar("_T")


def _parse_only(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or repr(value)}; "
            f"choose from {', '.join(BENCHMARKS)}"
        )
    return names


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxwire", description="voxwire: the media layer for real-time voice AI"
    )
    parser.add_argument("--version", action="version", version=f"voxwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = sub.add_parser(
        "bench",
        help="run the microbenchmarks side by side with the installed peers",
        description="Time voxwire's kernels against the peers a user would otherwise pick, "
        "in the same run, on fresh data, and print the ratios.",
    )
    bench.add_argument(
        "--only",
        type=_parse_only,
        default=list(BENCHMARKS),
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds: a smoke run of a few seconds, noisier figures",
    )
    bench.add_argument("--json", action="store_true", help="print the tables as JSON")
    _add_serve(sub)
    _add_call(sub)
    _add_services(add_dial(sub))
    _add_loadtest(sub)
    _add_token(sub)
    demo = sub.add_parser(
        "demo",
        help="hold a phone conversation with the offline demo voice agent, on loopback",
        description="Start the Harbor Dental demo agent (pocketsphinx, a local rules model "
        "with SQLite knowledge and bookings, espeak-ng) on 127.0.0.1 and call it with the "
        "simulated phone: a question, a long answer the caller talks over, a booking and a "
        "goodbye. Prints the transcript, the history after the barge-in and each turn's "
        "latency. No keys, no network.",
    )
    demo.add_argument(
        "--protocol",
        default="vonage",
        choices=_PROTOCOLS,
        help="the line (default vonage: L16 at 16 kHz; the 8 kHz G.711 lines, twilio and "
        "the others, are harder for the offline recogniser)",
    )
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("-v", "--verbose", action="store_true", help="log the agent's turns")
    _add_services(demo)
    knowledge = sub.add_parser(
        "knowledge",
        help="index and search a folder of .md/.txt files (SQLite FTS5)",
        add_help=False,
    )
    knowledge.add_argument("args", nargs=argparse.REMAINDER)
    return parser


_PROTOCOLS = tuple(CODECS)


def _number(kind: type[int] | type[float], lo: float, hi: float, unit: str = "") -> Any:
    """An argparse type: a ``kind`` number in [lo, hi], with a message naming the range."""
    where = f"{int(lo)} to {int(hi)}{unit}" if kind is int else f"{lo:g} to {hi:g}{unit}"

    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'} from {where}, "
                f"got {value!r}"
            ) from None
        if not lo <= number <= hi:
            raise argparse.ArgumentTypeError(f"expected {where}, got {value!r}")
        return number

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _wav(value: str) -> str:
    """An argparse type: a readable 16-bit PCM WAV file."""
    import wave

    try:
        with wave.open(value, "rb") as wav:
            width, frames = wav.getsampwidth(), wav.getnframes()
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"no such file: {value!r}") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a WAV file ({exc})") from None
    if width != 2:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected 16-bit PCM, got {8 * width}-bit samples"
        )
    if frames == 0:
        raise argparse.ArgumentTypeError(f"{value!r}: no audio")
    return value


_PORT = _number(int, 0, 65535)


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="run a media-stream server with an agent (the echo agent, or a voice agent)",
        description="Accept a provider's media stream and run an agent on each call: the "
        "echo agent (--echo) plays each utterance back when the caller stops speaking, a "
        "voice agent (--agent) holds a conversation; both stop talking at once when the "
        "caller talks over them. Stops cleanly on SIGINT/SIGTERM.",
    )
    serve.add_argument(
        "--protocol",
        required=True,
        choices=(*_PROTOCOLS, "webrtc", "sip"),
        help="the provider's media stream; webrtc: browsers (a talk page at / and WHIP "
        "at /whip; needs the webrtc extra); sip: SIP calls over UDP (TCP with --tcp)",
    )
    which = serve.add_mutually_exclusive_group(required=True)
    which.add_argument("--echo", action="store_true", help="run the echo agent")
    which.add_argument(
        "--agent",
        metavar="MODULE:FACTORY",
        help="run the agent FACTORY() returns (a voxwire.agents.pipeline.VoiceAgent, or any "
        "async handler of a call); 'demo' is the built-in offline demo agent",
    )
    which.add_argument(
        "--gateway",
        metavar="PROTOCOL:URL",
        help="bridge each SIP call to a bot written for a WebSocket media stream, playing "
        "the provider's side, e.g. twilio:wss://bot.example.com/media (--protocol sip)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument(
        "--port",
        type=_PORT,
        default=None,
        help="port, 0-65535, 0 for any free one (default 8080; 9092 for audiosocket; 5060 for sip)",
    )
    serve.add_argument(
        "--path", default=None, help="accept the media WebSocket only on this path (default: any)"
    )
    serve.add_argument(
        "--lead",
        type=_number(float, 0.0, 1.0),
        default=0.06,
        help="seconds of audio the pacer may send ahead of real time, 0-1 (default 0.06)",
    )
    serve.add_argument(
        "--hangover-ms",
        type=_number(int, 0, 500),
        default=200,
        metavar="MS",
        help="silence that ends the caller's turn, 0-500 (default 200)",
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("VOXWIRE_TOKEN"),
        help="require this shared token (query ?token=, header X-Voxwire-Token, or the "
        "start message's custom parameter 'token'); default $VOXWIRE_TOKEN",
    )
    serve.add_argument(
        "--key-file",
        metavar="FILE",
        help="accept signed per-call tokens (voxwire token) verified with the key set in "
        "FILE (ID:SECRET lines; rotation: several ids); default $VOXWIRE_TOKEN_KEY",
    )
    serve.add_argument(
        "--record",
        metavar="DIR",
        help="record every call to a stereo WAV in DIR (caller left, agent right as heard); "
        "nothing is recorded without it",
    )
    serve.add_argument(
        "--record-retention-days",
        type=_positive_float,
        default=30.0,
        metavar="DAYS",
        help="delete recordings older than DAYS (at start and hourly as calls come; default 30)",
    )
    serve.add_argument(
        "--used-tokens",
        metavar="PATH",
        help="remember used signed tokens in this SQLite file, shared by the server "
        "processes of one host (default: in memory; --workers gives its workers a file)",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve wss:// (AudioSocket: TLS; webrtc: https://; sip: SIP over TLS on "
        "--sip-tls-port) with this certificate chain; needs --tls-key",
    )
    serve.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    serve.add_argument(
        "--max-connections",
        type=_number(int, 1, 1_000_000),
        default=1000,
        metavar="N",
        help="open WebSocket connections allowed; more are refused with 503 (default 1000)",
    )
    serve.add_argument(
        "--max-per-address",
        type=_number(int, 1, 1_000_000),
        default=None,
        metavar="N",
        help="open WebSocket connections allowed from one client address (default: no cap; "
        "a provider's gateway, or a proxy in front, carries many calls from one address)",
    )
    serve.add_argument(
        "--audit-log",
        metavar="FILE",
        help="append an audit log (JSON lines: call start/end, refusals, limit violations; "
        "no audio, no secrets) to FILE",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="run N worker processes on the port (SO_REUSEPORT), supervised: a worker that "
        "exits is restarted, SIGTERM drains them all (default: serve in this process)",
    )
    serve.add_argument(
        "--max-calls",
        type=int,
        default=None,
        metavar="N",
        help="calls taken at once per worker; more are refused (HTTP 503 before the "
        "WebSocket upgrade, the AudioSocket hangup)",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGTERM/SIGINT take no new call and let the calls up finish for at most S "
        "seconds, then close them as going away (1001); a second signal closes them at once "
        "(default 30)",
    )
    serve.add_argument(
        "--agent-port",
        type=int,
        default=None,
        metavar="PORT",
        help="answer HAProxy's agent-check on this TCP port (on --host): 'up N%%' with N the "
        "free share of --max-calls, or 'drain'",
    )
    serve.add_argument(
        "--metrics",
        action="store_true",
        help="answer GET /metrics (Prometheus, needs prometheus-client: the 'metrics' extra) "
        "and log a summary of each call as it ends",
    )
    serve.add_argument(
        "--store",
        metavar="URL",
        help="keep each call's conversation in a store so that a call whose stream is "
        "re-opened (on any worker) resumes it: sqlite:PATH (one node) or redis://HOST:PORT "
        "(a fleet; the 'fleet' extra); needs a voice agent (--agent)",
    )
    serve.add_argument(
        "--store-ttl",
        type=_number(float, 1.0, 30 * 86400.0),
        default=3600.0,
        metavar="S",
        help="seconds a conversation is kept after its last save (default 3600)",
    )
    serve.add_argument(
        "--records",
        metavar="PATH",
        help="write a record of every call at hang-up to the SQLite file PATH (table "
        "'calls': ids, start/end, outcome, per-turn metrics, quality); needs --agent",
    )
    serve.add_argument(
        "--records-retention-days",
        type=_number(float, 0.001, 36500.0),
        default=30.0,
        metavar="N",
        help="delete call records older than N days, at start and hourly (default 30)",
    )
    serve.add_argument(
        "--control",
        action="store_true",
        help="serve the control API on the WebSocket port, or with --protocol sip on "
        "--control-port (GET /calls, POST /calls/ID/hangup, /mute, /unmute, /say?text=, "
        "/transfer?target= on SIP) for the bearer token of $VOXWIRE_CONTROL_TOKEN or "
        "--control-token-file",
    )
    serve.add_argument(
        "--control-port",
        type=int,
        metavar="PORT",
        help="--protocol sip: the HTTP port of the control API, on --host (default 8080)",
    )
    serve.add_argument(
        "--control-token-file",
        metavar="FILE",
        help="the control API's bearer token: the first line of FILE (16 characters or more)",
    )
    # set by the supervisor of --workers for its workers
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    serve.add_argument(
        "--media-host",
        default=None,
        help="sip: the address RTP binds to and the SDP, Contact and Via name (default --host)",
    )
    serve.add_argument(
        "--rtp-ports",
        type=_port_range,
        default=None,
        metavar="LOW-HIGH",
        help="sip: the range of RTP ports (default: any free port)",
    )
    serve.add_argument(
        "--tcp", action="store_true", help="sip: listen on TCP too, on the same port"
    )
    serve.add_argument(
        "--sip-tls-port",
        type=_number(int, 0, 65535),
        default=5061,
        metavar="PORT",
        help="sip: with --tls-cert/--tls-key, listen for SIP over TLS on PORT "
        "(default 5061; 0: any free port)",
    )
    serve.add_argument(
        "--codecs",
        type=_codecs,
        default=("pcmu", "pcma"),
        metavar="LIST",
        help="sip: the codecs an offer may be answered with, of pcmu, pcma, opus "
        "(default pcmu,pcma; opus needs voxwire[opus])",
    )
    serve.add_argument(
        "--rtp-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="sip: end a call with BYE after S seconds without RTP (default 15)",
    )
    serve.add_argument(
        "--sip-credentials",
        metavar="FILE",
        help="sip: challenge INVITEs (401, digest) and take those of the USER:PASSWORD lines "
        "of FILE; default the lines in $VOXWIRE_SIP_CREDENTIALS",
    )
    serve.add_argument(
        "--sip-allow",
        metavar="NETS",
        help="sip: comma-separated networks whose INVITEs pass unchallenged; without "
        "credentials the others get 403",
    )
    serve.add_argument(
        "--sip-realm", default="voxwire", help="sip: the digest realm (default voxwire)"
    )
    serve.add_argument(
        "--sip-register",
        metavar="AOR",
        help="sip: register as this extension (sip:ext@pbx[:port]) and keep the binding "
        "refreshed; unregistered on shutdown",
    )
    serve.add_argument(
        "--sip-registrar", metavar="URI", help="sip: where to register (default the AOR's host)"
    )
    serve.add_argument(
        "--sip-user", help="sip: the registration's digest and Contact user (default the AOR's)"
    )
    serve.add_argument(
        "--sip-password-env",
        default="VOXWIRE_SIP_PASSWORD",
        metavar="VAR",
        help="sip: the environment variable holding the registration's digest password "
        "(default VOXWIRE_SIP_PASSWORD)",
    )
    serve.add_argument(
        "--sip-register-expires",
        type=_number(int, 60, 86400),
        default=3600,
        metavar="S",
        help="sip: the registration's Expires asked, 60-86400 (default 3600)",
    )
    serve.add_argument(
        "--sip-digest",
        default="SHA-256,MD5",
        metavar="LIST",
        help="sip: digest algorithms offered, in order (default SHA-256,MD5; MD5 alone or "
        "first for peers that take only the first challenge or know only MD5)",
    )
    serve.add_argument(
        "--sip-srtp",
        choices=("tls", "always", "never"),
        default="tls",
        help="sip: take RTP/SAVP offers (SDES-SRTP, needs voxwire[sip-srtp]) over SIP over TLS "
        "only (default), on any transport (always: insecure, the keys cross the network in "
        "the clear), or never; a refused SRTP-only offer gets 488",
    )
    serve.add_argument(
        "--sip-challenge",
        type=int,
        choices=(401, 407),
        default=401,
        help="sip: challenge as a user agent (401, WWW-Authenticate; the default) or as a "
        "proxy (407, Proxy-Authenticate) for callers that expect their proxy's challenge",
    )
    serve.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop: asyncio's own (the default) or uvloop (the uvloop extra); "
        "bench/echo_levers.py measures what each costs per call",
    )
    serve.add_argument(
        "--ws",
        choices=("websockets", "picows"),
        default="websockets",
        help="the WebSocket library: websockets (the default) or picows (the picows extra; "
        "no --control there); bench/echo_levers.py measures what each costs per call",
    )
    serve.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    _add_services(serve)


def _add_services(parser: argparse.ArgumentParser) -> None:
    from voxwire.services.registry import KINDS, service_names

    group = parser.add_argument_group(
        "services",
        "the agent's engines by name, NAME or NAME:URL (in place of the demo's offline "
        "ones; a MODULE:FACTORY agent gets them as FACTORY(services=...)). Keys come from "
        "the environment: OPENAI_API_KEY, ANTHROPIC_API_KEY, DEEPGRAM_API_KEY, "
        "ELEVENLABS_API_KEY, CARTESIA_API_KEY, sent only to the vendor's own host; for "
        "any other URL name the variable with --llm-key-env (--stt-, --tts-key-env).",
    )
    what = {"stt": "speech-to-text", "llm": "language model", "tts": "text-to-speech"}
    for kind in KINDS:
        group.add_argument(
            f"--{kind}",
            metavar="SPEC",
            help=f"the {what[kind]}: {', '.join(service_names(kind))}",
        )
    group.add_argument("--model", metavar="NAME", help="the language model's model")
    group.add_argument("--stt-model", metavar="NAME", help="the speech-to-text model")
    group.add_argument("--tts-model", metavar="NAME", help="the text-to-speech model")
    group.add_argument("--voice", metavar="NAME", help="the text-to-speech voice (id)")
    for kind in KINDS:
        group.add_argument(
            f"--{kind}-key-env",
            metavar="VAR",
            help=f"the environment variable holding the {kind} key",
        )


_LINE_RATES = {"webrtc": 48000, "sip": 8000}  # the transports that are not codecs


def _services(args: argparse.Namespace, protocol: str) -> Any:
    """The services the options chose (a ServiceChoice), for ``protocol``'s line rate
    (WebRTC's Opus runs at 48 kHz; SIP's is G.711's 8 kHz unless Opus is negotiated)."""
    from voxwire.services.registry import ServiceChoice

    return ServiceChoice.parse(
        stt=args.stt,
        llm=args.llm,
        tts=args.tts,
        model=args.model,
        stt_model=args.stt_model,
        tts_model=args.tts_model,
        voice=args.voice,
        stt_key_env=args.stt_key_env,
        llm_key_env=args.llm_key_env,
        tts_key_env=args.tts_key_env,
        line_rate=_LINE_RATES.get(protocol) or CODECS[protocol].default_rate,
    )


def _codecs(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names or any(n not in ("pcmu", "pcma", "opus") for n in names):
        raise argparse.ArgumentTypeError(f"expected a list of pcmu, pcma, opus; got {value!r}")
    return names


def _port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) <= int(high) < 65536:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH ports, got {value!r}")
    return int(low), int(high)


def _add_call(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    call = sub.add_parser(
        "call",
        help="call a media-stream server as a simulated phone",
        description="Play the provider's side of a call: open the stream, say a phrase in "
        "real time, play what comes back, echo marks once played, honour clear, and report "
        "what was heard with the reply and barge-in timings.",
    )
    call.add_argument("url", help="ws://host:port/path, or host:port for audiosocket")
    call.add_argument("--protocol", required=True, choices=_PROTOCOLS)
    what = call.add_mutually_exclusive_group()
    what.add_argument("--say", metavar="WAV", type=_wav, help="16-bit PCM WAV file to say")
    what.add_argument(
        "--say-text", metavar="TEXT", help="text to say, spoken by espeak-ng (espeakng-loader)"
    )
    call.add_argument(
        "--barge-in",
        action="store_true",
        help="talk over the reply once it has played for --barge-in-after seconds",
    )
    call.add_argument(
        "--barge-in-text",
        default="Sorry to interrupt you there.",
        metavar="TEXT",
        help="what to say over the reply (default: a short phrase; the --say file without "
        "espeak-ng)",
    )
    call.add_argument("--barge-in-after", type=_number(float, 0.0, 600.0), default=0.4, metavar="S")
    call.add_argument(
        "--rate",
        type=_number(int, 8000, 48000),
        default=None,
        help="line rate, 8000-48000, where the protocol allows",
    )
    percent = _number(float, 0.0, 100.0)
    delay = _number(float, 0.0, 10000.0, " ms")
    call.add_argument("--delay", type=delay, default=0.0, metavar="MS", help="one-way delay")
    call.add_argument("--jitter", type=delay, default=0.0, metavar="MS", help="delay deviation")
    call.add_argument("--loss", type=percent, default=0.0, metavar="PCT", help="media lost, %%")
    call.add_argument(
        "--reorder", type=percent, default=0.0, metavar="PCT", help="media reordered, %%"
    )
    call.add_argument("--seed", type=int, default=0, help="seed of the impairment model")
    call.add_argument(
        "--timeout",
        type=_number(float, 0.1, 86400.0),
        default=60.0,
        metavar="S",
        help="give up after S seconds",
    )
    call.add_argument(
        "--token",
        default=os.environ.get("VOXWIRE_TOKEN"),
        help="send this token with the upgrade request (Authorization: Bearer; a shared "
        "token or one from 'voxwire token'); default $VOXWIRE_TOKEN",
    )
    call.add_argument("--save-heard", metavar="WAV", help="write what the phone played to a WAV")
    call.add_argument(
        "--strict",
        action="store_true",
        help="check every message the server sends against the provider's documented "
        "format; report each violation and exit 1 if there was one",
    )
    call.add_argument("--json", action="store_true", help="print the report as JSON")
    call.add_argument(
        "--tls-ca",
        metavar="PEM",
        help="trust this certificate (bundle) for wss:// and tls:// instead of the system's",
    )


def _add_loadtest(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    load = sub.add_parser(
        "loadtest",
        help="call a media-stream server with many simulated phones at once",
        description="Place N simulated calls (the phone of 'voxwire call') at once over real "
        "sockets, each talking for --duration seconds (every other turn over the reply), "
        "and report reply and clear latency, outbound pacing, missed replies, errors by "
        "close code, the generator's own CPU and lateness, and the server's CPU per call "
        "when given its process id.",
    )
    load.add_argument("url", help="ws://host:port/path, or host:port for audiosocket")
    load.add_argument("--protocol", required=True, choices=_PROTOCOLS)
    load.add_argument("--calls", type=int, required=True, metavar="N", help="calls at once")
    load.add_argument(
        "--duration", type=float, default=10.0, metavar="S", help="seconds per call (10)"
    )
    load.add_argument(
        "--ramp", type=float, default=1.0, metavar="R", help="seconds to start the calls over (1)"
    )
    load.add_argument(
        "--barge-every",
        type=int,
        default=2,
        metavar="K",
        help="talk over every K-th reply (default 2; 0: never)",
    )
    load.add_argument("--say", metavar="WAV", help="16-bit PCM WAV file to say (default espeak-ng)")
    load.add_argument(
        "--server-pid",
        type=int,
        default=None,
        metavar="PID",
        help="measure this process's CPU (and its children's) per call, from /proc",
    )
    load.add_argument("--json", action="store_true", help="print the report as JSON, no progress")


def _loadtest(args: argparse.Namespace) -> int:
    from voxwire.sim import PROVIDERS
    from voxwire.sim.load import LoadProgress, run_load
    from voxwire.sim.speech import SpeechUnavailable, read_wav, synthesize

    rate = PROVIDERS[args.protocol].default_rate
    try:
        speech = read_wav(args.say, rate) if args.say else synthesize("Testing the line.", rate)
        barge = synthesize("Sorry to interrupt.", rate, seed=2) if not args.say else speech
    except (SpeechUnavailable, OSError, ValueError) as exc:
        print(f"voxwire loadtest: {exc}", file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()

    def show(progress: LoadProgress) -> None:
        if args.json:
            return
        end = "" if tty and progress.ended < progress.calls else "\n"
        print(("\r" if tty else "") + progress.line(), end=end, file=sys.stderr, flush=True)

    try:
        report = asyncio.run(
            run_load(
                args.url,
                args.protocol,
                args.calls,
                duration=args.duration,
                ramp=args.ramp,
                speech=speech,
                barge_in=barge,
                barge_every=args.barge_every,
                server_pid=args.server_pid,
                progress=show,
                progress_interval=1.0 if tty else 5.0,
            )
        )
    except (ValueError, ProcessLookupError) as exc:
        print(f"voxwire loadtest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    ok = report.completed == args.calls and report.replies_missed == 0
    return 0 if ok else 1


_KEY_ENV = "VOXWIRE_TOKEN_KEY"


def _add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser(
        "token",
        help="mint a signed, expiring, single-use token for one call",
        description="Print a token for one call, signed (HMAC-SHA256) with the first key of "
        f"the key set in ${_KEY_ENV} or --key-file (ID:SECRET lines, the secret at least 16 "
        "bytes). 'voxwire serve' with the same key set accepts it once, until it expires.",
    )
    token.add_argument(
        "--ttl", type=_positive_float, default=60.0, metavar="S", help="lifetime (default 60)"
    )
    token.add_argument("--call", required=True, metavar="ID", help="the call it is for")
    token.add_argument("--key-file", metavar="FILE", help=f"the key set (default ${_KEY_ENV})")
    token.add_argument("--key-id", metavar="ID", help="mint with this key of the set")


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _key_set(
    key_file: str | None, command: str, *, required: bool, used_tokens: str | None = None
) -> Any:
    """The :class:`~voxwire.security.CallTokens` of ``--key-file`` or the environment
    (remembering used tokens in the SQLite file ``used_tokens`` if given); ``None`` when
    neither is given and not ``required``. Raises SystemExit(2) with a message (never the
    key) when the key set or the file cannot be read."""
    import sqlite3

    from voxwire.security import CallTokens, parse_keys
    from voxwire.used_tokens import SqliteUsedTokens

    if key_file is not None:
        try:
            with open(key_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            print(f"voxwire {command}: cannot read the key file: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        where = key_file
    elif os.environ.get(_KEY_ENV):
        text, where = os.environ[_KEY_ENV], f"${_KEY_ENV}"
    elif required:
        print(f"voxwire {command}: give --key-file or set ${_KEY_ENV}", file=sys.stderr)
        raise SystemExit(2)
    else:
        return None
    try:
        keys = parse_keys(text)
    except ValueError as exc:
        print(f"voxwire {command}: {where}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    used = None
    if used_tokens is not None:
        try:
            used = SqliteUsedTokens(used_tokens)
        except sqlite3.Error as exc:
            print(f"voxwire {command}: --used-tokens {used_tokens}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    try:
        return CallTokens(keys, used=used)
    except ValueError as exc:
        print(f"voxwire {command}: {where}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _token(args: argparse.Namespace) -> int:
    tokens = _key_set(args.key_file, "token", required=True)
    try:
        print(tokens.mint(args.call, args.ttl, key_id=args.key_id))
    except ValueError as exc:
        print(f"voxwire token: {exc}", file=sys.stderr)
        return 2
    return 0


def _bench(names: Sequence[str], quick: bool, as_json: bool) -> int:
    tables: list[Table] = []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        started = time.perf_counter()
        result: list[Table] = module.run(quick=quick)
        elapsed = time.perf_counter() - started
        tables += result
        if not as_json:
            for table in result:
                print(table.render(), end="\n\n", flush=True)
            print(f"[{name}: {elapsed:.1f} s]", end="\n\n", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps([t.as_dict() for t in tables], indent=2))
    return 0


def _load_agent(spec: str, services: Any = None) -> Any:
    """``MODULE:FACTORY`` (or a built-in name) -> the agent the factory returns; with
    ``services`` chosen, ``FACTORY(services=services)``."""
    builtin = {"demo": "voxwire.agents.demo:build_agent"}
    target = builtin.get(spec, spec)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"--agent takes MODULE:FACTORY or one of {', '.join(builtin)}, got {spec!r}"
        )
    factory = getattr(importlib.import_module(module_name), attr)
    if not services:
        return factory()
    try:
        inspect.signature(factory).bind(services=services)
    except (TypeError, ValueError):
        raise ValueError(
            f"{target} takes no services= argument, so --stt/--llm/--tts cannot reach it"
        ) from None
    return factory(services=services)


_NOT_TAKEN = {
    "webrtc": (
        "workers",
        "max_calls",
        "agent_port",
        "metrics",
        "record",
        "audit_log",
        "max_per_address",
        "store",
        "records",
        "control",
    ),
    "sip": (
        "workers",
        "agent_port",
        "metrics",
        "key_file",
        "used_tokens",
        "record",
        "audit_log",
        "max_per_address",
        "store",
        "records",
    ),
}
"""The serve options the WebRTC and SIP servers do not take yet: refused, not ignored."""


def _refuse(message: str, command: str = "serve") -> NoReturn:
    """Print ``voxwire COMMAND: message`` and leave with status 2 (``main`` returns it)."""
    print(f"voxwire {command}: {message}", file=sys.stderr)
    raise SystemExit(2)


def _serve_tls(args: argparse.Namespace) -> Any:
    """The server's TLS context from ``--tls-cert`` and ``--tls-key`` (None without them);
    refused (status 2) when only one is given or they cannot be loaded."""
    if (args.tls_cert is None) != (args.tls_key is None):
        _refuse("--tls-cert and --tls-key go together")
    if args.tls_cert is None:
        return None
    import ssl

    from voxwire.aio.tls import server_context

    try:
        return server_context(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        _refuse(f"cannot load the TLS certificate and key: {exc}")


def _chosen_services(args: argparse.Namespace, protocol: str) -> Any:
    """The services ``--stt/--llm/--tts`` chose for ``protocol``; refused (status 2) when
    they cannot be had or come without ``--agent``."""
    from voxwire.services.registry import ServiceConfigError

    try:
        services = _services(args, protocol)
    except ServiceConfigError as exc:
        _refuse(str(exc), args.command)
    if services and not args.agent:
        _refuse("--stt, --llm and --tts need --agent", args.command)
    return services


def _chosen_agent(args: argparse.Namespace, services: Any) -> Any:
    """The ``--agent`` (with ``services``), or None for the echo agent; refused (status 2)
    when it cannot be loaded."""
    from voxwire.services.registry import ServiceConfigError

    if not args.agent:
        return None
    try:
        return _load_agent(args.agent, services)
    except ServiceConfigError as exc:
        _refuse(str(exc), args.command)
    except (ImportError, AttributeError, ValueError) as exc:
        _refuse(f"cannot load the agent: {exc}", args.command)


def _run_served(main: Coroutine[Any, Any, _T], args: argparse.Namespace) -> _T:
    """Run ``main`` on the event loop ``--loop`` names (asyncio's own or uvloop's)."""
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            main.close()
            _refuse("--loop uvloop needs uvloop: pip install 'voxwire[uvloop]'")
        return uvloop.run(main)
    return asyncio.run(main)


def _serve(args: argparse.Namespace) -> int:
    from voxwire.agents.server import PIPELINE_RATE, serve_agent, serve_echo
    from voxwire.aio.admission import Admission
    from voxwire.security import TokenAuth

    if args.gateway and args.protocol != "sip":
        _refuse("--gateway bridges SIP calls: use it with --protocol sip")

    if args.workers < 0 or (args.max_calls is not None and args.max_calls < 1):
        print("voxwire serve: --workers must be >= 0 and --max-calls >= 1", file=sys.stderr)
        return 2
    if not args.drain_timeout >= 0:
        print("voxwire serve: --drain-timeout must be >= 0", file=sys.stderr)
        return 2

    if args.ws == "picows":
        why = None
        if args.protocol in _NOT_TAKEN or CODECS[args.protocol].transport == "tcp":
            why = f"--protocol {args.protocol} is not served over a WebSocket"
        elif args.control or args.control_token_file:
            why = "no --control there (picows reads GET requests only)"
        elif importlib.util.find_spec("picows") is None:
            why = "it needs picows: pip install 'voxwire[picows]'"
        if why is not None:
            print(f"voxwire serve: --ws picows: {why}", file=sys.stderr)
            return 2
    if args.protocol in _NOT_TAKEN:
        unsupported = [
            "--" + option.replace("_", "-")
            for option in _NOT_TAKEN[args.protocol]
            if getattr(args, option) not in (None, False, 0)
        ]
        if unsupported:
            print(
                f"voxwire serve: {', '.join(unsupported)}: not available with --protocol "
                f"{args.protocol} yet (the media-stream protocols only)",
                file=sys.stderr,
            )
            return 2
        return _serve_webrtc(args) if args.protocol == "webrtc" else _serve_sip(args)
    tcp = CODECS[args.protocol].transport == "tcp"
    try:
        tokens = _key_set(args.key_file, "serve", required=False, used_tokens=args.used_tokens)
    except SystemExit as exc:
        return int(exc.code or 2)
    if (args.token or tokens is not None) and tcp:
        print("voxwire serve: AudioSocket carries no token", file=sys.stderr)
        return 2
    if tcp and (args.control or args.control_token_file):
        print("voxwire serve: AudioSocket has no HTTP port for --control", file=sys.stderr)
        return 2
    if args.control_port is not None:
        print("voxwire serve: --control-port is for --protocol sip", file=sys.stderr)
        return 2
    control_token = _control_token(args)
    if isinstance(control_token, int):
        return control_token
    tls = _serve_tls(args)

    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    port = args.port if args.port is not None else 9092 if tcp else 8080
    if args.audit_log is not None:
        from voxwire.audit import open_audit_log

        try:
            open_audit_log(args.audit_log)
        except OSError as exc:
            print(f"voxwire serve: cannot open the audit log: {exc}", file=sys.stderr)
            return 2

    recorder = None
    if args.record is not None and not args.workers:  # each worker makes its own
        from voxwire.recording import Recorder

        try:
            recorder = Recorder(args.record, args.record_retention_days)
        except OSError as exc:
            print(f"voxwire serve: --record {args.record}: {exc}", file=sys.stderr)
            return 2
    services = _chosen_services(args, args.protocol)
    kind = "echo agent" if not args.agent else f"agent {args.agent}"

    def describe(url: str) -> str:
        where = "" if tcp or args.path else " (any path)"
        workers = f" with {args.workers} workers" if args.workers else ""
        return f"voxwire serve: {args.protocol} {kind} on {url}{where}{workers}"

    def ready(url: str) -> None:
        print(describe(url), flush=True)
        for line in services.describe().splitlines():
            print(f"voxwire serve: {line}", flush=True)
        if args.loop != "asyncio":
            running = type(asyncio.get_running_loop())
            print(f"voxwire serve: event loop {running.__module__}.{running.__name__}", flush=True)

    if args.metrics and importlib.util.find_spec("prometheus_client") is None:
        print(
            "voxwire serve: --metrics needs prometheus-client: pip install 'voxwire[metrics]'",
            file=sys.stderr,
        )
        return 2
    if args.workers:  # the workers load the agent and its services, each its own
        return _supervise(args, port, describe)

    agent = _chosen_agent(args, services)
    if (args.store or args.records) and not hasattr(agent, "store"):
        print("voxwire serve: --store and --records need a voice agent (--agent)", file=sys.stderr)
        return 2

    from voxwire.aio.handshake import ConnectionCaps

    caps = ConnectionCaps(args.max_connections, args.max_per_address)

    async def run() -> None:
        stop = asyncio.Event()
        stop_now = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            (stop_now if stop.is_set() else stop).set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        if args.parent_pid is not None:
            orphan = loop.create_task(_watch_parent(args.parent_pid, stop))
        admission = Admission(args.max_calls)
        metrics = None
        if args.metrics:
            from voxwire.aio.metrics import ServerMetrics

            metrics = ServerMetrics(admission, lead=args.lead)
            if agent is not None and hasattr(agent, "on_end"):
                _observe_turns(agent, metrics)
        state = await _open_state(args, agent)
        if metrics is not None:
            if state.store is not None:
                metrics.count("store", state.store.counts.as_dict)
            if state.records is not None:
                metrics.count("records", state.records.counts.as_dict)
            if recorder is not None:
                metrics.count("recordings", recorder.counts)
        control = None
        if control_token is not None:
            from voxwire.aio.control import Control

            control = Control(control_token, server_delay_ms=20.0 + 1000 * args.lead)
        options: dict[str, Any] = {
            "control": control,
            "metrics": metrics,
            "admission": admission,
            "drain_timeout": args.drain_timeout,
            "stop_now": stop_now,
            "reuse_port": args.reuse_port,
            "agent_check": None if args.agent_port is None else (args.host, args.agent_port),
            "recorder": recorder,
        }
        if args.ws != "websockets":
            options["ws_library"] = args.ws
        auth = (
            TokenAuth(args.token or None, tokens=tokens)
            if args.token or tokens is not None
            else None
        )
        if agent is None:
            await serve_echo(
                args.protocol,
                args.host,
                port,
                path=args.path,
                lead=args.lead,
                hangover_ms=args.hangover_ms,
                auth=auth,
                stop=stop,
                ready=ready,
                ssl=tls,
                caps=caps,
                **options,
            )
            return
        try:
            await serve_agent(
                agent,
                args.protocol,
                args.host,
                port,
                pipeline_rate=getattr(agent, "pipeline_rate", PIPELINE_RATE),
                path=args.path,
                lead=args.lead,
                auth=auth,
                stop=stop,
                ready=ready,
                ssl=tls,
                caps=caps,
                **options,
            )
        finally:
            await services.aclose()
            await state.aclose()
        if args.parent_pid is not None:
            orphan.cancel()

    try:
        _run_served(run(), args)
    except OSError as exc:
        print(f"voxwire serve: {exc}", file=sys.stderr)
        return 1
    if args.parent_pid is not None:
        # drained: the supervisor forwards every signal it gets, a late one ends nothing
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    print("voxwire serve: stopped", flush=True)
    return 0


def _serve_webrtc(args: argparse.Namespace) -> int:
    import functools

    from voxwire.agents.echo import echo_handler
    from voxwire.agents.server import PIPELINE_RATE
    from voxwire.security import TokenAuth
    from voxwire.webrtc import WebRtcServer, WebRtcUnavailable, check_aiortc

    try:
        check_aiortc()
    except WebRtcUnavailable as exc:
        print(f"voxwire serve: {exc}", file=sys.stderr)
        return 2
    try:
        tokens = _key_set(args.key_file, "serve", required=False, used_tokens=args.used_tokens)
    except SystemExit as exc:
        return int(exc.code or 2)
    tls = _serve_tls(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("aioice").setLevel(logging.WARNING)
    services = _chosen_services(args, "webrtc")
    handler: Any = _chosen_agent(args, services)
    if handler is not None:
        kind = f"agent {args.agent}"
    else:
        handler = functools.partial(echo_handler, rate=PIPELINE_RATE, hangover_ms=args.hangover_ms)
        kind = "echo agent"
    server = WebRtcServer(
        handler,
        auth=TokenAuth(args.token or None, tokens=tokens)
        if args.token or tokens is not None
        else None,
        tls=tls,
        pipeline_rate=getattr(handler, "pipeline_rate", PIPELINE_RATE),
    )
    port = args.port if args.port is not None else 8080

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with server.serve(args.host, port) as url:
                print(f"voxwire serve: webrtc {kind}: open {url} (WHIP at {url}whip)", flush=True)
                for line in services.describe().splitlines():
                    print(f"voxwire serve: {line}", flush=True)
                await stop.wait()
                await server.aclose()
        finally:
            await services.aclose()

    try:
        _run_served(run(), args)
    except OSError as exc:
        print(f"voxwire serve: {exc}", file=sys.stderr)
        return 1
    print("voxwire serve: stopped", flush=True)
    return 0


class _State:
    """The conversation store and the call records of ``voxwire serve``, while it runs."""

    def __init__(self) -> None:
        self.store: Any = None
        self.records: Any = None
        self.retention: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        if self.retention is not None:
            self.retention.cancel()
        if self.records is not None:
            await self.records.aclose()
        if self.store is not None:
            await self.store.aclose()


async def _open_state(args: argparse.Namespace, agent: Any) -> _State:
    """Open ``--store`` and ``--records`` and attach them to the voice ``agent``;
    refused (status 2) when they cannot be opened."""
    import sqlite3

    state = _State()
    if args.store:
        from voxwire.store import open_store

        try:
            state.store = open_store(args.store, ttl=args.store_ttl)
        except (ValueError, ImportError, sqlite3.Error) as exc:
            _refuse(f"cannot open the store: {exc}")
        agent.store = state.store
        logging.getLogger("voxwire.store").info("conversations in %r", state.store)
    if args.records:
        from voxwire.store.records import CallRecords

        try:
            state.records = CallRecords(args.records, retention_days=args.records_retention_days)
        except (ValueError, sqlite3.Error) as exc:
            await state.aclose()
            _refuse(f"cannot open the call records: {exc}")
        state.retention = asyncio.get_running_loop().create_task(state.records.run_retention())
        _record_calls(agent, state.records, args.lead)
    return state


def _record_calls(agent: Any, records: Any, lead: float) -> None:
    """Chain the voice agent's ``on_end`` so that every call it held is recorded."""
    from voxwire.aio.metrics import call_quality
    from voxwire.aio.session import Call
    from voxwire.store.records import record_of

    user = agent.on_end

    def on_end(call: Any, result: Any) -> None:
        quality = call_quality(call, 20.0 + 1000 * lead, 0.0) if isinstance(call, Call) else None
        record = record_of(call, result, text=agent.log_text, quality=quality)
        if record is not None:
            records.submit(record)
        if user is not None:
            user(call, result)

    agent.on_end = on_end


def _observe_turns(agent: Any, metrics: Any) -> None:
    """Chain the voice agent's ``on_end`` so that ``metrics`` sees each call's turns."""
    user = agent.on_end

    def on_end(call: Any, result: Any) -> None:
        for turn in result.turns:
            metrics.turn_ended(turn, call)
        if user is not None:
            user(call, result)

    agent.on_end = on_end


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """Drain (set ``stop``) once the supervisor ``pid`` is gone (this process is
    re-parented)."""
    while os.getppid() == pid:
        await asyncio.sleep(1.0)
    logging.getLogger("voxwire.workers").warning("the supervisor %d is gone: draining", pid)
    stop.set()


def _worker_argv(argv: Sequence[str], port: int, parent: int) -> list[str]:
    """A worker's ``voxwire serve`` arguments: the supervisor's, without ``--workers``,
    on the reserved ``port``, sharing it."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--workers", "--port"):
            skip = "=" not in arg
            continue
        out.append(arg)
    return [*out, "--port", str(port), "--reuse-port", "--parent-pid", str(parent)]


def _supervise(args: argparse.Namespace, port: int, describe: Any) -> int:
    from voxwire.workers import Supervisor, reserve_port

    try:
        held = reserve_port(args.host, port)
    except OSError as exc:
        print(f"voxwire serve: {exc}", file=sys.stderr)
        return 1
    port = held.getsockname()[1]
    argv = _worker_argv(args.argv, port, os.getpid())
    private = None
    if args.used_tokens is None:  # a token used on one worker must not open another
        private = tempfile.TemporaryDirectory(prefix="voxwire-serve-")
        argv += ["--used-tokens", os.path.join(private.name, "used-tokens.sqlite")]

    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "voxwire", "serve", *argv]

    async def run() -> int:
        supervisor = Supervisor(command, args.workers, grace=args.drain_timeout + 10.0)
        return await supervisor.run(describe)

    with held:
        try:
            status = asyncio.run(run())
        finally:
            if private is not None:
                private.cleanup()
    return status


def _control_token(args: argparse.Namespace) -> str | int | None:
    """The control API's token of ``--control``/``--control-token-file``: None without
    them, the exit status 2 (said on stderr) when they are wrong."""
    if not (args.control or args.control_token_file):
        return None
    from voxwire.aio.control import load_token

    if not args.control:
        print("voxwire serve: --control-token-file needs --control", file=sys.stderr)
        return 2
    env = os.environ.get("VOXWIRE_CONTROL_TOKEN")
    if env is None and not args.control_token_file:
        print(
            "voxwire serve: --control needs $VOXWIRE_CONTROL_TOKEN or --control-token-file",
            file=sys.stderr,
        )
        return 2
    try:
        return load_token(None if args.control_token_file else env, args.control_token_file)
    except (ValueError, OSError) as exc:
        print(f"voxwire serve: the control token: {exc}", file=sys.stderr)
        return 2


def _serve_sip(args: argparse.Namespace) -> int:
    import functools

    from voxwire.agents.echo import EchoStats, echo_handler
    from voxwire.agents.server import PIPELINE_RATE
    from voxwire.aio.pacer import Pacer
    from voxwire.aio.sip import serve_sip

    if args.token:
        print("voxwire serve: SIP carries no token (use --sip-credentials)", file=sys.stderr)
        return 2
    try:
        auth = _sip_auth(args)
    except ValueError as exc:
        print(f"voxwire serve: {exc}", file=sys.stderr)
        return 2
    if args.control_port is not None and not (args.control or args.control_token_file):
        print("voxwire serve: --control-port needs --control", file=sys.stderr)
        return 2
    if args.control_port is not None and not 0 <= args.control_port < 65536:
        print("voxwire serve: --control-port must be a port number", file=sys.stderr)
        return 2
    control_token = _control_token(args)
    if isinstance(control_token, int):
        return control_token
    tls = _serve_tls(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    log = logging.getLogger("voxwire.agents")

    def ended(call: Any, stats: EchoStats) -> None:
        log.info(
            "sip call %r ended: %d utterance(s) echoed (%.1f s), %d barge-in(s)",
            getattr(call, "call_id", "?"),
            stats.utterances,
            stats.reply_seconds,
            stats.barge_ins,
        )

    services = _chosen_services(args, "sip")
    handler: Any = _chosen_agent(args, services)
    if args.gateway:
        from voxwire.agents.gateway import gateway

        protocol, _, url = args.gateway.partition(":")
        try:
            handler = gateway(protocol, url)
        except ValueError as exc:
            _refuse(f"--gateway: {exc}")
        kind = f"gateway to the {protocol} bot at {url}"
        rate = PIPELINE_RATE
    elif handler is not None:
        kind = f"agent {args.agent}"
        rate = getattr(handler, "pipeline_rate", PIPELINE_RATE)
    else:
        handler = functools.partial(
            echo_handler, rate=PIPELINE_RATE, hangover_ms=args.hangover_ms, on_end=ended
        )
        kind = "echo agent"
        rate = PIPELINE_RATE

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        pacer = Pacer(args.lead)
        server = await serve_sip(
            handler,
            args.host,
            5060 if args.port is None else args.port,
            media_host=args.media_host,
            rtp_ports=args.rtp_ports,
            codecs=args.codecs,
            tcp=args.tcp,
            tls=tls,
            tls_port=args.sip_tls_port,
            srtp=args.sip_srtp,
            pipeline_rate=rate,
            idle_timeout=args.rtp_timeout,
            max_calls=args.max_calls or 100,
            pacer=pacer,
            auth=auth,
        )
        port = server.local_addr[1]
        transports = "udp, tcp" if args.tcp else "udp"
        if server.tls_addr is not None:
            transports += f", tls {server.tls_addr[1]}"
        registration = None
        if args.sip_register:
            from voxwire.aio.sip_register import register_server

            registration = await register_server(
                server,
                args.sip_register,
                registrar=args.sip_registrar,
                user=args.sip_user,
                password=os.environ.get(args.sip_password_env) or None,
                expires=args.sip_register_expires,
            )
            if not registration.registered:
                log.warning("sip: not registered yet as %s (retrying)", args.sip_register)
        if auth is not None:
            log.info("sip calls authenticated: %r", auth)  # user count and networks only
        print(
            f"voxwire serve: sip {kind} on sip:{server.sip.host}:{port} ({transports})", flush=True
        )
        listener = None
        if control_token is not None:
            from voxwire.aio.control import Control, serve_control

            control = Control(control_token, server_delay_ms=20.0 + 1000 * args.lead)
            try:
                listener = await serve_control(
                    control,
                    server.controlled_calls,
                    args.host,
                    8080 if args.control_port is None else args.control_port,
                )
            except OSError:
                await server.aclose()
                await pacer.aclose()
                raise
            at = listener.sockets[0].getsockname()
            print(f"voxwire serve: control API on http://{at[0]}:{at[1]}/calls", flush=True)
        try:
            await stop.wait()
            # drain: OPTIONS and new INVITEs get 503 while the calls up finish
            server.drain()
            stop.clear()
            deadline = loop.time() + args.drain_timeout
            while server.calls and loop.time() < deadline and not stop.is_set():
                await asyncio.sleep(0.1)
        finally:
            if listener is not None:
                listener.close()
                await listener.wait_closed()
            if registration is not None:
                await registration.aclose()  # Expires: 0 before the socket goes
            await server.aclose()
            await pacer.aclose()

    try:
        _run_served(run(), args)
    except (OSError, ValueError) as exc:
        print(f"voxwire serve: {exc}", file=sys.stderr)
        return 1
    print("voxwire serve: stopped", flush=True)
    return 0


def _sip_auth(args: argparse.Namespace) -> Any:
    """The Authenticator of ``--sip-credentials``/``$VOXWIRE_SIP_CREDENTIALS`` and
    ``--sip-allow``, or None for neither; ValueError (never naming a password) when they
    are wrong."""
    from voxwire.sip.auth import Authenticator, load_credentials

    if args.sip_credentials is not None:
        try:
            with open(args.sip_credentials, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"--sip-credentials: cannot read {args.sip_credentials}: {exc}"
            ) from None
        where = args.sip_credentials
    else:
        text = os.environ.get("VOXWIRE_SIP_CREDENTIALS", "")
        where = "$VOXWIRE_SIP_CREDENTIALS"
    try:
        credentials = load_credentials(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    allow = [n for n in (args.sip_allow or "").split(",") if n.strip()]
    if args.sip_credentials is not None and not credentials:
        raise ValueError(f"{where}: no USER:PASSWORD line")
    if not credentials and not allow:
        return None
    algorithms = tuple(a.strip().upper() for a in args.sip_digest.split(",") if a.strip())
    return Authenticator(
        credentials,
        realm=args.sip_realm,
        allow=allow,
        algorithms=algorithms,
        proxy=args.sip_challenge == 407,
    )


def _call(args: argparse.Namespace) -> int:
    from voxwire.sim import PROVIDERS, CallPlan, CallReport, Network, place_call
    from voxwire.sim.speech import (
        DEFAULT_PHRASE,
        SpeechUnavailable,
        read_wav,
        synthesize,
        write_wav,
    )

    rate = args.rate or PROVIDERS[args.protocol].default_rate
    try:
        if args.say:
            speech = read_wav(args.say, rate)
        else:
            speech = synthesize(args.say_text or DEFAULT_PHRASE, rate)
        barge = None
        if args.barge_in:
            try:
                barge = synthesize(args.barge_in_text, rate, seed=2)
            except SpeechUnavailable:
                barge = speech
    except (SpeechUnavailable, OSError, ValueError) as exc:
        print(f"voxwire call: {exc}", file=sys.stderr)
        return 2
    plan = CallPlan(speech, barge_in=barge, barge_in_after=args.barge_in_after)
    network = Network(
        args.delay / 1000, args.jitter / 1000, args.loss / 100, args.reorder / 100, args.seed
    )

    token = args.token or None
    if token and PROVIDERS[args.protocol].raw_tcp:
        print("voxwire call: AudioSocket carries no token", file=sys.stderr)
        return 2
    tls = None
    if args.tls_ca is not None:
        import ssl

        from voxwire.aio.tls import client_context

        try:
            tls = client_context(args.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            print(f"voxwire call: cannot load --tls-ca: {exc}", file=sys.stderr)
            return 2

    async def run() -> CallReport:
        return await asyncio.wait_for(
            place_call(
                args.url,
                args.protocol,
                plan,
                rate=rate,
                network=network,
                ssl=tls,
                token=token,
                strict=args.strict,
            ),
            args.timeout,
        )

    try:
        report = asyncio.run(run())
    except Exception as exc:  # a refused connection or handshake, the timeout
        response = getattr(exc, "response", None)
        if response is not None and hasattr(response, "status_code"):
            body = bytes(getattr(response, "body", b"") or b"").decode("utf-8", "replace")
            print(
                f"voxwire call: refused by the server: HTTP {response.status_code} "
                f"{body.strip()}".rstrip(),
                file=sys.stderr,
            )
        else:
            print(f"voxwire call: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.save_heard:
        write_wav(args.save_heard, report.heard, report.rate)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.summary())
    replied = all(u.reply_start is not None for u in report.utterances)
    return 0 if replied and report.utterances and not report.violations else 1


def _demo(args: argparse.Namespace) -> int:
    try:
        from voxwire.agents.demo import run_demo
    except ImportError as exc:
        print(
            f"voxwire demo: {exc}; install the demo's engines: pip install 'voxwire[demo]'",
            file=sys.stderr,
        )
        return 2
    from voxwire.services.registry import ServiceConfigError

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        services = _services(args, args.protocol)
        report = asyncio.run(run_demo(args.protocol, services=services))
    except ServiceConfigError as exc:
        print(f"voxwire demo: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"voxwire demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
    if services:
        # another engine answers in its own words: the call went through when every
        # caller turn got a reply, with no service failing
        ok = all(t.reply_start is not None for t in report.phone.turns) and not report.errors
    else:
        ok = report.hung_up and bool(report.bookings) and bool(report.history_after_barge_in)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``voxwire`` command line; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["knowledge"]:
        # its own parser takes every argument, --help included
        from voxwire.knowledge import knowledge_main

        return knowledge_main(argv[1:])
    args = _build_parser().parse_args(argv)
    args.argv = argv[1:]  # a command's own arguments (``serve --workers`` passes them on)
    if args.command == "bench":
        return _bench(args.only, args.quick, args.json)
    if args.command == "serve":
        try:
            return _serve(args)
        except SystemExit as exc:  # a refusal (_refuse) with its message printed
            return int(exc.code or 0) if isinstance(exc.code, int) else 2
    if args.command == "call":
        return _call(args)
    if args.command == "dial":
        return dial_main(args, lambda a: _chosen_agent(a, _chosen_services(a, "sip")))
    if args.command == "loadtest":
        return _loadtest(args)
    if args.command == "demo":
        return _demo(args)
    if args.command == "token":
        return _token(args)

    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
