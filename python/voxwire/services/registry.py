"""Services chosen by name and URL, as ``voxwire serve --llm ...`` takes them.

A *spec* names a service and, for a service on the network, where it is: ``NAME`` or
``NAME:VALUE``. :func:`parse_service` checks one against the table below (the name, the
URL, the options, the key) and returns a :class:`ServiceSpec`, which
:meth:`ServiceSpec.build` turns into the client or engine. :class:`ServiceChoice` holds
the three kinds an agent needs and builds them with what the call line allows (its rate).

====================  =====  ==========================================================
spec                  kind   service
====================  =====  ==========================================================
``openai[:URL]``      llm    Chat Completions (``https://api.openai.com/v1``)
                      stt    transcriptions, per utterance (``whisper-1``)
                      tts    ``/audio/speech``, raw PCM at 24 kHz
``openai-compatible:  all    the same protocols on another server (Ollama, vLLM,
URL``                        llama.cpp's server, a Whisper or speech server): URL needed
``openai-whisper      stt    the same as ``openai`` for speech-to-text
[:URL]``
``anthropic[:URL]``   llm    the Messages API (``https://api.anthropic.com``)
``deepgram[:URL]``    stt    live streaming (``wss://api.deepgram.com/v1/listen``)
``elevenlabs[:URL]``  tts    the multi-context WebSocket (``wss://api.elevenlabs.io``)
``cartesia[:URL]``    tts    the TTS WebSocket (``wss://api.cartesia.ai``)
``pocketsphinx``      stt    offline recogniser
``espeak``            tts    offline synthesiser (espeak-ng)
``rules``             llm    the deterministic local model of the demo
``llama[:GGUF]``      llm    a GGUF model run in-process by llama.cpp (SmolLM2 by default)
====================  =====  ==========================================================

Options: ``model`` (the LLM's model, the STT's or TTS's model), ``voice`` (TTS).

Keys come from the environment, never from the command line: a vendor's own variable
(``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``DEEPGRAM_API_KEY``, ``ELEVENLABS_API_KEY``,
``CARTESIA_API_KEY``) is read when the service is at the vendor's own host, and is
required there. To any other URL (a proxy, a self-hosted server, a local test server) a
key is sent only when the variable holding it is named (``key_env``, the command line's
``--llm-key-env NAME``): a key set for one vendor is never sent to a server it was not
meant for. A key is never printed: not in a ``repr``, an error or :meth:`ServiceSpec.
describe`.

Every mistake is a :class:`ServiceConfigError` with a message that says what to change:
an unknown name (with the names of that kind), a URL of the wrong scheme or with
credentials or a query in it, a missing ``--model``, an option the service does not take,
a key variable that is not set.

>>> from voxwire.services.registry import parse_service
>>> spec = parse_service("llm", "openai-compatible:http://127.0.0.1:11434/v1", model="llama3.2")
>>> spec.describe()
'llm openai-compatible, model llama3.2, at http://127.0.0.1:11434/v1, no key'
>>> parse_service("tts", "elevnlabs")
Traceback (most recent call last):
...
voxwire...ServiceConfigError: --tts: unknown service 'elevnlabs' (did you mean 'elevenlabs'?); ...
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from voxwire.errors import ServiceError, VoxwireError
from voxwire.services.base import LanguageModel, SpeechToText, TextToSpeech

if TYPE_CHECKING:  # pragma: no cover
    from voxwire.knowledge import KnowledgeBase

__all__ = [
    "KINDS",
    "SERVICES",
    "ServiceChoice",
    "ServiceConfigError",
    "ServiceEntry",
    "ServiceSpec",
    "parse_service",
    "service_names",
]

Kind = Literal["stt", "llm", "tts"]
KINDS: Final[tuple[Kind, ...]] = ("stt", "llm", "tts")

_HTTP: Final = ("http", "https")
_WS: Final = ("ws", "wss")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SPEC_NAME: Final = re.compile(r"[a-z][a-z0-9-]*\Z")
_SHOWN_NAME: Final = re.compile(r"[a-z][a-z-]{0,23}\Z")


class ServiceConfigError(VoxwireError, ValueError):
    """A service spec, option or key that cannot be used; the message says what to change
    (and never holds a key)."""


@dataclass(frozen=True)
class ServiceEntry:
    """What one name of one kind means: where it is, what it takes, where its key is."""

    kind: Kind
    name: str
    summary: str
    value: Literal["url", "path", "none"] = "url"
    """What may follow the colon: a URL, a file path, or nothing."""
    default_url: str | None = None
    """Where the vendor serves it; ``None``: a URL must be given."""
    schemes: tuple[str, ...] = _HTTP
    key_env: str | None = None
    """The vendor's variable, read when the URL is at :attr:`key_hosts`."""
    key_hosts: tuple[str, ...] = ()
    key_required: bool = False
    """The client cannot run without a key."""
    options: frozenset[str] = frozenset()
    """Which of ``model`` and ``voice`` it takes."""
    defaults: Mapping[str, str] = field(default_factory=dict)
    """Option defaults; an option it takes with no default is required."""
    extra: str = ""
    """The pip extra that installs what it needs."""

    @property
    def takes_key(self) -> bool:
        return self.value == "url"


def _openai(kind: Kind, name: str, summary: str, url: str | None) -> ServiceEntry:
    options = {"llm": {"model"}, "stt": {"model"}, "tts": {"model", "voice"}}[kind]
    # Another server's model names are its own: no default for its chat model; the
    # speech endpoints' defaults are the protocol's first names, which such servers map.
    defaults = {
        "llm": {"model": "gpt-4o-mini"} if url else {},
        "stt": {"model": "whisper-1"},
        "tts": {"model": "gpt-4o-mini-tts" if url else "tts-1", "voice": "alloy"},
    }[kind]
    return ServiceEntry(
        kind,
        name,
        summary,
        default_url=url,
        key_env="OPENAI_API_KEY",
        key_hosts=("api.openai.com",),
        options=frozenset(options),
        defaults=defaults,
        extra="openai",
    )


_OPENAI_URL: Final = "https://api.openai.com/v1"

SERVICES: Final[tuple[ServiceEntry, ...]] = (
    # --- language models
    _openai("llm", "openai", "OpenAI Chat Completions", _OPENAI_URL),
    _openai("llm", "openai-compatible", "a server of the Chat Completions protocol", None),
    ServiceEntry(
        "llm",
        "anthropic",
        "Anthropic Messages API",
        default_url="https://api.anthropic.com",
        key_env="ANTHROPIC_API_KEY",
        key_hosts=("api.anthropic.com",),
        key_required=True,
        options=frozenset({"model"}),
        defaults={"model": "claude-haiku-4-5"},
        extra="anthropic",
    ),
    ServiceEntry("llm", "rules", "the demo's deterministic local model", value="none"),
    ServiceEntry(
        "llm", "llama", "a GGUF model on llama.cpp, in-process", value="path", extra="llm-local"
    ),
    # --- speech-to-text
    ServiceEntry(
        "stt",
        "deepgram",
        "Deepgram live streaming",
        default_url="wss://api.deepgram.com/v1/listen",
        schemes=_WS,
        key_env="DEEPGRAM_API_KEY",
        key_hosts=("api.deepgram.com",),
        key_required=True,
        options=frozenset({"model"}),
        defaults={"model": "nova-3"},
        extra="deepgram",
    ),
    _openai("stt", "openai", "OpenAI transcriptions, per utterance", _OPENAI_URL),
    _openai("stt", "openai-compatible", "a server of the transcription endpoint", None),
    _openai("stt", "openai-whisper", "OpenAI transcriptions, per utterance", _OPENAI_URL),
    ServiceEntry("stt", "pocketsphinx", "offline PocketSphinx", value="none", extra="demo"),
    # --- text-to-speech
    _openai("tts", "openai", "OpenAI speech, raw PCM at 24 kHz", _OPENAI_URL),
    _openai("tts", "openai-compatible", "a server of the speech endpoint", None),
    ServiceEntry(
        "tts",
        "elevenlabs",
        "ElevenLabs multi-context WebSocket",
        default_url="wss://api.elevenlabs.io",
        schemes=_WS,
        key_env="ELEVENLABS_API_KEY",
        key_hosts=("api.elevenlabs.io",),
        options=frozenset({"model", "voice"}),
        defaults={"model": "eleven_flash_v2_5"},
        extra="elevenlabs",
    ),
    ServiceEntry(
        "tts",
        "cartesia",
        "Cartesia TTS WebSocket",
        default_url="wss://api.cartesia.ai",
        schemes=_WS,
        key_env="CARTESIA_API_KEY",
        key_hosts=("api.cartesia.ai",),
        options=frozenset({"model", "voice"}),
        defaults={"model": "sonic-3"},
        extra="cartesia",
    ),
    ServiceEntry(
        "tts",
        "espeak",
        "offline espeak-ng",
        value="none",
        options=frozenset({"voice"}),
        defaults={"voice": "en-us"},
        extra="demo",
    ),
)
"""Every service by kind and name, in the order help texts list them."""

_TABLE: Final = {(e.kind, e.name): e for e in SERVICES}

_OPTION_FLAGS: Final = {
    ("llm", "model"): "--model",
    ("stt", "model"): "--stt-model",
    ("tts", "model"): "--tts-model",
    ("tts", "voice"): "--voice",
}


def service_names(kind: Kind) -> tuple[str, ...]:
    """The names of ``kind``'s services, in table order.

    >>> service_names("stt")
    ('deepgram', 'openai', 'openai-compatible', 'openai-whisper', 'pocketsphinx')
    """
    return tuple(e.name for e in SERVICES if e.kind == kind)


def option_flag(kind: Kind, option: str) -> str:
    """The command-line flag of ``kind``'s ``option`` (``"--stt-model"``)."""
    return _OPTION_FLAGS[(kind, option)]


def key_flag(kind: Kind) -> str:
    """The command-line flag that names ``kind``'s key variable (``"--llm-key-env"``)."""
    return f"--{kind}-key-env"


@dataclass(frozen=True)
class ServiceSpec:
    """A checked choice of one service: what :func:`parse_service` returns.

    ``url`` is the service's URL (its default when none was given), or the GGUF path for
    ``llama``; ``key_env`` names the variable the key was read from (``None``: no key is
    sent). The key itself is held privately and never shown.
    """

    entry: ServiceEntry
    url: str | None
    model: str | None = None
    voice: str | None = None
    key_env: str | None = None
    _key: str | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> Kind:
        return self.entry.kind

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def describe(self) -> str:
        """One line for logs and banners: the service, its options, where, which key."""
        parts = [f"{self.kind} {self.name}"]
        if self.model:
            parts.append(f"model {self.model}")
        if self.voice:
            parts.append(f"voice {self.voice}")
        if self.entry.value == "url":
            parts.append(f"at {self.url}")
            parts.append(f"key from ${self.key_env}" if self.key_env else "no key")
        elif self.url:
            parts.append(f"file {self.url}")
        return ", ".join(parts)

    def build(
        self,
        *,
        line_rate: int | None = None,
        phrases: Sequence[str] = (),
        knowledge: KnowledgeBase | None = None,
    ) -> Any:
        """The client or engine (a :class:`~voxwire.services.base.SpeechToText`,
        :class:`~voxwire.services.base.LanguageModel` or
        :class:`~voxwire.services.base.TextToSpeech`).

        ``line_rate`` is the call's line rate, when known: Deepgram then takes 8 kHz
        mu-law from an 8 kHz line (no resampling), ElevenLabs and Cartesia speak at the
        line's rate where they can. ``phrases`` is PocketSphinx's vocabulary; ``knowledge``
        the rules model's knowledge base.

        Raises
        ------
        ServiceConfigError
            The client refused its settings, or what it needs is not installed (the
            message names the extra to install).
        """
        try:
            return _build(self, line_rate, phrases, knowledge)
        except (ServiceError, ValueError, TypeError, ImportError) as exc:
            hint = f" (pip install 'voxwire[{self.entry.extra}]')" if self.entry.extra else ""
            if isinstance(exc, ServiceError) and exc.reason == "unavailable":
                raise ServiceConfigError(f"{self.kind} {self.name}: {exc}{hint}") from None
            raise ServiceConfigError(f"{self.kind} {self.name}: {exc}") from None


def parse_service(
    kind: Kind,
    text: str,
    *,
    model: str | None = None,
    voice: str | None = None,
    key_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """Check the spec ``text`` of a ``kind`` service with its options and key.

    Parameters
    ----------
    kind
        ``"stt"``, ``"llm"`` or ``"tts"``.
    text
        ``NAME`` or ``NAME:URL`` (``llama:PATH`` for a GGUF file).
    model, voice
        The options (see the module notes); ``None`` takes the service's default.
    key_env
        The variable that holds the key, in place of the vendor's own.
    environ
        Where keys are read (``os.environ`` by default).

    Raises
    ------
    ServiceConfigError
        Anything the spec, options or key get wrong (see the module notes).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    env = os.environ if environ is None else environ
    flag = f"--{kind}"
    if not isinstance(text, str) or not text.strip():
        raise ServiceConfigError(f"{flag}: empty service spec")
    typed, colon, value = text.strip().partition(":")
    name = typed.lower()
    entry = _TABLE.get((kind, name)) if _SPEC_NAME.match(name) else None
    if entry is None:
        # shown back only when it looks like a name (not a pasted secret)
        showable = _SHOWN_NAME.match(typed) is not None
        shown = repr(typed) if showable else "(not a service name)"
        near = difflib.get_close_matches(name, service_names(kind), n=1) if showable else []
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ServiceConfigError(
            f"{flag}: unknown service {shown}{hint}; choose from {', '.join(service_names(kind))}"
        )
    label = f"{flag} {entry.name}"
    if colon and not value:
        raise ServiceConfigError(f"{label}: nothing after the colon")
    url: str | None
    if entry.value == "none":
        if colon:
            raise ServiceConfigError(f"{label} takes nothing after its name")
        url = None
    elif entry.value == "path":
        url = value or None
    else:
        if not value and entry.default_url is None:
            raise ServiceConfigError(
                f"{label} needs the server's URL: {entry.name}:{entry.schemes[0]}://HOST:PORT/..."
            )
        url = _checked_url(label, entry, value) if value else entry.default_url
    options = {"model": model, "voice": voice}
    for option, given in options.items():
        if given is not None and option not in entry.options:
            flag_name = option_flag(kind, option) if (kind, option) in _OPTION_FLAGS else option
            where = " (give the GGUF file as llama:PATH)" if entry.name == "llama" else ""
            raise ServiceConfigError(f"{kind} {entry.name} takes no {flag_name}{where}")
        if given is not None and (not isinstance(given, str) or not given.strip()):
            raise ServiceConfigError(f"{option_flag(kind, option)}: empty value")
    for option in sorted(entry.options):
        if options[option] is None:
            options[option] = entry.defaults.get(option)
        if options[option] is None:
            raise ServiceConfigError(
                f"{kind} {entry.name} needs {option_flag(kind, option)} "
                f"({_NEEDS.get((entry.name, option), 'the name the server knows')})"
            )
    key_var, key = _key(kind, entry, url, key_env, env)
    return ServiceSpec(entry, url, options["model"], options["voice"], key_var, key)


_NEEDS: Final = {
    ("openai-compatible", "model"): "the name the server knows, e.g. llama3.2 on Ollama",
    ("elevenlabs", "voice"): "the voice id, from the voice library",
    ("cartesia", "voice"): "the voice id, from the voice library",
}


def _checked_url(label: str, entry: ServiceEntry, value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ServiceConfigError(f"{label}: not a valid URL") from None
    # Checked before the URL is ever shown, since these parts may hold a secret.
    if "@" in parts.netloc:
        raise ServiceConfigError(
            f"{label}: the URL must not hold credentials (user:password@); put the key in "
            f"an environment variable and name it with --{entry.kind}-key-env"
        )
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise ServiceConfigError(f"{label}: the URL must not have a query or a fragment")
    schemes = " or ".join(f"{s}://" for s in entry.schemes)
    if parts.scheme.lower() not in entry.schemes:
        article = "an" if entry.schemes[0] == "http" else "a"
        raise ServiceConfigError(f"{label} takes {article} {schemes} URL, got {value!r}")
    if not parts.hostname:
        raise ServiceConfigError(f"{label}: no host in {value!r}")
    if port == 0:
        raise ServiceConfigError(f"{label}: port 0 in {value!r}")
    if any(c.isspace() for c in value):
        raise ServiceConfigError(f"{label}: white space in {value!r}")
    url = value.rstrip("/")
    if entry.name == "deepgram" and parts.path in ("", "/"):
        url += "/v1/listen"  # the host alone: the live endpoint's path
    return url


def _key(
    kind: Kind,
    entry: ServiceEntry,
    url: str | None,
    key_env: str | None,
    env: Mapping[str, str],
) -> tuple[str | None, str | None]:
    flag = key_flag(kind)
    if key_env is not None:
        if not entry.takes_key:
            raise ServiceConfigError(f"{kind} {entry.name} takes no key ({flag})")
        if not isinstance(key_env, str) or not _ENV_NAME.match(key_env):
            raise ServiceConfigError(f"{flag}: not an environment variable name")
        if not env.get(key_env):
            raise ServiceConfigError(f"{flag}: the variable {key_env} is not set")
        return key_env, env[key_env]
    if not entry.takes_key:
        return None, None
    host = (urlsplit(url).hostname or "") if url else ""
    vendor_env = entry.key_env
    if vendor_env is not None and host in entry.key_hosts:
        if not env.get(vendor_env):
            raise ServiceConfigError(
                f"{kind} {entry.name} needs an API key: set {vendor_env} "
                f"(or name another variable with {flag})"
            )
        return vendor_env, env[vendor_env]
    if entry.key_required:
        sent = f"; {entry.key_env} is sent only to {', '.join(entry.key_hosts)}"
        raise ServiceConfigError(
            f"{kind} {entry.name} at {url} needs a key: name its variable with {flag}{sent}"
        )
    return None, None


def _build(
    spec: ServiceSpec,
    line_rate: int | None,
    phrases: Sequence[str],
    knowledge: KnowledgeBase | None,
) -> Any:
    name, kind, key = spec.name, spec.kind, spec._key
    # parse_service set what each service takes: a URL, and its model and voice
    url, model, voice = spec.url or "", spec.model or "", spec.voice or ""
    if kind == "llm":
        if name in ("openai", "openai-compatible"):
            from voxwire.services.llm_openai import OpenAIChatModel

            return OpenAIChatModel(url, model, api_key=key)
        if name == "anthropic":
            from voxwire.services.llm_anthropic import AnthropicModel

            return AnthropicModel(model, api_key=key or "", base_url=url)
        if name == "rules":
            from voxwire.services.llm_rules import RulesModel

            return RulesModel(knowledge)
        from voxwire.services.llm_llama import LlamaCppModel

        return LlamaCppModel(spec.url)
    if kind == "stt":
        if name == "deepgram":
            from voxwire.services.stt_deepgram import DeepgramStt

            if line_rate == 8000:  # telephony: 8 kHz mu-law as it is, no resampling
                return DeepgramStt(
                    api_key=key or "", model=model, url=url, sample_rate=8000, encoding="mulaw"
                )
            return DeepgramStt(api_key=key or "", model=model, url=url)
        if name in ("openai", "openai-compatible", "openai-whisper"):
            from voxwire.services.stt_openai import OpenAITranscriptionStt

            return OpenAITranscriptionStt(url, model, api_key=key)
        from voxwire.services.stt_pocketsphinx import PocketSphinxStt

        return PocketSphinxStt(phrases=phrases)
    if name in ("openai", "openai-compatible"):
        from voxwire.services.tts_openai import OpenAISpeechTts

        return OpenAISpeechTts(url, model, voice, api_key=key)
    if name == "elevenlabs":
        from voxwire.services.tts_elevenlabs import SAMPLE_RATES, ElevenLabsTts

        fits = [r for r in SAMPLE_RATES if line_rate is not None and r <= line_rate]
        rate = line_rate if line_rate in SAMPLE_RATES else max(fits, default=16000)
        return ElevenLabsTts(voice, api_key=key, model_id=model, sample_rate=rate, base_url=url)
    if name == "cartesia":
        from voxwire.services.tts_cartesia import CartesiaTts

        rate = line_rate if line_rate is not None and 8000 <= line_rate <= 48000 else 16000
        return CartesiaTts(voice, api_key=key, model_id=model, sample_rate=rate, base_url=url)
    from voxwire.services.tts_espeak import EspeakTts

    return EspeakTts(voice=voice)


@dataclass
class ServiceChoice:
    """The services an agent was given by name (``None``: the agent's own default).

    ``line_rate`` is the call line's rate when known (the protocol's usual one). The
    ``build_*`` methods make each service once and remember it, so :meth:`aclose` can
    close what was made (the HTTP clients' kept-alive connections, the TTS WebSockets).
    """

    stt: ServiceSpec | None = None
    llm: ServiceSpec | None = None
    tts: ServiceSpec | None = None
    line_rate: int | None = None
    _built: list[Any] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def parse(
        cls,
        *,
        stt: str | None = None,
        llm: str | None = None,
        tts: str | None = None,
        model: str | None = None,
        stt_model: str | None = None,
        tts_model: str | None = None,
        voice: str | None = None,
        stt_key_env: str | None = None,
        llm_key_env: str | None = None,
        tts_key_env: str | None = None,
        line_rate: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ServiceChoice:
        """The choice the command line's options make (``model`` is the LLM's).

        Raises
        ------
        ServiceConfigError
            As :func:`parse_service`, and for an option given without its service
            (``--voice`` without ``--tts``).
        """
        given: dict[Kind, tuple[str | None, dict[str, str | None], str | None]] = {
            "stt": (stt, {"model": stt_model}, stt_key_env),
            "llm": (llm, {"model": model}, llm_key_env),
            "tts": (tts, {"model": tts_model, "voice": voice}, tts_key_env),
        }
        specs: dict[Kind, ServiceSpec | None] = {}
        for kind, (text, options, key_env) in given.items():
            if text is None:
                flags = [option_flag(kind, o) for o, v in options.items() if v is not None]
                flags += [key_flag(kind)] if key_env is not None else []
                if flags:
                    raise ServiceConfigError(f"{flags[0]} needs --{kind}")
                specs[kind] = None
                continue
            specs[kind] = parse_service(
                kind,
                text,
                model=options.get("model"),
                voice=options.get("voice"),
                key_env=key_env,
                environ=environ,
            )
        return cls(specs["stt"], specs["llm"], specs["tts"], line_rate)

    def __bool__(self) -> bool:
        return any((self.stt, self.llm, self.tts))

    def build_stt(self, *, phrases: Sequence[str] = ()) -> SpeechToText | None:
        """The chosen recogniser (``phrases``: PocketSphinx's vocabulary), or ``None``."""
        stt: SpeechToText | None = self._made(self.stt, phrases=phrases)
        return stt

    def build_llm(self, *, knowledge: KnowledgeBase | None = None) -> LanguageModel | None:
        """The chosen language model (``knowledge``: the rules model's), or ``None``."""
        llm: LanguageModel | None = self._made(self.llm, knowledge=knowledge)
        return llm

    def build_tts(self) -> TextToSpeech | None:
        """The chosen synthesiser, or ``None``."""
        tts: TextToSpeech | None = self._made(self.tts)
        return tts

    def _made(self, spec: ServiceSpec | None, **context: Any) -> Any:
        if spec is None:
            return None
        service = spec.build(line_rate=self.line_rate, **context)
        self._built.append(service)
        return service

    def describe(self) -> str:
        """The chosen services, one per line (no keys)."""
        return "\n".join(s.describe() for s in (self.stt, self.llm, self.tts) if s is not None)

    async def aclose(self) -> None:
        """Close every service built here that has an ``aclose``."""
        built, self._built = self._built, []
        for service in built:
            close = getattr(service, "aclose", None)
            if close is not None and inspect.iscoroutinefunction(close):
                await close()
