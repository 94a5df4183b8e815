"""A voice agent inside your own web app: Starlette (FastAPI works the same way).

Run it with any ASGI server::

    uvicorn starlette_agent:app --host 0.0.0.0 --port 8080     # from docs/examples/

and point a Twilio number's voice webhook at ``https://<your host>/voice``: the TwiML it
returns connects the call's media stream to ``wss://<your host>/media``, where the agent
answers. The agent here is voxwire's offline demo receptionist (``voxwire demo``); put
your own ``VoiceAgent(stt, llm, tts, ...)`` in its place. In FastAPI::

    app = FastAPI()
    app.add_api_route("/voice", twiml, methods=["POST"])
    app.router.add_websocket_route("/media", media)    # not app.mount: see fastapi_app.py
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from voxwire.agents.demo import build_agent
from voxwire.agents.server import codec_factory
from voxwire.aio.asgi import MediaStreamApp
from voxwire.protocols.twilio import connect_stream_twiml

agent = build_agent()
# the media stream decodes caller audio straight to the recogniser's rate
media = MediaStreamApp(agent, codec_factory("twilio", agent.pipeline_rate))


async def twiml(request: Request) -> Response:
    """Twilio's voice webhook: answer the call with a stream to this app's /media."""
    host = request.headers.get("host", request.url.netloc)
    return Response(connect_stream_twiml(f"wss://{host}/media"), media_type="text/xml")


app = Starlette(routes=[Route("/voice", twiml, methods=["POST"]), WebSocketRoute("/media", media)])
