"""The wire protocol's round trips and refusals, and the per-registry streaming settings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmkit.errors import ConfigError, PermissionDenied
from pmkit.registry import Registry
from pmkit.stream.protocol import (
    ProtocolError,
    batch_message,
    decode,
    dumps,
    error_message,
    heartbeat_message,
    loads,
    pmkit_adapter,
    snapshot_message,
    subscribe_message,
    tick_message,
)
from pmkit.stream.settings import StreamSettings

prices_st = st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(
    seq=st.integers(0, 2**53),
    ticks=st.lists(st.tuples(st.sampled_from(["AAPL", "MSFT", "KO"]), prices_st), max_size=50),
)
def test_batch_round_trip(seq, ticks):
    symbols = [s for s, _ in ticks]
    prices = [p for _, p in ticks]
    sizes = list(range(len(ticks)))
    ts = [1.7e9 + i / 7 for i in range(len(ticks))]
    kind, block = decode(batch_message(seq, symbols, prices, sizes, ts))
    assert kind == "batch" and block.seq == seq and block.symbols == symbols
    assert len(block) == len(ticks)
    np.testing.assert_array_equal(block.prices, prices)  # JSON floats round-trip exactly
    np.testing.assert_array_equal(block.sizes, sizes)
    np.testing.assert_array_equal(block.ts, ts)


def test_tick_snapshot_heartbeat_error_round_trips():
    kind, b = decode(tick_message(7, "AAPL", 129.41, 100, 1.7e9))
    assert (kind, b.seq, b.symbols, list(b.prices), list(b.sizes), list(b.ts)) == (
        "tick", 7, ["AAPL"], [129.41], [100.0], [1.7e9]
    )
    kind, s = decode(snapshot_message(40, ["A", "B"], [1.5, 2.5], 1.7e9))
    assert kind == "snapshot" and s.seq == 40 and list(s.prices) == [1.5, 2.5]
    assert decode(heartbeat_message(41, 1.7e9)) == ("heartbeat", 41)
    assert decode(error_message("unknown_symbol", "no", ["ZZZ"])) == (
        "error", {"code": "unknown_symbol", "message": "no", "symbols": ["ZZZ"]}
    )
    assert loads(subscribe_message(["A"])) == {"type": "subscribe", "symbols": ["A"]}


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        dumps({"type": "nope"}),
        dumps({"type": "tick", "seq": -1, "symbol": "A", "price": 1.0, "size": 1, "ts": 1.0}),
        dumps({"type": "tick", "seq": 1.5, "symbol": "A", "price": 1.0, "size": 1, "ts": 1.0}),
        dumps({"type": "tick", "seq": True, "symbol": "A", "price": 1.0, "size": 1, "ts": 1.0}),
        dumps({"type": "tick", "seq": 1, "symbol": 3, "price": 1.0, "size": 1, "ts": 1.0}),
        dumps({"type": "tick", "seq": 1, "symbol": "A", "price": 0.0, "size": 1, "ts": 1.0}),
        dumps({"type": "tick", "seq": 1, "symbol": "A", "price": "1", "size": 1, "ts": 1.0}),
        dumps({"type": "tick", "seq": 1, "symbol": "A", "price": 1.0, "ts": 1.0}),
        dumps({"type": "batch", "seq": 1, "symbols": ["A"], "prices": [], "sizes": [1], "ts": [1]}),
        dumps({"type": "batch", "seq": 1, "symbols": ["A"], "prices": [-1], "sizes": [1],
               "ts": [1]}),
        dumps({"type": "batch", "seq": 1, "symbols": ["A"], "prices": ["x"], "sizes": [1],
               "ts": [1]}),
        dumps({"type": "batch", "seq": 1, "symbols": "A", "prices": [1], "sizes": [1],
               "ts": [1]}),
        dumps({"type": "snapshot", "seq": 1, "symbols": ["A"], "prices": [1], "ts": "x"}),
        dumps({"type": "heartbeat"}),
    ],
)
def test_malformed_frames_raise_protocol_error(frame):
    with pytest.raises(ProtocolError):
        decode(frame)


def test_infinite_price_is_refused():
    # orjson refuses the literal; the stdlib parses it to inf: either way it is refused
    frame = '{"type":"batch","seq":1,"symbols":["A"],"prices":[1e999],"sizes":[1],"ts":[1]}'
    with pytest.raises(ProtocolError):
        decode(frame)


def test_pmkit_adapter_speaks_the_protocol():
    a = pmkit_adapter("ws://127.0.0.1:9")
    assert a.url == "ws://127.0.0.1:9" and a.parse is decode
    assert loads(a.subscribe(["KO"])) == {"type": "subscribe", "symbols": ["KO"]}
    assert loads(a.resync()) == {"type": "snapshot"}


# -- settings -----------------------------------------------------------------------------
def test_settings_defaults_and_validation():
    s = StreamSettings()
    assert (s.flush_size, s.flush_interval, s.ui_max_rate) == (20_000, 0.05, 4.0)
    for bad in [
        {"flush_size": 0},
        {"flush_interval": 0},
        {"flush_interval": float("nan")},
        {"ui_max_rate": -1},
        {"reconnect_initial": 2.0, "reconnect_max": 1.0},
        {"reconnect_jitter": 1.5},
        {"buffer_symbols": 2.5},
        {"flush_size": True},
        {"nonsense": 1},
    ]:
        with pytest.raises(ConfigError) as e:
            StreamSettings.from_mapping(bad)
        assert e.value.field.startswith("streaming.")


def test_settings_live_in_the_registry_and_need_an_admin():
    reg = Registry.open()
    assert StreamSettings.from_registry(reg) == StreamSettings()
    reg.add_user("alice")
    before = reg.store.dump()
    with pytest.raises(PermissionDenied):
        reg.as_user("alice").set_streaming({"flush_interval": 0.01})
    with pytest.raises(ConfigError):
        reg.set_streaming({"flush_interval": -1})
    assert reg.store.dump() == before
    reg.set_streaming({"flush_interval": 0.01, "ui_max_rate": 10})
    got = StreamSettings.from_registry(reg)
    assert (got.flush_interval, got.ui_max_rate, got.flush_size) == (0.01, 10, 20_000)
    assert reg.store.audit(limit=1)[0].action == "registry.streaming"


def test_settings_from_a_multi_portfolio_config():
    reg = Registry.from_config(
        {"portfolios": {"a/one": {"initial_capital": 1.0}}, "streaming": {"flush_size": 10}}
    )
    assert StreamSettings.from_registry(reg).flush_size == 10
    with pytest.raises(ConfigError):
        Registry.from_config({"portfolios": {}, "streaming": {"flush_size": "many"}})
