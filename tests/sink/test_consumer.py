"""The sink's ``Consumer`` protocol against the two real consumers it is written for.

mypy checks :class:`~tradepipe.local.broker.LocalConsumer` (``LocalSource.consumer`` returns
it as a ``Consumer``); aiokafka has no type stubs, so this checks the real ``AIOKafkaConsumer``
class: every protocol method exists, is a coroutine exactly where the protocol's is, and takes
the protocol's parameters by the same names and kinds (anything more being optional).
"""

from __future__ import annotations

import inspect

import pytest
from aiokafka import AIOKafkaConsumer

from tradepipe.local.broker import LocalBroker, LocalConsumer
from tradepipe.sink.consumer import Consumer
from tradepipe.sink.resets import ResettingConsumer

METHODS = sorted(
    name
    for name, member in vars(Consumer).items()
    if not name.startswith("_") and inspect.isfunction(member)
)


def params(fn: object) -> dict[str, inspect.Parameter]:
    assert callable(fn)
    return {n: p for n, p in inspect.signature(fn).parameters.items() if n != "self"}


def test_the_protocol_lists_what_the_sink_calls() -> None:
    assert METHODS == [
        "assignment",
        "commit",
        "getmany",
        "highwater",
        "pause",
        "position",
        "resume",
        "seek",
    ]


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("cls", [AIOKafkaConsumer, LocalConsumer], ids=["aiokafka", "local"])
def test_real_consumers_have_every_protocol_method(cls: type, name: str) -> None:
    wanted, real = getattr(Consumer, name), getattr(cls, name, None)
    assert real is not None, f"{cls.__name__} has no {name}"
    assert inspect.iscoroutinefunction(real) == inspect.iscoroutinefunction(wanted), name
    have = params(real)
    for pname, p in params(wanted).items():
        assert pname in have, f"{cls.__name__}.{name} takes no {pname}"
        if p.kind is p.VAR_POSITIONAL:
            assert have[pname].kind is p.VAR_POSITIONAL, pname
        elif p.kind is p.KEYWORD_ONLY:
            assert have[pname].kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD), pname
        else:
            assert have[pname].kind is p.POSITIONAL_OR_KEYWORD, pname
    # every further parameter of the real method is optional
    for extra in set(have) - set(params(wanted)):
        p = have[extra]
        assert p.kind is p.VAR_POSITIONAL or p.default is not p.empty, f"{name}: {extra}"


def test_runtime_isinstance_of_both() -> None:
    assert isinstance(LocalConsumer(LocalBroker("t")), Consumer)
    assert issubclass(AIOKafkaConsumer, Consumer)


def test_the_kafka_wrapper_is_a_consumer_and_aiokafka_has_what_it_calls() -> None:
    # sink/resets.py's ResettingConsumer calls these beyond the protocol (aiokafka is untyped)
    assert issubclass(ResettingConsumer, Consumer)
    for name, coroutine in [
        ("seek_to_beginning", True),
        ("beginning_offsets", True),
        ("end_offsets", True),
        ("committed", True),
    ]:
        real = getattr(AIOKafkaConsumer, name, None)
        assert real is not None, name
        assert inspect.iscoroutinefunction(real) == coroutine, name
