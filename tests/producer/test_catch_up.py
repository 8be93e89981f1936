"""The pure rules behind the no-gap guarantee: when a catch-up may end (intake rule 1), empty
REST pages (rule 3), the one memory bound and the shared hold (rule 2, sequencer rule 7), and
the reconnect backoff reset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradepipe.producer.backoff import Backoff
from tradepipe.producer.intake import Intake
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.quarantine import Quarantine
from tradepipe.producer.records import Record
from tradepipe.producer.sequencer import HoldBudget, Sequencer

from .test_sequencer import event


def intake_of(tmp_path: Path, max_records: int = 100, symbols: list[str] | None = None) -> Intake:
    return Intake(
        symbols or ["btcusdt"], Outbox(max_records), ProducerMetrics(),
        Quarantine(tmp_path / "q.ndjson"),
    )  # fmt: skip


def rest(*agg_ids: int) -> list[Any]:
    return [
        {"a": a, "p": "1.5", "q": "2", "f": 1, "l": 1, "T": 1617566591065, "m": True, "M": True}
        for a in agg_ids
    ]


def test_a_catch_up_survives_rest_answers_asked_before_the_new_connection_delivered(
    tmp_path: Path,
) -> None:
    intake = intake_of(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.delivering()
    intake.live(event(100))
    intake.disconnected()  # a drop: trades from 101 on may be only in REST
    assert seq.missing() == (101, None)
    # REST asked while disconnected has nothing newer *yet*: the catch-up must go on
    intake.rest_page(seq, [], 101, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() == (101, None)
    # asked while disconnected, answered after the reconnect delivered: still not enough
    early = intake.catch_up_token(seq)
    intake.delivering()
    intake.rest_page(seq, rest(101, 102), 101, None, 1000, early)
    assert seq.last_id == 102 and seq.missing() == (103, None)
    # asked after the new connection delivered: a short answer ends it
    intake.rest_page(seq, rest(103), 103, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() is None


def test_a_new_reason_for_a_catch_up_outlives_an_answer_asked_before_it(tmp_path: Path) -> None:
    intake = intake_of(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.delivering()
    intake.live(event(100))
    seq.want_catch_up()
    token = intake.catch_up_token(seq)
    seq.want_catch_up()  # e.g. a trade refused for room after the request went out
    intake.rest_page(seq, [], 101, None, 1000, token)
    assert seq.missing() == (101, None)
    intake.rest_page(seq, [], 101, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() is None


def test_the_shutdown_epoch_lets_rest_end_a_catch_up_without_a_connection(tmp_path: Path) -> None:
    intake = intake_of(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.delivering()
    intake.live(event(100))
    intake.disconnected()
    intake.feed_stopped()
    intake.rest_page(seq, [], 101, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() is None


def test_a_drop_with_another_connection_delivering_keeps_the_epoch_open(tmp_path: Path) -> None:
    intake = intake_of(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.delivering()
    intake.live(event(100))
    intake.disconnected(others_delivering=True)  # a rollover's old connection dropped
    intake.rest_page(seq, [], 101, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() is None


def test_an_empty_page_for_a_bounded_range_is_no_progress_not_a_loss(tmp_path: Path) -> None:
    intake = intake_of(tmp_path)
    seq = intake.sequencers["BTCUSDT"]
    intake.live(event(100))
    intake.live(event(105))
    assert seq.missing() == (101, 104)
    assert intake.rest_page(seq, [], 101, 104, 4, intake.catch_up_token(seq)) is False
    assert seq.missing() == (101, 104)
    unfilled = intake.metrics.registry.get_sample_value(
        "tradepipe_gap_unfilled_trades_total", {"symbol": "BTCUSDT"}
    )
    assert not unfilled
    assert intake.rest_page(seq, rest(101, 102, 103, 104), 101, 104, 4) is True
    assert seq.missing() is None and seq.last_id == 105


def test_held_and_buffered_records_of_all_symbols_share_one_bound(tmp_path: Path) -> None:
    intake = intake_of(tmp_path, max_records=8, symbols=["btcusdt", "ethusdt"])
    assert intake.hold.limit == 4  # max_held (20,000) lowered to half the bound
    btc = intake.sequencers["BTCUSDT"]
    intake.live(event(100))
    for a in range(102, 112):  # a gap at 101: everything after it is held, up to the budget
        intake.live(event(a))
    assert intake.hold.held == 4 and btc.held == 4
    assert intake.in_memory == 5 <= intake.max_records
    assert btc.missing() == (101, 101)
    # the hold is shared: another symbol's trade ahead of its own gap finds no room
    eth = Sequencer("ETHUSDT", budget=intake.hold, last_id=10)
    assert eth.offer(Record("ETHUSDT", 12, 1, b"{}", False)) == []
    assert eth.held == 0 and eth.dropped == 1 and intake.hold.held == 4
    assert eth.missing() == (11, None)  # the dropped trade becomes a catch-up: fetched later


def test_live_trades_are_refused_once_held_plus_buffered_reach_the_bound(tmp_path: Path) -> None:
    intake = intake_of(tmp_path, max_records=6)
    intake.live(event(100))
    for a in (102, 103, 104):  # held: 3 (the budget)
        intake.live(event(a))
    intake.live(event(101))  # fills the gap: all four go to the outbox
    assert len(intake.outbox) == 5 and intake.hold.held == 0
    intake.live(event(105))
    intake.live(event(106))  # refused: 6 in memory
    assert intake.in_memory == 6
    deferred = intake.metrics.registry.get_sample_value(
        "tradepipe_trades_deferred_total", {"symbol": "BTCUSDT"}
    )
    assert deferred == 1
    assert intake.sequencers["BTCUSDT"].missing() == (106, None)
    assert intake.room == 0


def test_budget_counts_every_way_a_held_trade_leaves() -> None:
    budget = HoldBudget(10)
    seq = Sequencer("BTCUSDT", budget=budget, last_id=0)
    for a in (3, 4, 6, 7):
        seq.offer(Record("BTCUSDT", a, 1, b"{}", False))
    assert budget.held == 4
    seq.skip_to(2)  # releases 3, 4
    assert budget.held == 2
    seq.give_up()  # skips 5, releases 6, 7
    assert budget.held == 0 and seq.last_id == 7


def test_a_connection_that_delivered_resets_the_backoff() -> None:
    backoff = Backoff(base=1.0, cap=8.0, healthy_after=60.0)
    for _ in range(5):
        backoff.failed()
    assert backoff.failures == 5
    backoff.succeeded()  # the first message of a new connection
    assert backoff.delay() == 0.0
    backoff.connection_ended(1.0, delivered=True)
    assert backoff.failures == 0
    backoff.connection_ended(1.0, delivered=False)  # accepted and closed at once
    assert backoff.failures == 1


def test_resume_starts_after_the_given_id_and_catches_up_within_the_shared_budget(
    tmp_path: Path,
) -> None:
    intake = intake_of(tmp_path, symbols=["btcusdt", "ethusdt"])
    before = intake.sequencers["BTCUSDT"]
    intake.resume({"BTCUSDT": 500, "DOGEUSDT": 7})  # an unknown symbol is ignored
    seq = intake.sequencers["BTCUSDT"]
    assert seq is before and seq.budget is intake.hold
    assert seq.missing() == (501, None)
    assert intake.sequencers["ETHUSDT"].missing() is None  # nothing known: starts live
    # the catch-up ends only once a connection delivered (rule 1), as after a drop
    intake.rest_page(seq, rest(501), 501, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() == (502, None)
    intake.delivering()
    intake.rest_page(seq, [], 502, None, 1000, intake.catch_up_token(seq))
    assert seq.missing() is None
