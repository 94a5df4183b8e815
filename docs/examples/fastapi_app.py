"""A media-stream endpoint inside a FastAPI app, with a handler that plays 24 kHz audio.

Run it with any ASGI server::

    uvicorn fastapi_app:app --host 0.0.0.0 --port 8080     # from docs/examples/

and point a Twilio number's voice webhook at ``https://<your host>/voice``. The TwiML it
returns connects the call's media stream to ``wss://<your host>/media``, where the
handler greets the caller with a 24 kHz tone (a TTS service's rate, converted to the
8 kHz line by voxwire) and then echoes what it hears.

Add the media app as a WebSocket route: ``app.router.add_websocket_route("/media",
media)`` (in Starlette, ``WebSocketRoute("/media", media)``).
``app.mount("/media", media)`` serves only ``/media/`` and the paths below it (Starlette's
``Mount`` matches the prefix followed by a slash), so a provider connecting to ``/media``
gets HTTP 403 from it.
"""

from __future__ import annotations

import numpy as np
from fastapi import FastAPI, Request, Response

from voxwire.aio import Call
from voxwire.aio.asgi import MediaStreamApp
from voxwire.protocols import Audio, CallStarted
from voxwire.protocols.twilio import connect_stream_twiml

TTS_RATE = 24000


def greeting_tone(seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    """What a TTS service would send: mono int16 at 24 kHz."""
    t = np.arange(int(seconds * TTS_RATE)) / TTS_RATE
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def greet_and_echo(call: Call) -> None:
    async for event in call:
        if isinstance(event, CallStarted):
            call.play(greeting_tone(), TTS_RATE)  # converted to the line rate
            call.flush()
        elif isinstance(event, Audio):
            call.play(event.pcm, event.sample_rate)


media = MediaStreamApp(greet_and_echo, "twilio")
app = FastAPI()
app.router.add_websocket_route("/media", media)


@app.post("/voice")
async def voice(request: Request) -> Response:
    """Twilio's voice webhook: answer the call with a stream to this app's /media."""
    host = request.headers.get("host", request.url.netloc)
    return Response(connect_stream_twiml(f"wss://{host}/media"), media_type="text/xml")
