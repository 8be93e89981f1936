"""``feed.symbols = *``, ``feed.quote_assets``, ``feed.max_streams_per_connection``: accepted
forms and the specific error of each wrong one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradepipe.config import ConfigError, Settings


def test_star_means_every_symbol_and_quote_assets_filter_it(tmp_path: Path) -> None:
    feed = Settings.load(None, {"TRADEPIPE_FEED_SYMBOLS": "*"}).feed
    assert (feed.symbols, feed.by_rule, feed.quote_assets) == (["*"], True, [])
    feed = Settings.load(
        None, {"TRADEPIPE_FEED_SYMBOLS": "*", "TRADEPIPE_FEED_QUOTE_ASSETS": "usdt, fdusd"}
    ).feed
    assert feed.quote_assets == ["USDT", "FDUSD"]
    config = tmp_path / "c.toml"
    config.write_text(
        '[feed]\nsymbols = ["*"]\nquote_assets = ["USDT"]\n'
        "max_streams_per_connection = 100\nsymbols_refresh_seconds = 60\n"
    )
    feed = Settings.load(config, {}).feed
    assert (feed.by_rule, feed.quote_assets, feed.max_streams_per_connection) == (
        True, ["USDT"], 100
    )  # fmt: skip
    assert feed.symbols_refresh_seconds == 60.0
    assert not Settings.load(None, {}).feed.by_rule


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"TRADEPIPE_FEED_SYMBOLS": "*,btcusdt"}, r"feed\.symbols: \* stands alone"),
        ({"TRADEPIPE_FEED_QUOTE_ASSETS": "USDT"}, r"feed\.quote_assets filters feed\.symbols = \*"),
        ({"TRADEPIPE_FEED_SYMBOLS": "*", "TRADEPIPE_FEED_QUOTE_ASSETS": "US-DT"},
         r"^TRADEPIPE_FEED_QUOTE_ASSETS \(feed\.quote_assets\): expected comma-separated list of "
         r"asset like USDT"),
        ({"TRADEPIPE_FEED_SYMBOLS": "btc*"}, r"^TRADEPIPE_FEED_SYMBOLS \(feed\.symbols\): "),
        ({"TRADEPIPE_FEED_MAX_STREAMS_PER_CONNECTION": "1025"},
         r"^TRADEPIPE_FEED_MAX_STREAMS_PER_CONNECTION \(feed\.max_streams_per_connection\): "
         r"expected integer >= 1 and <= 1000, got '1025'"),
        ({"TRADEPIPE_FEED_MAX_STREAMS_PER_CONNECTION": "0"}, r"expected integer >= 1 and <= 1000"),
        ({"TRADEPIPE_FEED_SYMBOLS_REFRESH_SECONDS": "0"},
         r"^TRADEPIPE_FEED_SYMBOLS_REFRESH_SECONDS \(feed\.symbols_refresh_seconds\): "
         r"expected number > 0"),
    ],
)  # fmt: skip
def test_wrong_symbol_rules_are_refused_with_the_key(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        Settings.load(None, env)
