"""Typed tools for the language model: JSON Schema from Python signatures, safe calls.

:func:`tool` turns a function into a :class:`Tool`: its :class:`~voxwire.services.base.ToolSpec`
(name, description, JSON Schema of the parameters) comes from the signature and the
numpy-style docstring. :class:`ToolBox` holds a conversation's tools, gives their specs to
the model and runs the :class:`~voxwire.services.base.ToolCall` events it sends back.

A tool problem is never an exception: an unknown tool, arguments that do not fit the
schema, a tool that raises or runs past its timeout all become a :class:`ToolResult` with
``error=True`` and a ``content`` that says what went wrong, so the model can be told and
the call goes on. Only cancellation (a barge-in, a hang-up) propagates.

>>> import asyncio
>>> from typing import Literal
>>> from voxwire.services.base import ToolCall
>>> @tool
... def weather(city: str, unit: Literal["C", "F"] = "C") -> dict[str, object]:
...     '''Today's weather in a city.
...
...     Parameters
...     ----------
...     city : str
...         The city, as the caller said it.
...     unit : {"C", "F"}
...         Temperature unit.
...     '''
...     return {"city": city, "high": 21 if unit == "C" else 70}
>>> weather.spec.description
"Today's weather in a city."
>>> weather.spec.parameters["required"]
['city']
>>> box = ToolBox([weather])
>>> asyncio.run(box.run(ToolCall("c1", "weather", {"city": "Oslo"}))).content
'{"city": "Oslo", "high": 21}'
>>> asyncio.run(box.run(ToolCall("c2", "weather", {}))).content
"error: tool 'weather': argument 'city' is missing"
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import inspect
import json
import logging
import math
import re
import types
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Union, overload

from voxwire.services.base import ChatMessage, ToolCall, ToolSpec

__all__ = ["Tool", "ToolBox", "ToolResult", "tool"]

logger = logging.getLogger(__name__)

_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_TYPES: Final = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}
_UNION_TYPES: Final = (Union, types.UnionType) if hasattr(types, "UnionType") else (Union,)

Converter = Callable[[Any], Any]


# --- the schema ------------------------------------------------------------------------


def _literal_schema(values: Sequence[Any]) -> dict[str, Any]:
    kinds = []
    for v in values:
        if type(v) not in _JSON_TYPES:
            raise TypeError(f"Literal values must be str, int, float, bool or None, got {v!r}")
        kind = _JSON_TYPES[type(v)]
        if kind not in kinds:
            kinds.append(kind)
    schema: dict[str, Any] = {"enum": list(values)}
    schema["type"] = kinds[0] if len(kinds) == 1 else kinds
    return schema


def _identity(value: Any) -> Any:
    return value


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also takes ``null``."""
    kind = schema.get("type")
    if not isinstance(kind, str):
        return {"anyOf": [schema, {"type": "null"}]}
    out = {**schema, "type": [kind, "null"]}
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _schema_for(annotation: Any, where: str) -> tuple[dict[str, Any], Converter]:
    """The JSON Schema for ``annotation`` and how to turn a JSON value into its type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema, convert = _schema_for(args[0], where)
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            schema = {**schema, "description": " ".join(notes)}
        return schema, convert
    if annotation is Any:
        return {}, _identity
    if annotation in _JSON_TYPES:
        if annotation is float:
            return {"type": "number"}, float
        if annotation is int:
            return {"type": "integer"}, int
        return {"type": _JSON_TYPES[annotation]}, _identity
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [m.value for m in annotation]
        return _literal_schema(values), annotation
    if origin is Literal:
        return _literal_schema(args), _identity
    if origin in _UNION_TYPES:
        members = [a for a in args if a is not type(None)]
        parts = [_schema_for(a, where) for a in members]
        if len(parts) == 1:
            schema, convert = parts[0]
        else:
            schema = {"anyOf": [s for s, _ in parts]}
            convert = _union_converter([(s, c) for s, c in parts])
        if len(members) < len(args):
            inner = convert
            return _nullable(schema), lambda v: None if v is None else inner(v)
        return schema, convert
    if annotation in (list, tuple, Sequence) or origin in (list, tuple, Sequence):
        to: Callable[[Iterable[Any]], Any] = tuple if tuple in (annotation, origin) else list
        if not args:
            return {"type": "array"}, to
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{where}: only tuple[X, ...] is supported, got {annotation!r}")
        items, convert_item = _schema_for(args[0], where)
        return {"type": "array", "items": items}, lambda v: to(convert_item(x) for x in v)
    if annotation in (dict, Mapping) or origin in (dict, Mapping):
        if not args:
            return {"type": "object"}, dict
        if args[0] is not str:
            raise TypeError(f"{where}: JSON object keys are strings, got {annotation!r}")
        value_schema, convert_value = _schema_for(args[1], where)
        return (
            {"type": "object", "additionalProperties": value_schema},
            lambda v: {k: convert_value(x) for k, x in v.items()},
        )
    raise TypeError(f"{where}: no JSON Schema for the annotation {annotation!r}")


def _union_converter(parts: list[tuple[dict[str, Any], Converter]]) -> Converter:
    def convert(value: Any) -> Any:
        for schema, conv in parts:
            if _check(value, schema, "") is None:
                return conv(value)
        return value  # pragma: no cover - validated before conversion

    return convert


def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph of a numpy-style docstring and its parameter descriptions."""
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip():
            if summary:
                break
            continue
        summary.append(line.strip())
    params: dict[str, str] = {}
    i = 0
    while i < len(lines) - 1:
        if lines[i].strip() in ("Parameters", "Arguments", "Args") and set(
            lines[i + 1].strip()
        ) == {"-"}:
            break
        i += 1
    else:
        return " ".join(summary), params
    i += 2
    names: list[str] = []
    while i < len(lines):
        line = lines[i]
        if line.strip() and i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
            break  # the next section
        if line.strip() and not line[0].isspace():
            head = line.split(":", 1)[0]
            names = [n.strip().lstrip("*") for n in head.split(",") if n.strip()]
            for n in names:
                params[n] = ""
        elif line.strip():
            for n in names:
                params[n] = f"{params[n]} {line.strip()}".strip()
        i += 1
    return " ".join(summary), params


def _unwrap(fn: Callable[..., Any]) -> tuple[Any, set[str]]:
    """The function whose annotations ``fn`` has, and the arguments a partial fixed."""
    target: Any = fn
    bound: set[str] = set()
    while isinstance(target, functools.partial):
        bound.update(target.keywords)  # fixed by the partial: not the model's to choose
        target = target.func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(type(target), "__call__", target)  # noqa: B004 - a callable object
    return target, bound


def _doc(fn: Callable[..., Any]) -> str:
    """The docstring that describes ``fn`` (through partials, of a callable's method)."""
    target, _ = _unwrap(fn)
    return inspect.getdoc(target) or ""


def _signature_schema(
    fn: Callable[..., Any], where: str
) -> tuple[dict[str, Any], dict[str, Converter], bool]:
    """Parameters schema, per-argument converters, whether extra arguments are passed."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where}: cannot read the signature: {exc}") from exc
    target, bound = _unwrap(fn)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception as exc:
        raise TypeError(f"{where}: cannot resolve the annotations: {exc!r}") from exc
    _, described = _doc_parts(_doc(fn))
    properties: dict[str, Any] = {}
    required: list[str] = []
    converters: dict[str, Converter] = {}
    extra = False
    for p in signature.parameters.values():
        if p.name in bound:
            continue
        if p.kind is p.VAR_KEYWORD:
            extra = True
            continue
        if p.kind in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL):
            raise TypeError(f"{where}: parameter {p.name!r} cannot be passed by name")
        if p.name not in hints:
            raise TypeError(f"{where}: parameter {p.name!r} needs a type annotation")
        schema, convert = _schema_for(hints[p.name], f"{where}, parameter {p.name!r}")
        if described.get(p.name) and "description" not in schema:
            schema = {**schema, "description": described[p.name]}
        if p.default is p.empty:
            required.append(p.name)
        else:
            default = p.default.value if isinstance(p.default, enum.Enum) else p.default
            try:
                json.dumps(default, allow_nan=False)
            except (TypeError, ValueError):
                pass
            else:
                schema = {**schema, "default": default}
        properties[p.name] = schema
        converters[p.name] = convert
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    if not extra:
        parameters["additionalProperties"] = False
    return parameters, converters, extra


# --- validation ------------------------------------------------------------------------


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "object":
        return isinstance(value, Mapping)
    return True  # a type this validator does not know: not checked


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(value: Any, schema: Mapping[str, Any], path: str) -> str | None:
    """What is wrong with ``value`` for ``schema`` (a simple subset), or ``None``."""
    where = f"argument {path!r}" if path else "the arguments"
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(_type_ok(value, k) for k in kinds):
            return f"{where} must be of type {' or '.join(kinds)}, got {_show(value)}"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        allowed = ", ".join(_show(e) for e in schema["enum"])
        return f"{where} must be one of {allowed}, got {_show(value)}"
    for key in ("anyOf", "oneOf"):
        if key in schema and all(_check(value, s, path) is not None for s in schema[key]):
            return f"{where} fits none of the allowed forms, got {_show(value)}"
    if isinstance(value, (list, tuple)) and "items" in schema:
        for i, item in enumerate(value):
            problem = _check(item, schema["items"], f"{path}[{i}]")
            if problem:
                return problem
    if isinstance(value, Mapping) and (
        "properties" in schema or "required" in schema or "additionalProperties" in schema
    ):
        properties: Mapping[str, Any] = schema.get("properties", {})
        prefix = f"{path}." if path else ""
        for name in schema.get("required", ()):
            if name not in value:
                return f"argument {prefix + name!r} is missing"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                problem = _check(item, properties[name], prefix + name)
            elif extra is False:
                known = ", ".join(properties) or "none"
                return f"unknown argument {prefix + name!r} (known: {known})"
            elif isinstance(extra, Mapping):
                problem = _check(item, extra, prefix + name)
            else:
                problem = None
            if problem:
                return problem
    return None


# --- tools -----------------------------------------------------------------------------


def _is_async(fn: Callable[..., Any]) -> bool:
    target = inspect.unwrap(fn)
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - async __call__ of an instance
    )


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call.

    Attributes
    ----------
    spec : ToolSpec
        What the model is told: name, description, JSON Schema of the arguments.
    fn : callable
        The function, called with the arguments by name: ``async def`` functions are
        awaited on the loop, plain functions run in a thread (:func:`asyncio.to_thread`).
    timeout : float
        Seconds a call may take before it counts as failed.
    converters : mapping
        Per argument, how its JSON value becomes the annotated Python type (enum members,
        tuples, floats); arguments without one are passed as they are.
    """

    spec: ToolSpec
    fn: Callable[..., Any]
    timeout: float = 5.0
    converters: Mapping[str, Converter] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """The tool's name (``spec.name``)."""
        return self.spec.name


@overload
def tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = 5.0,
    parameters: Mapping[str, Any] | None = None,
) -> Tool: ...


@overload
def tool(
    fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = 5.0,
    parameters: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float = 5.0,
    parameters: Mapping[str, Any] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function; usable as ``@tool`` or ``@tool(...)``.

    The parameters' schema comes from the signature: ``str``, ``int``, ``float``,
    ``bool``, ``Literal[...]``, :class:`enum.Enum` subclasses, ``X | None``, unions,
    ``list[X]`` / ``tuple[X, ...]``, ``dict[str, X]``, ``Any``, and ``Annotated[X, "text"]``
    (the text describes the parameter). Parameters without a default are required;
    without ``**kwargs`` no other argument is accepted. Descriptions come from the
    docstring: its first paragraph describes the tool, its numpy-style ``Parameters``
    section the parameters.

    Parameters
    ----------
    fn : callable
        The function (``async def`` or plain).
    name : str, optional
        The tool's name (default: the function's); 1 to 64 of ``A-Z a-z 0-9 _ -``.
    description : str, optional
        What the tool does (default: the docstring's first paragraph).
    timeout : float
        Seconds a call may take.
    parameters : mapping, optional
        An explicit JSON Schema object for the arguments instead of the signature's; the
        arguments are then checked against it and passed by name as they are.

    Raises
    ------
    TypeError
        A parameter has no annotation, or one without a JSON Schema, or cannot be passed
        by name; or the annotations do not resolve (they are read when the tool is made,
        so the names they use must exist then).
    ValueError
        A bad or missing name (a partial or a callable object needs ``name=``), timeout or
        explicit schema.
    """

    def build(f: Callable[..., Any]) -> Tool:
        if not callable(f):
            raise TypeError(f"tool: expected a function, got {f!r}")
        tool_name = name if name is not None else getattr(f, "__name__", None)
        if tool_name is None:
            raise ValueError(f"tool: {f!r:.60} has no __name__: pass name=...")
        if not isinstance(tool_name, str) or not _NAME.match(tool_name):
            raise ValueError(f"tool: a name is 1 to 64 of A-Z a-z 0-9 _ -, got {tool_name!r}")
        if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"tool {tool_name!r}: timeout must be > 0 seconds, got {timeout!r}")
        summary, _ = _doc_parts(_doc(f))
        where = f"tool {tool_name!r}"
        converters: dict[str, Converter] = {}
        if parameters is None:
            schema, converters, _ = _signature_schema(f, where)
        else:
            if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
                raise ValueError(
                    f"{where}: parameters must be a JSON Schema with type 'object', "
                    f"got {parameters!r:.80}"
                )
            schema = dict(parameters)
        spec = ToolSpec(tool_name, summary if description is None else description, schema)
        return Tool(spec, f, float(timeout), converters)

    return build if fn is None else build(fn)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave, ready for the model.

    Attributes
    ----------
    call_id, name : str
        The :class:`ToolCall` it answers.
    content : str
        The return value (a str as it is, anything else as JSON), or ``"error: ..."``
        saying what went wrong.
    error : bool
        The call failed.
    seconds : float
        How long it took (loop time).
    reason : str
        Why it failed, a stable word for counters: ``unknown_tool``, ``bad_arguments``,
        ``raised``, ``timeout``, ``bad_result``; ``""`` when it did not.
    """

    call_id: str
    name: str
    content: str
    error: bool = False
    seconds: float = 0.0
    reason: str = ""

    def message(self) -> ChatMessage:
        """The ``role="tool"`` history message that answers the call."""
        return ChatMessage("tool", self.content, tool_call_id=self.call_id, name=self.name)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class ToolBox:
    """A conversation's tools: their specs for the model, and a safe :meth:`run`.

    Parameters
    ----------
    tools : iterable of Tool or callable
        The tools; a plain function is made one with :func:`tool`.

    Attributes
    ----------
    failures : collections.Counter
        Failed calls by :attr:`ToolResult.reason`.

    Raises
    ------
    ValueError
        Two tools have the same name.
    """

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            t = t if isinstance(t, Tool) else tool(t)
            if t.name in self._tools:
                raise ValueError(f"ToolBox: two tools are named {t.name!r}")
            self._tools[t.name] = t
        self.failures: Counter[str] = Counter()

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        """The tools' specs, to pass to :meth:`LanguageModel.complete`."""
        return tuple(t.spec for t in self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    async def run(self, call: ToolCall) -> ToolResult:
        """Run ``call``; every tool problem is an error :class:`ToolResult`, never raised.

        Raises
        ------
        asyncio.CancelledError
            The caller was cancelled (the tool is cancelled too; a plain function's
            thread cannot be stopped and runs to its end unheard).
        """
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        def fail(reason: str, content: str) -> ToolResult:
            self.failures[reason] += 1
            return ToolResult(
                call.id, call.name, f"error: {content}", True, loop.time() - t0, reason
            )

        t = self._tools.get(call.name)
        if t is None:
            known = ", ".join(repr(n) for n in self._tools) or "none"
            return fail("unknown_tool", f"unknown tool {call.name!r} (known: {known})")
        where = f"tool {t.name!r}"
        arguments = call.arguments
        if not isinstance(arguments, Mapping):
            return fail("bad_arguments", f"{where}: the arguments must be a JSON object")
        problem = _check(arguments, t.spec.parameters, "")
        if problem is not None:
            return fail("bad_arguments", f"{where}: {problem}")
        try:
            kwargs = {k: t.converters.get(k, _identity)(v) for k, v in arguments.items()}
        except (TypeError, ValueError) as exc:
            return fail("bad_arguments", f"{where}: {exc}")
        if _is_async(t.fn):
            task = asyncio.ensure_future(t.fn(**kwargs))
        else:
            task = asyncio.ensure_future(_in_thread(t.fn, kwargs))
        try:
            done, _ = await asyncio.wait({task}, timeout=t.timeout)
        except asyncio.CancelledError:
            task.cancel()
            task.add_done_callback(_consume)
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            return fail("timeout", f"{where} timed out after {t.timeout:g} s")
        try:
            value = task.result()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("%s raised %s", where, type(exc).__name__, exc_info=exc)
            return fail("raised", f"{where} raised {type(exc).__name__}: {exc}")
        if isinstance(value, str):
            content = value
        else:
            try:
                content = json.dumps(value, default=_jsonable, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as exc:
                return fail("bad_result", f"{where} returned what JSON cannot hold: {exc}")
        return ToolResult(call.id, t.name, content, False, loop.time() - t0)


async def _in_thread(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Any:
    value = await asyncio.to_thread(fn, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    return value


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a timed-out call's outcome so asyncio does not report it as lost."""
    if not task.cancelled():
        task.exception()
