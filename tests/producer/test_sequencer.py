"""The pure parts: sequencing by aggregate id, the outbox, reconnect pacing, message intake."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradepipe.core import decode
from tradepipe.producer.backoff import AttemptLimiter, Backoff
from tradepipe.producer.intake import Intake, Signal, inner_value
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.records import Record
from tradepipe.producer.sequencer import Sequencer


def rec(agg_id: int, backfilled: bool = False) -> Record:
    return Record("BTCUSDT", agg_id, 1_700_000_000_000 + agg_id, b"{}", backfilled)


def ids(records: list[Record] | None) -> list[int] | None:
    return None if records is None else [r.agg_id for r in records]


def test_in_order_trades_pass_and_duplicates_are_dropped() -> None:
    seq = Sequencer("BTCUSDT")
    assert ids(seq.offer(rec(10))) == [10]  # the first trade sets the start
    assert ids(seq.offer(rec(11))) == [11]
    assert seq.offer(rec(11)) is None
    assert seq.offer(rec(5)) is None
    assert seq.missing() is None


def test_a_jump_holds_live_trades_until_the_gap_is_filled_in_order() -> None:
    seq = Sequencer("BTCUSDT", last_id=10)
    assert ids(seq.offer(rec(14))) == []
    assert ids(seq.offer(rec(15))) == []
    assert seq.gaps == 1
    assert seq.missing() == (11, 13)
    assert ids(seq.offer(rec(12, True))) == []  # REST, still not contiguous
    assert seq.offer(rec(14)) is None  # held already: a duplicate
    assert ids(seq.offer(rec(11, True))) == [11, 12]
    assert seq.missing() == (13, 13)
    assert ids(seq.offer(rec(13, True))) == [13, 14, 15]
    assert seq.missing() is None and seq.held == 0


def test_catch_up_after_disconnect_is_open_ended_until_a_live_trade_bounds_it() -> None:
    seq = Sequencer("BTCUSDT")
    seq.want_catch_up()
    assert seq.missing() is None  # nothing seen yet: nothing can be missing
    seq.offer(rec(100))
    seq.want_catch_up()
    assert seq.missing() == (101, None)
    seq.offer(rec(150))  # the new connection's first trade
    assert seq.missing() == (101, 149)


def test_skipped_ids_are_counted_and_release_held_trades() -> None:
    seq = Sequencer("BTCUSDT", last_id=10)
    seq.offer(rec(13))
    seq.offer(rec(20))
    count, out = seq.skip_to(15)  # REST says 11..15 do not exist (13 is held: not skipped)
    assert count == 4
    assert ids(out) == [13]
    assert seq.last_id == 15 and seq.missing() == (16, 19)


def test_give_up_skips_to_the_first_held_trade() -> None:
    seq = Sequencer("BTCUSDT", last_id=10)
    seq.offer(rec(20))
    count, out = seq.give_up()
    assert count == 9 and ids(out) == [20] and seq.missing() is None


def test_hold_is_bounded_and_dropped_trades_become_gaps_again() -> None:
    seq = Sequencer("BTCUSDT", max_held=3, last_id=0)
    for i in (5, 6, 7, 8, 2):
        seq.offer(rec(i))
    assert seq.held == 3 and seq.dropped == 2  # 8 refused; then 7 evicted for 2
    assert seq.missing() == (1, 1)
    assert ids(seq.offer(rec(1, True))) == [1, 2]
    assert seq.missing() == (3, 4)
    assert ids(seq.offer(rec(3, True))) == [3]
    assert ids(seq.offer(rec(4, True))) == [4, 5, 6]
    # 7 and 8 were dropped: an open-ended catch-up fetches them even if no live trade follows
    assert seq.missing() == (7, None)
    seq.offer(rec(9))
    assert seq.missing() == (7, 8)
    seq.offer(rec(7, True))
    seq.offer(rec(8, True))
    assert seq.missing() == (10, None)  # the drop still asks for a catch-up ...
    seq.caught_up()
    assert seq.missing() is None  # ... until REST has nothing newer


@given(
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=200),
    st.integers(min_value=1, max_value=10),
    st.randoms(use_true_random=False),
)
def test_any_interleaving_of_live_and_rest_emits_each_id_once_in_order(
    arrivals: list[int], max_held: int, rnd: random.Random
) -> None:
    """Whatever arrives (repeats, disorder), emission is strictly increasing and contiguous
    from the first id, and after filling every reported gap nothing is held."""
    seq = Sequencer("BTCUSDT", max_held=max_held)
    out: list[int] = []
    for i in arrivals:
        out.extend(ids(seq.offer(rec(i))) or [])
    rounds = 0
    while (missing := seq.missing()) is not None and rounds < 1000:
        first, last = missing
        for i in range(first, (last if last is not None else first + rnd.randint(0, 3)) + 1):
            out.extend(ids(seq.offer(rec(i, True))) or [])
        if last is None:
            seq.caught_up()
        rounds += 1
    assert out == list(range(arrivals[0], arrivals[0] + len(out)))
    assert seq.held == 0
    assert max(arrivals) <= out[-1] or seq.dropped > 0


# ----------------------------------------------------------------------------- the outbox


async def test_outbox_resends_unacknowledged_records_after_a_rewind() -> None:
    box = Outbox(max_records=3)
    box.extend([rec(1), rec(2), rec(3)])
    assert box.full and box.room == 0
    assert ids(await box.take(2)) == [1, 2]
    assert ids(await box.take(5)) == [3]
    box.ack(1)
    assert len(box) == 2 and box.room == 1
    box.rewind()  # the send of 2 and 3 failed
    assert ids(await box.take(5)) == [2, 3]
    box.ack(2)
    assert len(box) == 0
    with pytest.raises(ValueError, match="only 0 were sent"):
        box.ack(1)


# ------------------------------------------------------------------------------- backoff


def test_backoff_is_full_jitter_capped_and_resets_after_a_healthy_connection() -> None:
    b = Backoff(base=1.0, cap=8.0, healthy_after=60.0, rng=random.Random(1))
    assert b.delay() == 0.0  # the first reconnect after a healthy connection goes at once
    for n in range(1, 10):
        b.failed()
        ceiling = min(8.0, 2.0 ** (n - 1))
        delays = [b.delay() for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # jitter spans it
    b.connection_ended(5.0)  # dropped quickly: still failing
    assert b.failures == 10
    b.connection_ended(61.0)
    assert b.failures == 0


def test_attempt_limiter_keeps_within_the_window() -> None:
    lim = AttemptLimiter(limit=3, window=300.0)
    for t in (0.0, 1.0, 2.0):
        assert lim.wait_for(t) == 0.0
        lim.record(t)
    assert lim.wait_for(3.0) == pytest.approx(297.0)
    assert lim.wait_for(300.5) == 0.0


# -------------------------------------------------------------------------------- intake

REAL = (
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1617566591066,"s":"BTCUSDT",'
    b'"a":665076760,"p":"57983.27000000","q":"0.00172800","f":745523793,"l":745523793,'
    b'"T":1617566591065,"m":false,"M":true}}'
)


def test_inner_value_is_the_data_object_exactly_as_received() -> None:
    obj = msgspec.json.decode(REAL)["data"]
    value = inner_value(REAL, decode(REAL))
    assert value.startswith(b'{"e":"aggTrade"') and value.endswith(b'"M":true}')
    assert msgspec.json.decode(value) == obj
    assert b'"57983.27000000"' in value  # decimal text untouched
    tricky = b'{"stream":"x\\",\\"data\\":1","data":{"a":1}}'
    assert msgspec.json.decode(inner_value(tricky, decode(tricky))) == {"a": 1}


def make_intake(tmp_path: Path, max_records: int = 100) -> tuple[Intake, Outbox, list[int]]:
    box = Outbox(max_records)
    woken: list[int] = []
    intake = Intake(
        ["btcusdt"], box, ProducerMetrics(), Quarantine(tmp_path / "q.ndjson"),
        on_gap=lambda: woken.append(1),
    )  # fmt: skip
    return intake, box, woken


def event(agg_id: int) -> bytes:
    return REAL.replace(b'"a":665076760', f'"a":{agg_id}'.encode())


def test_intake_detects_jumps_and_merges_rest_pages(tmp_path: Path) -> None:
    intake, box, woken = make_intake(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.live(event(100))
    intake.live(event(104))
    assert woken and seq.missing() == (101, 103)
    page = [
        {"a": a, "p": "1.5", "q": "2.00000000", "f": 1, "l": 2, "T": 1617566591065, "m": True,
         "M": True}
        for a in (102, 103)
    ]  # fmt: skip
    intake.rest_page(seq, page, 101, 103, 3)  # REST has no 101: skipped and counted
    assert [r.agg_id for r in box._records] == [100, 102, 103, 104]
    rest = msgspec.json.decode(box._records[1].value)
    assert rest["s"] == "BTCUSDT" and rest["e"] == "aggTrade" and rest["q"] == "2.00000000"
    metrics = intake.metrics.registry
    assert (
        metrics.get_sample_value("tradepipe_gap_unfilled_trades_total", {"symbol": "BTCUSDT"}) == 1
    )
    assert metrics.get_sample_value("tradepipe_trades_backfilled_total", {"symbol": "BTCUSDT"}) == 2


def test_intake_refuses_trades_when_the_outbox_is_full_and_asks_rest_for_them(
    tmp_path: Path,
) -> None:
    intake, box, _ = make_intake(tmp_path, max_records=2)
    for a in (1, 2, 3, 4):
        intake.live(event(a))
    assert [r.agg_id for r in box._records] == [1, 2]
    assert intake.sequencers["BTCUSDT"].missing() == (3, None)
    deferred = intake.metrics.registry.get_sample_value(
        "tradepipe_trades_deferred_total", {"symbol": "BTCUSDT"}
    )
    assert deferred == 2


def test_intake_recognises_server_shutdown_and_control_replies(tmp_path: Path) -> None:
    intake, box, _ = make_intake(tmp_path)
    wrapped = b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}'
    assert intake.live(wrapped) is Signal.SERVER_SHUTDOWN
    assert intake.live(b'{"e":"serverShutdown","E":1}') is Signal.SERVER_SHUTDOWN
    assert intake.live(b'{"result":null,"id":1}') is None
    assert len(box) == 0 and not (tmp_path / "q.ndjson").exists()


def test_quarantine_is_capped(tmp_path: Path) -> None:
    q = Quarantine(tmp_path / "q.ndjson", max_bytes=300)
    assert q.add("invalid_json", "not JSON", b"x" * 100)
    assert not q.add("invalid_json", "not JSON", b"y" * 200)
    assert len((tmp_path / "q.ndjson").read_bytes().splitlines()) == 1


def test_a_malformed_rest_element_with_a_wild_id_does_not_skip_the_sequence(
    tmp_path: Path,
) -> None:
    intake, box, _ = make_intake(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.live(event(100))
    good = {"p": "1.5", "q": "2.00000000", "f": 1, "l": 2, "T": 1617566591065, "m": True}
    page = [{**good, "a": 2**60, "p": "1.²"}, {**good, "a": 101}]
    intake.rest_page(seq, page, 101, None, 1000)
    assert [r.agg_id for r in box._records] == [100, 101] and seq.last_id == 101
    unfilled = intake.metrics.registry.get_sample_value(
        "tradepipe_gap_unfilled_trades_total", {"symbol": "BTCUSDT"}
    )
    assert not unfilled
    assert len((tmp_path / "q.ndjson").read_bytes().splitlines()) == 1  # quarantined
