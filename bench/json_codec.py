"""The JSON codec on the hot paths that encode per trade: ``python -m bench.json_codec [N]``.

Times, in one process, what the code does per message with ``msgspec.json`` (the project's one
JSON library): the producer intake's REST event (``rest_value``), the replay server's
microsecond-event send (``_micro``, plain and combined) and its subscribe reply, and the decode of
a REST page of 1000 aggTrades. If ``orjson`` happens to be importable (it is no longer a
dependency) the same objects are timed with it too, as a yardstick. Prints ns per operation,
the best of 5 rounds of N operations (default 200000).
"""

from __future__ import annotations

import importlib
import platform
import sys
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from tradepipe.producer.intake import rest_value
from tradepipe.replay.server import _micro

REST = {"a": 4_170_000_123, "p": "97123.45000000", "q": "0.00150000", "f": 5_000_000_001,
        "l": 5_000_000_003, "T": 1_764_000_000_123, "m": True, "M": True}  # fmt: skip
EVENT = {"e": "aggTrade", "E": 1_764_000_000_124, "s": "BTCUSDT", **REST}
PAGE = msgspec.json.encode([dict(REST, a=REST["a"] + i) for i in range(1000)])


def best_ns(fn: Callable[[], object], n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e9


Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]


def cases(codec: Codec) -> dict[str, Callable[[], object]]:
    encode, decode = codec
    intake = {"e": "aggTrade", "E": REST["T"], "s": "BTCUSDT", **REST}
    micro = dict(EVENT, E=EVENT["E"] * 1000, T=EVENT["T"] * 1000)
    return {
        "intake rest event encode": lambda: encode(intake),
        "replay micro event encode": lambda: encode(micro),
        "replay combined encode": lambda: encode({"stream": "btcusdt@aggTrade", "data": EVENT}),
        "replay reply encode": lambda: encode({"result": None, "id": 1}),
        "rest page decode (1000)": lambda: decode(PAGE),
    }


def main(argv: list[str]) -> int:
    n = int(argv[1]) if len(argv) > 1 else 200_000
    print(f"python {platform.python_version()} {platform.machine()}, msgspec {msgspec.__version__}")
    codecs: dict[str, Codec] = {"msgspec": (msgspec.json.encode, msgspec.json.decode)}
    try:
        orjson: Any = importlib.import_module("orjson")
        codecs["orjson"] = (orjson.dumps, orjson.loads)
    except ImportError:
        pass
    timed = {name: cases(codec) for name, codec in codecs.items()}
    # the project's own functions, as called in production (msgspec inside)
    real = {"rest_value() itself": lambda: rest_value(REST, "BTCUSDT"),
            "_micro() itself": lambda: _micro(EVENT, "btcusdt@aggTrade", True)}  # fmt: skip
    print(f"{'case':28} " + " ".join(f"{name:>12}" for name in codecs) + "   (ns/op)")
    for case in timed["msgspec"]:
        div = n // 1000 if "page" in case else n
        figures = " ".join(f"{best_ns(timed[c][case], div):12.0f}" for c in codecs)
        print(f"{case:28} {figures}")
    for case, fn in real.items():
        print(f"{case:28} {best_ns(fn, n):12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
