"""Tools: JSON Schema from signatures, checked arguments, and calls that never raise."""

from __future__ import annotations

import asyncio
import doctest
import enum
import functools
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar

import pytest

from voxwire.services.base import ChatMessage, ToolCall, ToolSpec
from voxwire.voice.tools import Tool, ToolBox, ToolResult, tool

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


@dataclass
class Booking:
    ref: str
    seats: int


def book_table(
    name: str,
    party: int,
    when: Literal["lunch", "dinner"] = "dinner",
    budget: float | None = None,
    allergies: list[str] | None = None,
    outside: bool = False,
) -> str:
    """Book a table at the restaurant.

    Only for today; the caller must give a name.

    Parameters
    ----------
    name : str
        Who the table is for,
        as the caller spelled it.
    party : int
        How many people.
    when : {"lunch", "dinner"}
        Which sitting.
    budget, outside
        Shared description.

    Returns
    -------
    str
        The booking reference.
    """
    return f"{name}/{party}/{when}/{budget}/{allergies}/{outside}"


# --- the schema --------------------------------------------------------------------------


def test_schema_from_the_signature_and_docstring() -> None:
    t = tool(book_table)
    assert isinstance(t, Tool)
    assert t.name == "book_table"
    assert t.timeout == 5.0
    assert t.spec.description == "Book a table at the restaurant."
    assert t.spec.parameters == {
        "type": "object",
        "properties": {
            "name": {
                "type": "string",
                "description": "Who the table is for, as the caller spelled it.",
            },
            "party": {"type": "integer", "description": "How many people."},
            "when": {
                "enum": ["lunch", "dinner"],
                "type": "string",
                "description": "Which sitting.",
                "default": "dinner",
            },
            "budget": {
                "type": ["number", "null"],
                "description": "Shared description.",
                "default": None,
            },
            "allergies": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "default": None,
            },
            "outside": {"type": "boolean", "description": "Shared description.", "default": False},
        },
        "required": ["name", "party"],
        "additionalProperties": False,
    }


def test_schema_of_other_annotations() -> None:
    def f(
        color: Color,
        size: Size,
        tags: tuple[int, ...],
        scores: dict[str, float],
        anything: Any,
        either: int | str,
        maybe: Optional[Color] = None,  # noqa: UP045 - the typing spelling is supported too
        note: Annotated[str, "A free note."] = "",
        **extra: Any,
    ) -> None:
        """Many kinds."""

    props = tool(f).spec.parameters["properties"]
    assert props["color"] == {"enum": ["red", "green"], "type": "string"}
    assert props["size"] == {"enum": [1, 2], "type": "integer"}
    assert props["tags"] == {"type": "array", "items": {"type": "integer"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "number"}}
    assert props["anything"] == {}
    assert props["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    assert props["maybe"] == {
        "enum": ["red", "green", None],
        "type": ["string", "null"],
        "default": None,
    }
    assert props["note"] == {"type": "string", "description": "A free note.", "default": ""}
    assert "additionalProperties" not in tool(f).spec.parameters  # **extra takes the rest


def test_nullable_schemas() -> None:
    def f(counts: dict[str, int] | None = None, pick: int | str | None = None) -> None:
        pass

    props = tool(f).spec.parameters["properties"]
    assert props["counts"] == {
        "type": ["object", "null"],
        "additionalProperties": {"type": "integer"},
        "default": None,
    }
    assert props["pick"] == {
        "anyOf": [{"anyOf": [{"type": "integer"}, {"type": "string"}]}, {"type": "null"}],
        "default": None,
    }
    box = ToolBox([f])

    async def main() -> list[ToolResult]:
        return [
            await box.run(call("f", counts=None, pick=None)),
            await box.run(call("f", counts={"a": 1}, pick="x")),
            await box.run(call("f", counts={"a": "1"})),
            await box.run(call("f", pick=1.5)),
        ]

    assert [r.error for r in run(main())] == [False, False, True, True]


def test_methods_and_partials_are_tools() -> None:
    class Shop:
        def __init__(self) -> None:
            self.stock = {"tea": 3}

        def count(self, item: str) -> int:
            """How many are in stock."""
            return self.stock.get(item, 0)

    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    class Greeter:
        async def __call__(self, who: str) -> str:
            """Say hello.

            Parameters
            ----------
            who : str
                Whom to greet.
            """
            return f"hello {who}"

    shop = Shop()
    box = ToolBox(
        [
            tool(shop.count),
            tool(functools.partial(add, b=10), name="add_ten"),
            tool(Greeter(), name="greet"),
        ]
    )
    assert box["count"].spec.parameters["required"] == ["item"]
    assert box["add_ten"].spec.description == "Add two numbers."
    assert list(box["add_ten"].spec.parameters["properties"]) == ["a"]  # b is fixed
    greet = box["greet"].spec
    assert greet.description == "Say hello."
    assert greet.parameters["properties"] == {
        "who": {"type": "string", "description": "Whom to greet."}
    }

    async def main() -> list[str]:
        return [
            (await box.run(call("count", item="tea"))).content,
            (await box.run(call("add_ten", a=5))).content,
            (await box.run(call("add_ten", a=5, b=1))).content,
            (await box.run(call("greet", who="Ada"))).content,
        ]

    results = run(main())
    assert results[:2] == ["3", "15"]
    assert results[2].startswith("error: tool 'add_ten': unknown argument 'b'")
    assert results[3] == "hello Ada"


def test_decorator_forms_and_overrides() -> None:
    @tool
    def plain() -> str:
        return "x"

    @tool(name="renamed", description="Said otherwise.", timeout=0.5)
    async def configured(x: int) -> int:
        """Not used."""
        return x

    explicit_schema = {
        "type": "object",
        "properties": {"q": {"type": "string"}},
        "required": ["q"],
    }

    @tool(parameters=explicit_schema)
    def explicit(**kwargs: Any) -> str:
        """Search."""
        return str(kwargs)

    assert plain.spec == ToolSpec(
        "plain", "", {"type": "object", "properties": {}, "additionalProperties": False}
    )
    assert configured.spec.name == "renamed"
    assert configured.spec.description == "Said otherwise."
    assert configured.timeout == 0.5
    assert explicit.spec.parameters == explicit_schema
    assert explicit.spec.description == "Search."


def test_bad_tools_are_refused() -> None:
    def no_annotation(x) -> None:  # type: ignore[no-untyped-def]
        pass

    def positional_only(x: int, /) -> None:
        pass

    def var_args(*xs: int) -> None:
        pass

    def unknown_type(x: Booking) -> None:
        pass

    def bad_tuple(x: tuple[int, str]) -> None:
        pass

    def bad_keys(x: dict[int, str]) -> None:
        pass

    with pytest.raises(TypeError, match="'x' needs a type annotation"):
        tool(no_annotation)
    with pytest.raises(TypeError, match="'x' cannot be passed by name"):
        tool(positional_only)
    with pytest.raises(TypeError, match="'xs' cannot be passed by name"):
        tool(var_args)
    with pytest.raises(TypeError, match="no JSON Schema"):
        tool(unknown_type)
    with pytest.raises(TypeError, match="tuple"):
        tool(bad_tuple)
    with pytest.raises(TypeError, match="keys are strings"):
        tool(bad_keys)
    with pytest.raises(ValueError, match="name"):
        tool(book_table, name="has space")
    with pytest.raises(ValueError, match="pass name="):
        tool(functools.partial(book_table, party=2))
    with pytest.raises(ValueError, match="timeout"):
        tool(book_table, timeout=0)
    with pytest.raises(ValueError, match="type 'object'"):
        tool(book_table, parameters={"type": "array"})
    with pytest.raises(ValueError, match="two tools"):
        ToolBox([tool(book_table), tool(book_table)])


# --- running -----------------------------------------------------------------------------


def call(tool_name: str, /, **arguments: Any) -> ToolCall:
    return ToolCall("call-1", tool_name, arguments)


def test_toolbox_specs_and_lookup() -> None:
    async def ping() -> str:
        """Answer pong."""
        return "pong"

    box = ToolBox([book_table, tool(ping)])
    assert [s.name for s in box.specs] == ["book_table", "ping"]
    assert len(box) == 2
    assert "ping" in box
    assert "pong" not in box
    assert box["ping"].spec.description == "Answer pong."


def test_run_returns_strings_as_they_are_and_other_values_as_json() -> None:
    async def as_dict(city: str) -> dict[str, Any]:
        return {"city": city, "temps": [1, 2.5], "snow": None}

    def as_dataclass() -> Booking:
        return Booking("AB12", 4)

    def nothing() -> None:
        return None

    def colored() -> list[Color]:
        return [Color.RED]

    box = ToolBox([book_table, as_dict, as_dataclass, nothing, colored])

    async def main() -> list[ToolResult]:
        return [
            await box.run(call("book_table", name="Ada", party=2)),
            await box.run(call("as_dict", city="Zürich")),
            await box.run(call("as_dataclass")),
            await box.run(call("nothing")),
            await box.run(call("colored")),
        ]

    results = run(main())
    assert [r.content for r in results] == [
        "Ada/2/dinner/None/None/False",
        '{"city": "Zürich", "temps": [1, 2.5], "snow": null}',
        '{"ref": "AB12", "seats": 4}',
        "null",
        '["red"]',
    ]
    assert not any(r.error for r in results)
    assert results[0] == ToolResult(
        "call-1", "book_table", results[0].content, False, results[0].seconds
    )
    assert all(r.seconds >= 0 for r in results)
    assert box.failures == {}


def test_arguments_are_converted_to_the_annotated_types() -> None:
    seen: dict[str, Any] = {}

    def f(
        color: Color, size: Size, tags: tuple[int, ...], ratio: float, n: int, maybe: Color | None
    ) -> str:
        seen.update(color=color, size=size, tags=tags, ratio=ratio, n=n, maybe=maybe)
        return "ok"

    box = ToolBox([f])
    result = run(box.run(call("f", color="green", size=2, tags=[1, 2], ratio=1, n=3.0, maybe=None)))
    assert result.content == "ok"
    assert seen == {
        "color": Color.GREEN,
        "size": Size.LARGE,
        "tags": (1, 2),
        "ratio": 1.0,
        "n": 3,
        "maybe": None,
    }
    assert type(seen["ratio"]) is float
    assert type(seen["n"]) is int


def test_plain_functions_run_in_a_thread_and_async_ones_on_the_loop() -> None:
    threads: dict[str, int] = {}

    def sync_tool() -> str:
        threads["sync"] = threading.get_ident()
        return "s"

    async def async_tool() -> str:
        threads["async"] = threading.get_ident()
        return "a"

    box = ToolBox([sync_tool, async_tool])

    async def main() -> None:
        await box.run(call("sync_tool"))
        await box.run(call("async_tool"))

    run(main())
    assert threads["async"] == threading.get_ident()
    assert threads["sync"] != threading.get_ident()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"party": 2}, "argument 'name' is missing"),
        ({"name": "Ada", "party": "two"}, "argument 'party' must be of type integer, got \"two\""),
        ({"name": "Ada", "party": True}, "argument 'party' must be of type integer, got true"),
        ({"name": "Ada", "party": 2.5}, "argument 'party' must be of type integer, got 2.5"),
        ({"name": 7, "party": 2}, "argument 'name' must be of type string, got 7"),
        (
            {"name": "Ada", "party": 2, "when": "breakfast"},
            'argument \'when\' must be one of "lunch", "dinner", got "breakfast"',
        ),
        (
            {"name": "Ada", "party": 2, "allergies": ["nuts", 3]},
            "argument 'allergies[1]' must be of type string, got 3",
        ),
        (
            {"name": "Ada", "party": 2, "budget": "cheap"},
            "argument 'budget' must be of type number or null, got \"cheap\"",
        ),
        (
            {"name": "Ada", "party": 2, "table": 5},
            "unknown argument 'table' (known: name, party, when, budget, allergies, outside)",
        ),
        ({"name": "Ada", "party": 2, "outside": 1}, "argument 'outside' must be of type boolean"),
    ],
)
def test_arguments_that_do_not_fit_are_error_results(
    arguments: dict[str, Any], message: str
) -> None:
    called: list[bool] = []

    def counted(**kwargs: Any) -> str:
        called.append(True)
        return book_table(**kwargs)

    box = ToolBox([tool(counted, name="book_table", parameters=tool(book_table).spec.parameters)])
    result = run(box.run(ToolCall("c7", "book_table", arguments)))
    assert result.error
    assert result.reason == "bad_arguments"
    assert result.call_id == "c7"
    assert result.content.startswith("error: tool 'book_table': ")
    assert message in result.content
    assert not called
    assert box.failures == {"bad_arguments": 1}


def test_none_is_accepted_where_the_annotation_allows_it() -> None:
    result = run(ToolBox([book_table]).run(call("book_table", name="Ada", party=2, budget=None)))
    assert not result.error


def test_explicit_schema_is_checked_and_arguments_passed_as_they_are() -> None:
    @tool(
        parameters={
            "type": "object",
            "properties": {"q": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["q"],
        }
    )
    def search(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    box = ToolBox([search])

    async def main() -> tuple[ToolResult, ToolResult, ToolResult]:
        return (
            await box.run(call("search", q="menu", extra=[1])),
            await box.run(call("search", limit=3)),
            await box.run(call("search", q="menu", limit="3")),
        )

    ok, missing, wrong = run(main())
    assert ok.content == '{"q": "menu", "extra": [1]}'
    assert missing.content == "error: tool 'search': argument 'q' is missing"
    assert wrong.error
    assert "argument 'limit' must be of type integer" in wrong.content


def test_unknown_tool_is_an_error_result() -> None:
    box = ToolBox([book_table])
    result = run(box.run(call("order_pizza", size="large")))
    assert result.error
    assert result.reason == "unknown_tool"
    assert result.name == "order_pizza"
    assert result.content == "error: unknown tool 'order_pizza' (known: 'book_table')"
    assert run(ToolBox().run(call("x"))).content == "error: unknown tool 'x' (known: none)"


def test_arguments_that_are_not_an_object_are_an_error_result() -> None:
    bad = ToolCall("c", "book_table", ["Ada", 2])  # type: ignore[arg-type]
    result = run(ToolBox([book_table]).run(bad))
    assert result.reason == "bad_arguments"
    assert "must be a JSON object" in result.content


def test_a_tool_that_raises_is_an_error_result() -> None:
    def broken(x: int) -> int:
        raise LookupError(f"no record {x}")

    async def broken_async() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("backend down")

    box = ToolBox([broken, broken_async])

    async def main() -> tuple[ToolResult, ToolResult]:
        return await box.run(call("broken", x=4)), await box.run(call("broken_async"))

    sync_result, async_result = run(main())
    assert sync_result.error
    assert sync_result.reason == "raised"
    assert sync_result.content == "error: tool 'broken' raised LookupError: no record 4"
    assert async_result.content == "error: tool 'broken_async' raised RuntimeError: backend down"
    assert box.failures == {"raised": 2}


def test_a_result_json_cannot_hold_is_an_error_result() -> None:
    def odd() -> object:
        return object()

    def nan() -> float:
        return float("nan")

    box = ToolBox([odd, nan])
    result = run(box.run(call("odd")))
    assert result.error
    assert result.reason == "bad_result"
    assert "JSON" in result.content
    assert run(box.run(call("nan"))).reason == "bad_result"  # NaN is not JSON


def test_an_async_tool_past_its_timeout_is_cancelled_and_an_error_result() -> None:
    state: list[str] = []

    @tool(timeout=0.05)
    async def slow() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state.append("cancelled")
            raise
        return "late"

    box = ToolBox([slow])

    async def main() -> ToolResult:
        result = await box.run(call("slow"))
        await asyncio.sleep(0)
        return result

    result = run(main())
    assert result.error
    assert result.reason == "timeout"
    assert result.content == "error: tool 'slow' timed out after 0.05 s"
    assert result.seconds >= 0.045
    assert state == ["cancelled"]


def test_a_plain_tool_past_its_timeout_is_an_error_result() -> None:
    release = threading.Event()

    @tool(timeout=0.05)
    def slow_sync() -> str:
        release.wait(5)
        return "late"

    async def main() -> ToolResult:
        try:
            return await ToolBox([slow_sync]).run(call("slow_sync"))
        finally:
            release.set()  # the thread cannot be stopped: let it end

    result = run(main())
    assert result.reason == "timeout"
    assert 0.045 <= result.seconds < 5


def test_cancellation_propagates_and_cancels_the_tool() -> None:
    state: list[str] = []

    async def endless() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            state.append("cancelled")
            raise
        return "never"

    box = ToolBox([endless])

    async def main() -> None:
        task = asyncio.create_task(box.run(call("endless")))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    run(main())
    assert state == ["cancelled"]
    assert box.failures == {}


def test_result_message_answers_the_call() -> None:
    result = ToolResult("c9", "lookup", '{"a": 1}', False, 0.1)
    assert result.message() == ChatMessage("tool", '{"a": 1}', tool_call_id="c9", name="lookup")


def test_docstring_examples() -> None:
    import voxwire.voice.tools

    result = doctest.testmod(voxwire.voice.tools)
    assert result.attempted > 0
    assert result.failed == 0
