"""`start_local_stream`: a replaying feed and a stream whose P&L counts from the replay's start."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("websockets")

from pmkit.demo import open_demo
from pmkit.errors import ValidationError
from pmkit.stream import valuation as valuation_module
from pmkit.stream.local import start_local_stream
from pmkit.stream.server import FeedServer

OPEN = "2022-11-30"


def test_pnl_counts_from_the_close_the_replay_starts_from():
    reg = open_demo()
    feed, stream = start_local_stream(reg, start=OPEN, steps_per_day=20, rate=4_000.0,
                                      batch=20, seed=1)
    try:
        assert pd.Timestamp(feed.start_date) == pd.Timestamp(OPEN)
        stream.wait_for(lambda: stream.metrics()["batches"] >= 5, timeout=30)
    finally:
        stream.stop()
        feed.stop_thread()
    valuation = stream.valuation
    values, pnl = valuation.values(), valuation.pnl()
    opening = reg.values(at=OPEN).to_series()[values.index]
    # no cash flows since the open: P&L is the value change since that close
    np.testing.assert_allclose(pnl, values - opening, rtol=1e-9, atol=1e-6)
    assert not stream.running


def test_nothing_is_left_running_when_the_stream_cannot_start(monkeypatch):
    reg = open_demo()
    stopped = []
    real_stop = FeedServer.stop_thread

    def recording_stop(self, *args, **kwargs):
        stopped.append(self.url)
        return real_stop(self, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise ValidationError("at", "x", "refused for the test")

    monkeypatch.setattr(FeedServer, "stop_thread", recording_stop)
    monkeypatch.setattr(valuation_module, "LiveValuation", refuse)
    with pytest.raises(ValidationError, match="refused for the test"):
        start_local_stream(reg, start=OPEN)
    assert len(stopped) == 1  # the feed that had started was stopped
