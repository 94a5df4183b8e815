"""``voxwire dial sip:user@host[:port]``: place one outbound SIP call with an agent.

The exit status says how the call went, so a campaign script can act on it:

=====  ==========================================================================
0      answered (the agent ran until either side hung up, or ``--max-duration``)
1      failed (no response, a 4xx-6xx other than those below, an unusable answer)
2      usage error (bad options, an agent that cannot be loaded)
3      busy (486 Busy Here, 600 Busy Everywhere)
4      no answer (nothing answered in ``--ring-timeout``: cancelled; 408, 480, 487)
5      transferred (``--transfer-to`` and the callee reached the target)
=====  ==========================================================================

The digest password comes from the environment (``$VOXWIRE_SIP_PASSWORD``, or the
variable ``--sip-password-env`` names), never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import signal
import sys
from typing import Any, Literal

from voxwire.sip.uac import uri_address

__all__ = ["EXIT_CODES", "add_dial", "dial_main"]

EXIT_CODES = {"answered": 0, "failed": 1, "busy": 3, "no_answer": 4, "transferred": 5}


def add_dial(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    dial = sub.add_parser(
        "dial",
        help="place an outbound SIP call and run an agent on it",
        description="Call sip:user@host[:port] over UDP, TCP or TLS, run the echo agent or "
        "--agent on "
        "the answered call, and leave with a status that says how it went: 0 answered, "
        "1 failed, 3 busy, 4 no answer, 5 transferred (2: usage).",
    )
    dial.add_argument("uri", help="who to call: sip:user@host[:port]")
    what = dial.add_mutually_exclusive_group()
    what.add_argument("--echo", action="store_true", help="run the echo agent (the default)")
    what.add_argument("--agent", metavar="SPEC", help="demo, or MODULE:FACTORY of a voice agent")
    dial.add_argument(
        "--host", default="127.0.0.1", help="the address to send from (default 127.0.0.1)"
    )
    dial.add_argument("--port", type=int, default=0, help="the local SIP port (default: any)")
    dial.add_argument(
        "--transport",
        choices=("udp", "tcp", "tls"),
        help="the signalling transport (default: tls for a sips: URI or ;transport=tls, "
        "tcp for ;transport=tcp, else udp)",
    )
    dial.add_argument(
        "--srtp",
        action="store_true",
        help="offer SDES-SRTP only (RTP/SAVP, AES_CM_128_HMAC_SHA1_80); needs --transport tls",
    )
    dial.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="over TLS, trust the certificates in FILE (PEM) instead of the system's store",
    )
    dial.add_argument(
        "--media-host", help="the address RTP binds to and the SDP names (default --host)"
    )
    dial.add_argument(
        "--codecs",
        default="pcmu,pcma",
        help="the codecs offered, in order, of pcmu, pcma, opus (default pcmu,pcma)",
    )
    dial.add_argument("--sip-user", default="voxwire", help="the From user and digest user")
    dial.add_argument(
        "--sip-password-env",
        default="VOXWIRE_SIP_PASSWORD",
        metavar="VAR",
        help="the environment variable holding the digest password (default "
        "VOXWIRE_SIP_PASSWORD); unset: challenges are not answered",
    )
    dial.add_argument(
        "--ring-timeout", type=float, default=30.0, metavar="S", help="cancel after S s"
    )
    dial.add_argument(
        "--max-duration",
        type=float,
        default=3600.0,
        metavar="S",
        help="hang up an answered call after S s (default 3600)",
    )
    dial.add_argument(
        "--rtp-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="hang up after S s without RTP (default 15)",
    )
    dial.add_argument(
        "--transfer-to",
        metavar="URI",
        help="blind-transfer the callee to URI (REFER) --transfer-after s into the call",
    )
    dial.add_argument("--transfer-after", type=float, default=1.0, metavar="S")
    dial.add_argument("--json", action="store_true", help="print the result as JSON")
    dial.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return dial


def _uri_transport(uri: str) -> Literal["udp", "tcp", "tls"]:
    """The transport a URI asks for: TLS for ``sips:`` (RFC 3261 section 19.1), else its
    ``transport`` parameter, else UDP."""
    if uri.lower().startswith("sips:"):
        return "tls"
    for param in uri.split("?")[0].split(";")[1:]:
        name, _, value = param.partition("=")
        value = value.strip().lower()
        if name.strip().lower() == "transport" and value in ("tcp", "tls"):
            return "tcp" if value == "tcp" else "tls"
    return "udp"


def _fail(message: str) -> int:
    print(f"voxwire dial: {message}", file=sys.stderr)
    return 2


def dial_main(args: argparse.Namespace, load_agent: Any) -> int:
    """Run ``voxwire dial``; ``load_agent(args)`` returns the ``--agent`` handler (the
    command line's loader) or None for the echo agent."""
    from voxwire.agents.echo import echo_handler
    from voxwire.agents.server import PIPELINE_RATE
    from voxwire.aio.pacer import Pacer
    from voxwire.aio.sip_uac import OutboundCall, open_dialer
    from voxwire.sip.srtp import SrtpUnavailable

    if uri_address(args.uri) is None:
        return _fail(f"not a sip: URI with a host: {args.uri!r}")
    codecs = tuple(c.strip().lower() for c in args.codecs.split(",") if c.strip())
    if not codecs or any(c not in ("pcmu", "pcma", "opus") for c in codecs):
        return _fail("--codecs: a comma-separated list of pcmu, pcma, opus")
    if not (args.ring_timeout > 0 and args.max_duration > 0 and args.rtp_timeout > 0):
        return _fail("--ring-timeout, --max-duration and --rtp-timeout must be > 0")
    if args.transfer_to is not None and uri_address(args.transfer_to) is None:
        return _fail(f"--transfer-to: not a sip: URI with a host: {args.transfer_to!r}")
    transport: Literal["udp", "tcp", "tls"] = args.transport or _uri_transport(args.uri)
    context = None
    if args.tls_ca is not None:
        if transport != "tls":
            return _fail("--tls-ca is for --transport tls")
        import ssl

        try:
            context = ssl.create_default_context(cafile=args.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            return _fail(f"--tls-ca: cannot load {args.tls_ca!r} ({exc})")
    if args.srtp and transport != "tls":
        return _fail("--srtp needs --transport tls (the keys travel in the SDP)")
    password = os.environ.get(args.sip_password_env) or None
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        handler: Any = load_agent(args)
    except SystemExit as exc:  # a refusal, its message printed
        return exc.code if isinstance(exc.code, int) else 2
    rate = PIPELINE_RATE
    if handler is None:
        handler = functools.partial(echo_handler, rate=PIPELINE_RATE)
    else:
        rate = getattr(handler, "pipeline_rate", PIPELINE_RATE)
    transferred: list[bool] = []

    async def on_call(call: OutboundCall) -> None:
        loop = asyncio.get_running_loop()
        agent = loop.create_task(handler(call))
        try:
            if args.transfer_to is not None:
                done, _ = await asyncio.wait({agent}, timeout=args.transfer_after)
                if not done:
                    transferred.append(await call.transfer(args.transfer_to))
            await asyncio.wait({agent}, timeout=args.max_duration)
        finally:
            if not agent.done():
                await call.close()
                await asyncio.wait({agent}, timeout=2.0)
                agent.cancel()

    async def run() -> dict[str, Any]:
        pacer = Pacer(0.04)
        dialer = await open_dialer(
            args.host,
            args.port,
            media_host=args.media_host,
            user=args.sip_user,
            password=password,
            codecs=codecs,
            pipeline_rate=rate,
            idle_timeout=args.rtp_timeout,
            pacer=pacer,
            transport=transport,
            ssl_context=context,
            srtp=args.srtp,
        )
        loop = asyncio.get_running_loop()
        task = loop.create_task(dialer.dial(args.uri, on_call, ring_timeout=args.ring_timeout))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            result = await task
        except asyncio.CancelledError:
            return {"outcome": "failed", "status": 0, "reason": "interrupted"}
        finally:
            await dialer.aclose()
            await pacer.aclose()
        outcome: str = result.outcome
        if transferred and transferred[-1]:
            outcome = "transferred"
        report: dict[str, Any] = {
            "outcome": outcome,
            "status": result.status,
            "reason": result.reason,
            "progress": result.progress,
        }
        if result.call is not None:
            report["seconds"] = round(result.call.played_seconds, 2)
            report["ended_by_remote"] = result.call.ended_by_remote
            report["transfer_statuses"] = result.call.transfer_statuses
        return report

    try:
        report = asyncio.run(run())
    except (OSError, ValueError, SrtpUnavailable) as exc:
        print(f"voxwire dial: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report), flush=True)
    else:
        print(
            f"voxwire dial: {report['outcome']} ({report['status']} {report['reason']})".rstrip(),
            flush=True,
        )
    return EXIT_CODES[report["outcome"]]
