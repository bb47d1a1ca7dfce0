"""Running async tests on the reactor with a per-test time limit."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.task import deferLater

T = TypeVar("T")


def within(seconds: float) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], Callable[..., Deferred[T]]]:
    """Fail the test (not the whole session) if it takes longer than ``seconds``."""
    def deco(f: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Deferred[T]]:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Deferred[T]:
            from twisted.internet import reactor
            return Deferred.fromCoroutine(f(*args, **kwargs)).addTimeout(seconds, reactor)
        return wrapper
    return deco


async def eventually(check: Callable[[], Any], timeout: float = 5.0, what: str = "",
                     step: float = 0.02) -> Any:
    """Wait until ``check()`` (plain or async) is truthy; fail after ``timeout`` seconds."""
    from twisted.internet import reactor
    waited = 0.0
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if waited >= timeout:
            raise TimeoutError(f"still waiting after {timeout}s for {what or check}")
        await deferLater(reactor, step, lambda: None)
        waited += step
