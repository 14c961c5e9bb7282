"""The blocking `Client` and `AsyncClient` have the same public methods, with the same signatures.

A twin has the same name (or the one in RENAMED), the same kind (method, classmethod or
property), the same parameters (names, kinds, defaults and annotations) and returns `T` where
the original returns an awaitable of `T`, `Iterator[T]` for `AsyncIterator[T]`. Annotations
are compared resolved (`typing.get_type_hints`), so `m.Plan` and `Plan` are the same.
"""

from __future__ import annotations

import collections.abc as abc
import inspect
import typing
from typing import Any

from liaison.clients import AsyncClient, Client

#: AsyncClient's name -> the blocking twin's, where they differ (as httpx names them).
RENAMED = {"__init__": "connect", "aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}
_ASYNC_DUNDERS = {"__init__", "__aenter__", "__aexit__"}
_SYNC_DUNDERS = {"__enter__", "__exit__"}  # Client.__init__ wraps an AsyncClient: its own


def _surface(cls: type, dunders: set[str]) -> dict[str, Any]:
    return {name: obj for name, obj in vars(cls).items() if not name.startswith("_") or name in dunders}


def _function(obj: Any) -> Any:
    if isinstance(obj, classmethod | staticmethod):
        return obj.__func__
    return obj.fget if isinstance(obj, property) else obj


def _kind(obj: Any) -> str:
    return type(obj).__name__ if isinstance(obj, classmethod | staticmethod | property) else "method"


def _blocking(fn: Any, returns: Any) -> Any:
    """What the blocking twin of `fn` returns, given what `fn` is annotated to return."""
    origin, args = typing.get_origin(returns), typing.get_args(returns)
    if inspect.isasyncgenfunction(fn) or origin in (abc.AsyncIterator, abc.AsyncGenerator):
        assert origin in (abc.AsyncIterator, abc.AsyncGenerator), returns
        return abc.Iterator[args[0]]
    if inspect.iscoroutinefunction(fn):
        return returns
    if origin is abc.Coroutine:
        return args[-1]
    if origin is abc.Awaitable:
        return args[0]
    return returns


def signature(name: str, obj: Any, *, of_async: bool) -> tuple[str, list[tuple[Any, ...]], Any]:
    """(kind, [(name, kind, default, annotation) of each parameter but self/cls], returns),
    for an AsyncClient method as its blocking twin must have them."""
    fn = _function(obj)
    hints = typing.get_type_hints(fn)
    params = [
        (p.name, p.kind, p.default, hints.get(p.name, inspect.Parameter.empty))
        for p in list(inspect.signature(fn).parameters.values())[1:]
    ]
    kind, returns = _kind(obj), hints.get("return", inspect.Signature.empty)
    if of_async:
        returns = _blocking(fn, returns)
        if name == "__init__":  # its twin is the classmethod connect(), returning a Client
            kind, returns = "classmethod", Client
        if returns is AsyncClient:
            returns = Client
    elif inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        kind = "async " + kind  # a blocking twin must not be async
    return kind, params, returns


def differences(async_cls: type, sync_cls: type) -> list[str]:
    originals = _surface(async_cls, _ASYNC_DUNDERS)
    twins = _surface(sync_cls, _SYNC_DUNDERS)
    expected = {RENAMED.get(name, name): name for name in originals}
    found = [
        f"{sync_cls.__name__} lacks {twin} (the twin of {expected[twin]})"
        for twin in sorted(expected.keys() - twins.keys())
    ]
    found += [
        f"{sync_cls.__name__}.{twin} has no original in {async_cls.__name__}"
        for twin in sorted(twins.keys() - expected.keys())
    ]
    for twin in sorted(expected.keys() & twins.keys()):
        name = expected[twin]
        want = signature(name, originals[name], of_async=True)
        got = signature(twin, twins[twin], of_async=False)
        if got != want:
            found.append(f"{sync_cls.__name__}.{twin}: {got} is not {want}")
    return found


def test_every_async_method_has_a_blocking_twin_with_the_same_signature() -> None:
    problems = differences(AsyncClient, Client)
    assert problems == [], "\n".join(problems)


def test_the_parity_check_sees_each_kind_of_drift() -> None:
    """The check is not vacuous: each drift it must catch, it reports."""

    class Async:
        def __init__(self, server: str, *, transport: object = None) -> None: ...
        async def aclose(self) -> None: ...
        async def fetch(self, key: str, *, limit: int = 10) -> list[str]: ...
        async def events(self) -> abc.AsyncIterator[int]:
            yield 1

        @property
        def name(self) -> str: ...

    class Good:
        @classmethod
        def connect(cls, server: str, *, transport: object = None) -> Client: ...
        def close(self) -> None: ...
        def fetch(self, key: str, *, limit: int = 10) -> list[str]: ...
        def events(self) -> abc.Iterator[int]: ...
        @property
        def name(self) -> str: ...

    assert differences(Async, Good) == []
    drifts: dict[str, dict[str, Any]] = {
        "lacks fetch": {"fetch": None},
        "has no original": {"extra": lambda self: None},
        "fetch": {"fetch": lambda self, key, **filters: []},  # lost its signature
    }

    def fetch_default(self: Any, key: str, *, limit: int = 11) -> list[str]: ...
    def fetch_annotation(self: Any, key: bytes, *, limit: int = 10) -> list[str]: ...
    def fetch_kind(self: Any, key: str, limit: int = 10) -> list[str]: ...
    def fetch_returns(self: Any, key: str, *, limit: int = 10) -> list[bytes]: ...
    async def fetch_async(self: Any, key: str, *, limit: int = 10) -> list[str]: ...
    def events_returns(self: Any) -> abc.AsyncIterator[int]: ...
    def connect_plain(self: Any, server: str, *, transport: object = None) -> Client: ...

    for fn in (fetch_default, fetch_annotation, fetch_kind, fetch_returns, fetch_async):
        drifts[fn.__name__] = {"fetch": fn}
    drifts["events_returns"] = {"events": events_returns}
    drifts["connect_plain"] = {"connect": connect_plain}
    drifts["name_method"] = {"name": lambda self: ""}
    for label, changes in drifts.items():
        namespace = {k: v for k, v in vars(Good).items() if k not in changes or changes[k]}
        namespace.update({k: v for k, v in changes.items() if v is not None})
        bad = type("Bad", (), namespace)
        assert differences(Async, bad) != [], label
