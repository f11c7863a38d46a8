"""LiveView without a browser: it shows the live stream's own numbers, and they move."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("websockets")

from pmkit.demo import open_demo  # noqa: E402
from pmkit.stream.live import LiveStream  # noqa: E402
from pmkit.stream.server import FeedServer  # noqa: E402
from pmkit.stream.settings import StreamSettings  # noqa: E402
from pmkit_widgets.live_view import LiveView  # noqa: E402

OPEN = "2022-11-30"


@pytest.fixture(scope="module")
def running():
    """A demo registry, a replaying feed on a free port and a live stream over it."""
    reg = open_demo()
    feed = FeedServer(reg.market, port=0, start=OPEN, steps_per_day=40, rate=2_000.0,
                      batch=10, seed=7, heartbeat_interval=0.2).start_in_thread()
    settings = StreamSettings(flush_interval=0.01, heartbeat_timeout=2.0, risk_interval=60.0,
                              ui_max_rate=5.0)
    from pmkit.stream.valuation import LiveValuation

    stream = LiveStream(reg, url=feed.url, settings=settings,
                        valuation=LiveValuation(reg, at=OPEN), metrics_interval=None)
    stream.start_in_thread()
    try:
        yield reg, feed, stream
    finally:
        if stream.running:  # a test may have stopped it already
            stream.stop()
        feed.stop_thread()


def test_values_follow_the_stream_and_status_stops_with_it(running):
    reg, feed, stream = running
    view = LiveView(stream)
    assert view.period_ms == 200  # the stream's ui_max_rate of 5 updates a second
    stream.wait_for(lambda: stream.metrics()["batches"] >= 3, timeout=30)
    view.refresh()
    assert view.status == "connected"
    assert feed.url in str(view._status_pane.object)
    first = view.values.copy()
    assert list(first.index) == list(stream.valuation.portfolios)

    before = stream.metrics()["batches"]
    stream.wait_for(lambda: stream.metrics()["batches"] >= before + 5, timeout=30)
    assert view.refresh() is True
    second = view.values
    assert not np.allclose(first["value"], second["value"], rtol=0, atol=0)  # it moved

    shown_metrics = view.metrics
    assert shown_metrics["batches"] >= before + 5
    assert shown_metrics["ticks_received"] > 0

    stream.stop()
    stream.stop()  # a second stop (the app's shutdown after a view's) is a no-op
    assert not stream.running
    view.refresh()
    assert view.status == "stopped"

    # once the stream is still, what is shown is exactly the valuation's state...
    valuation = stream.valuation
    shown = view.values
    pd.testing.assert_series_equal(shown["value"], valuation.values(), check_names=False)
    pd.testing.assert_series_equal(shown["pnl"], valuation.pnl(), check_names=False)
    prices = view.prices
    pd.testing.assert_series_equal(prices["price"], valuation.prices(), check_names=False)
    # ...and it agrees with an independent recomputation from the ledger and the prices shown
    for pid in shown.index:
        pos = reg.store.positions(pid)
        want = pos.cash + sum(q * prices.loc[a, "price"] for a, q in pos.quantities.items()
                              if q)
        assert shown.loc[pid, "value"] == pytest.approx(want, rel=1e-9)
        # no cash flows since the open: P&L is the change since the reference close
        opening = float(reg.value(pid, at=OPEN))
        assert shown.loc[pid, "pnl"] == pytest.approx(want - opening, rel=1e-9, abs=1e-6)
        if opening:
            assert shown.loc[pid, "pnl_pct"] == pytest.approx((want - opening) / opening,
                                                              rel=1e-9, abs=1e-12)
    # the reference column is the real close the valuation opened at
    closes = reg.market["close"].sel(time=OPEN).to_series()
    np.testing.assert_allclose(prices["reference"], closes[prices.index], rtol=1e-12)
    np.testing.assert_allclose(prices["change"], prices["price"] - prices["reference"])

    assert view.refresh() is False  # nothing moves any more: nothing is redrawn
    view.close()
    assert view._callback is None


def test_close_leaves_the_shared_stream_running():
    reg = open_demo()
    feed = FeedServer(reg.market, port=0, start=OPEN, steps_per_day=40, rate=1_000.0,
                      batch=10, seed=3, heartbeat_interval=0.2).start_in_thread()
    stream = LiveStream(reg, url=feed.url, metrics_interval=None,
                        settings=StreamSettings(flush_interval=0.01, risk_interval=60.0))
    stream.start_in_thread()
    try:
        view = LiveView(stream, period_ms=100)
        assert view.period_ms == 100
        view.close()
        stream.wait_for(lambda: stream.metrics()["batches"] >= 2, timeout=30)
        assert stream.running
        assert view._callback is None
    finally:
        stream.stop()
        feed.stop_thread()
    view.refresh()
    assert view.status == "stopped"


def test_view_renders_with_stable_css_classes(running):
    _, _, stream = running
    view = LiveView(stream)
    try:
        layout = view.__panel__()
        classes = {c for obj in layout.select() for c in (getattr(obj, "css_classes", None) or [])}
        assert {"pmkit-live-values", "pmkit-live-prices", "pmkit-live-status"} <= classes
        model = layout.get_root()
        assert model is not None
    finally:
        view.close()


def test_the_view_says_it_is_a_replay_not_the_last_close(running):
    from pmkit_widgets.base import escape_text
    from pmkit_widgets.live_view import REPLAY_NOTE

    _, _, stream = running
    view = LiveView(stream)
    try:
        assert "Replay of the bundled daily closes" in REPLAY_NOTE
        assert "not live exchange data" in REPLAY_NOTE
        assert escape_text(REPLAY_NOTE) in view._note.object
        view.refresh()
        status = str(view._status_pane.object)
        assert f"replay from the close of {OPEN}" in status  # a date, not "2022-11-30T00:00:00"
        assert "T00:00" not in status
    finally:
        view.close()


def test_numbers_format_through_pmkit_display(running):
    from pmkit.display import TABULATOR_FORMATS
    from pmkit_widgets.live_view import _metrics_html

    _, _, stream = running
    view = LiveView(stream)
    try:
        formats = {c: f.format for c, f in view._values_table.formatters.items()}
        assert formats == {"value": TABULATOR_FORMATS["money"], "pnl": TABULATOR_FORMATS["money"],
                           "open": TABULATOR_FORMATS["money"], "flows": TABULATOR_FORMATS["money"],
                           "pnl_pct": TABULATOR_FORMATS["percent"]}
        assert view._values_table.layout == "fit_data_table"
        html = _metrics_html({"ticks_received": 12345, "latency_p50_ms": float("nan"),
                              "messages_per_s": 2.25})
        assert ">12,345<" in html and ">—<" in html and ">2.2<" in html
    finally:
        view.close()
