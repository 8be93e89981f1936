"""``tradepipe replay``: a Binance-compatible WebSocket + REST emulator over recorded trades.

Layout: :mod:`.tape` (input files -> ordered trades), :mod:`.clock` (the shared replay clock),
:mod:`.store` (the published trades, REST's view), :mod:`.protocol` (Binance's stream control
messages, no I/O), :mod:`.connection` (one WebSocket client), :mod:`.rest` (``/api/v3``),
:mod:`.control` (fault injection over HTTP), :mod:`.malformed` (bad messages to mix in),
:mod:`.server` (the :class:`Emulator` tying them together), :mod:`.sample` (the seeded
sample-data generator).
"""

from tradepipe.replay.clock import ReplayClock
from tradepipe.replay.options import ReplayOptions
from tradepipe.replay.server import Emulator
from tradepipe.replay.tape import Tape, load_tape, tape_of

__all__ = ["Emulator", "ReplayClock", "ReplayOptions", "Tape", "load_tape", "tape_of"]
