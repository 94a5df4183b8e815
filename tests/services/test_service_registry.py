"""Service specs: every name of every kind, the URL and option checks, and the key rule
(a vendor's variable goes only to the vendor's host; any other key only when named)."""

from __future__ import annotations

import asyncio

import pytest

from voxwire.services.registry import (
    KINDS,
    SERVICES,
    ServiceChoice,
    ServiceConfigError,
    parse_service,
    service_names,
)

KEYS = {
    "OPENAI_API_KEY": "test-openai-key-not-real",
    "ANTHROPIC_API_KEY": "test-anthropic-key-not-real",
    "DEEPGRAM_API_KEY": "test-deepgram-key-not-real",
    "ELEVENLABS_API_KEY": "test-elevenlabs-key-not-real",
    "CARTESIA_API_KEY": "test-cartesia-key-not-real",
    "MY_PROXY_KEY": "test-proxy-key-not-real",
}


def test_every_kind_lists_its_names() -> None:
    assert service_names("llm") == ("openai", "openai-compatible", "anthropic", "rules", "llama")
    assert service_names("stt") == (
        "deepgram",
        "openai",
        "openai-compatible",
        "openai-whisper",
        "pocketsphinx",
    )
    assert service_names("tts") == (
        "openai",
        "openai-compatible",
        "elevenlabs",
        "cartesia",
        "espeak",
    )
    assert {e.kind for e in SERVICES} == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "text", "url", "key_env"),
    [
        ("llm", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("llm", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
        ("stt", "deepgram", "wss://api.deepgram.com/v1/listen", "DEEPGRAM_API_KEY"),
        ("stt", "openai-whisper", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("stt", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("tts", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
        ("tts", "elevenlabs", "wss://api.elevenlabs.io", "ELEVENLABS_API_KEY"),
        ("tts", "cartesia", "wss://api.cartesia.ai", "CARTESIA_API_KEY"),
    ],
)
def test_a_hosted_service_takes_its_vendors_url_and_key(
    kind: str, text: str, url: str, key_env: str
) -> None:
    voice = "voice-1" if text in ("elevenlabs", "cartesia") else None
    spec = parse_service(kind, text, voice=voice, environ=KEYS)  # type: ignore[arg-type]
    assert spec.url == url
    assert spec.key_env == key_env
    assert spec.has_key
    assert KEYS[key_env] not in repr(spec) + spec.describe()
    # without the variable: a clear error naming it, never a silent call without a key
    with pytest.raises(ServiceConfigError, match=f"set {key_env}"):
        parse_service(kind, text, voice=voice, environ={})  # type: ignore[arg-type]


def test_the_vendors_key_is_not_sent_to_another_host() -> None:
    for text in ("openai-compatible:http://127.0.0.1:11434/v1", "openai:http://proxy.lan/v1"):
        spec = parse_service("llm", text, model="llama3.2", environ=KEYS)
        assert not spec.has_key
        assert spec.key_env is None
        assert spec.describe().endswith("no key")
    # unless its variable is named
    spec = parse_service("llm", "openai:http://proxy.lan/v1", key_env="MY_PROXY_KEY", environ=KEYS)
    assert spec.has_key
    assert (
        spec.describe()
        == "llm openai, model gpt-4o-mini, at http://proxy.lan/v1, key from $MY_PROXY_KEY"
    )
    # a client that cannot run without one says so and how to give one
    with pytest.raises(ServiceConfigError) as info:
        parse_service("stt", "deepgram:ws://127.0.0.1:9000", environ=KEYS)
    message = str(info.value)
    assert "--stt-key-env" in message
    assert "DEEPGRAM_API_KEY is sent only to api.deepgram.com" in message
    assert KEYS["DEEPGRAM_API_KEY"] not in message


def test_a_named_key_variable_must_be_set_and_a_name() -> None:
    with pytest.raises(ServiceConfigError, match="the variable NOT_SET_HERE is not set"):
        parse_service("llm", "anthropic", key_env="NOT_SET_HERE", environ=KEYS)
    with pytest.raises(ServiceConfigError, match="not an environment variable name"):
        parse_service("llm", "anthropic", key_env="test-proxy-key-not-real", environ=KEYS)
    with pytest.raises(ServiceConfigError, match="llm rules takes no key"):
        parse_service("llm", "rules", key_env="MY_PROXY_KEY", environ=KEYS)


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("llm", "openai-compatible", "needs the server's URL"),
        ("llm", "openai-compatible:", "nothing after the colon"),
        ("llm", "openai-compatible:ftp://h/v1", "takes an http:// or https:// URL"),
        ("stt", "deepgram:https://h", "takes a ws:// or wss:// URL"),
        ("tts", "elevenlabs:http://h", "takes a ws:// or wss:// URL"),
        ("llm", "openai-compatible:http:///v1", "no host"),
        ("llm", "openai-compatible:http://h:99999/v1", "not a valid URL"),
        ("llm", "openai-compatible:http://h:0/v1", "port 0"),
        ("llm", "openai-compatible:http://h/v 1", "white space"),
        ("llm", "rules:http://h", "takes nothing after its name"),
        ("stt", "pocketsphinx:x", "takes nothing after its name"),
    ],
)
def test_bad_urls_are_refused(kind: str, text: str, message: str) -> None:
    with pytest.raises(ServiceConfigError, match=message):
        parse_service(kind, text, model="m", environ=KEYS)  # type: ignore[arg-type]


def test_a_url_with_a_secret_in_it_is_refused_without_showing_it() -> None:
    for text in (
        "openai-compatible:http://user:hunter2secret@h/v1",
        "openai-compatible:http://h/v1?key=hunter2secret",
        "openai-compatible:http://h/v1#hunter2secret",
    ):
        with pytest.raises(ServiceConfigError) as info:
            parse_service("llm", text, model="m", environ=KEYS)
        assert "hunter2secret" not in str(info.value)


def test_unknown_names_list_the_choices_and_suggest_one() -> None:
    with pytest.raises(ServiceConfigError) as info:
        parse_service("tts", "elevnlabs")
    assert str(info.value) == (
        "--tts: unknown service 'elevnlabs' (did you mean 'elevenlabs'?); "
        "choose from openai, openai-compatible, elevenlabs, cartesia, espeak"
    )
    with pytest.raises(ServiceConfigError, match="choose from deepgram, openai"):
        parse_service("stt", "whisper.cpp")
    # the wrong kind: Deepgram is speech-to-text
    with pytest.raises(ServiceConfigError, match="--llm: unknown service 'deepgram'"):
        parse_service("llm", "deepgram")
    # something pasted by mistake is not echoed
    with pytest.raises(ServiceConfigError) as info:
        parse_service("llm", "Xk-Proj-4f9a8b7c6d5e")
    assert "4f9a8b7c6d5e" not in str(info.value)
    assert "(not a service name)" in str(info.value)
    with pytest.raises(ServiceConfigError, match="empty service spec"):
        parse_service("llm", " ")


def test_options_are_checked_against_the_service() -> None:
    assert parse_service("llm", "OpenAI", environ=KEYS).model == "gpt-4o-mini"  # names fold case
    assert parse_service("llm", "anthropic", model="claude-x", environ=KEYS).model == "claude-x"
    spec = parse_service("tts", "openai", environ=KEYS)
    assert (spec.model, spec.voice) == ("gpt-4o-mini-tts", "alloy")
    assert parse_service("tts", "espeak").voice == "en-us"
    assert parse_service("stt", "deepgram", model="nova-2", environ=KEYS).model == "nova-2"
    with pytest.raises(ServiceConfigError, match=r"needs --model \(the name the server knows"):
        parse_service("llm", "openai-compatible:http://h/v1")
    with pytest.raises(ServiceConfigError, match="tts cartesia needs --voice"):
        parse_service("tts", "cartesia", environ=KEYS)
    with pytest.raises(ServiceConfigError, match="llm rules takes no --model"):
        parse_service("llm", "rules", model="x")
    with pytest.raises(
        ServiceConfigError, match=r"takes no --model \(give the GGUF file as llama:PATH"
    ):
        parse_service("llm", "llama", model="x.gguf")
    with pytest.raises(ServiceConfigError, match="stt pocketsphinx takes no --stt-model"):
        parse_service("stt", "pocketsphinx", model="x")
    with pytest.raises(ServiceConfigError, match="tts espeak takes no --tts-model"):
        parse_service("tts", "espeak", model="x")
    with pytest.raises(ServiceConfigError, match="--voice: empty value"):
        parse_service("tts", "espeak", voice="")


def test_a_choice_refuses_options_without_their_service() -> None:
    assert not ServiceChoice.parse()
    for options, message in [
        ({"model": "m"}, "--model needs --llm"),
        ({"voice": "v"}, "--voice needs --tts"),
        ({"stt_model": "m"}, "--stt-model needs --stt"),
        ({"tts_key_env": "K"}, "--tts-key-env needs --tts"),
    ]:
        with pytest.raises(ServiceConfigError, match=message):
            ServiceChoice.parse(**options)  # type: ignore[arg-type]


def test_deepgram_on_an_8k_line_takes_mulaw_as_it_is() -> None:
    pytest.importorskip("websockets", reason="the Deepgram client needs websockets")
    from voxwire.services.stt_deepgram import DeepgramStt

    spec = parse_service(
        "stt", "deepgram:ws://127.0.0.1:9000", key_env="MY_PROXY_KEY", environ=KEYS
    )
    assert spec.url == "ws://127.0.0.1:9000/v1/listen"  # the host alone: the live path
    phone = spec.build(line_rate=8000)
    assert isinstance(phone, DeepgramStt)
    assert (phone.sample_rate, phone.encoding, phone.url) == (8000, "mulaw", spec.url)
    wide = spec.build(line_rate=16000)
    assert (wide.sample_rate, wide.encoding) == (16000, "linear16")
    assert KEYS["MY_PROXY_KEY"] not in repr(phone)
    assert phone._headers() == {"Authorization": f"Token {KEYS['MY_PROXY_KEY']}"}


def test_every_network_service_builds_its_client() -> None:
    pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")
    pytest.importorskip("websockets", reason="the WebSocket clients need websockets")
    from voxwire.services.llm_anthropic import AnthropicModel
    from voxwire.services.llm_openai import OpenAIChatModel
    from voxwire.services.stt_openai import OpenAITranscriptionStt
    from voxwire.services.tts_cartesia import CartesiaTts
    from voxwire.services.tts_elevenlabs import ElevenLabsTts
    from voxwire.services.tts_openai import OpenAISpeechTts

    choice = ServiceChoice.parse(
        stt="openai-whisper:http://127.0.0.1:8000/v1",
        llm="openai-compatible:http://127.0.0.1:11434/v1",
        tts="openai-compatible:http://127.0.0.1:8880/v1",
        model="llama3.2",
        tts_model="kokoro",
        voice="af_heart",
        line_rate=8000,
        environ=KEYS,
    )
    stt, llm, tts = choice.build_stt(), choice.build_llm(), choice.build_tts()
    assert isinstance(stt, OpenAITranscriptionStt)
    assert stt.url == "http://127.0.0.1:8000/v1/audio/transcriptions"
    assert stt.model == "whisper-1"
    assert stt._headers() == {}
    assert isinstance(llm, OpenAIChatModel)
    assert (llm.url, llm.model) == ("http://127.0.0.1:11434/v1/chat/completions", "llama3.2")
    assert "Authorization" not in llm._headers()
    assert isinstance(tts, OpenAISpeechTts)
    assert (tts.url, tts.model, tts.voice) == (
        "http://127.0.0.1:8880/v1/audio/speech",
        "kokoro",
        "af_heart",
    )

    anthropic = parse_service("llm", "anthropic", environ=KEYS).build()
    assert isinstance(anthropic, AnthropicModel)
    assert anthropic.url == "https://api.anthropic.com/v1/messages"
    assert anthropic.model == "claude-haiku-4-5"
    assert KEYS["ANTHROPIC_API_KEY"] not in repr(anthropic)

    eleven = parse_service("tts", "elevenlabs", voice="v1", environ=KEYS)
    assert eleven.build(line_rate=8000).sample_rate == 8000
    assert eleven.build(line_rate=16000).sample_rate == 16000
    assert eleven.build(line_rate=48000).sample_rate == 24000  # its highest PCM rate
    built = eleven.build()
    assert isinstance(built, ElevenLabsTts)
    assert built.sample_rate == 16000
    assert (built.voice_id, built.model_id) == ("v1", "eleven_flash_v2_5")
    cartesia = parse_service("tts", "cartesia", voice="v2", model="sonic-2", environ=KEYS)
    c8 = cartesia.build(line_rate=8000)
    assert isinstance(c8, CartesiaTts)
    assert (c8.sample_rate, c8.voice_id, c8.model_id) == (8000, "v2", "sonic-2")
    assert cartesia.build(line_rate=48000).sample_rate == 48000


def test_a_choice_closes_what_it_built() -> None:
    pytest.importorskip("aiohttp", reason="the HTTP clients need aiohttp")

    async def main() -> bool:
        choice = ServiceChoice.parse(llm="openai-compatible:http://127.0.0.1:9/v1", model="m")
        llm = choice.build_llm()
        session = llm._session_now()  # type: ignore[union-attr]
        await choice.aclose()
        return bool(session.closed)

    assert asyncio.run(main())


def test_the_offline_engines_build() -> None:
    from voxwire.services.llm_rules import RulesModel

    assert isinstance(parse_service("llm", "rules").build(), RulesModel)
    with pytest.raises(ServiceConfigError, match="llm llama: "):
        parse_service("llm", "llama:/nonexistent/model.gguf").build()
    try:
        from voxwire.services.tts_espeak import EspeakTts

        espeak = parse_service("tts", "espeak", voice="en-us+f3").build()
        assert isinstance(espeak, EspeakTts)
        assert espeak.voice == "en-us+f3"
        with pytest.raises(ServiceConfigError, match="tts espeak: espeak-ng has no voice"):
            parse_service("tts", "espeak", voice="no-such-voice").build()
    except ImportError:  # pragma: no cover - espeak-ng missing
        pass
