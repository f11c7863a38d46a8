"""The ledger's front door: every trade and cash flow is checked here before it is appended.

The ledger is append-only, so nothing wrong may reach it: each entry is
validated (numbers in bounds), then guarded by what it would *do* (short
sales, cash below the margin floor, prices off the market band), and then
by the portfolio's pre-trade limits, inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pmkit.errors import (
    ConfigError,
    CurrencyMismatchError,
    InsufficientCashError,
    LifecycleError,
    PriceBandError,
    ShortSaleError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.events import Event
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE, LedgerEntry, check_balances, utcnow
from pmkit.registry.catalogue import get_portfolio
from pmkit.registry.config import DEFAULT_PRICE_BAND
from pmkit.registry.controls import Override, ProposedTrade, enforce_pre_trade
from pmkit.registry.records import PortfolioInfo
from pmkit.registry.resolution import resolve_config
from pmkit.store.base import Transaction
from pmkit.validation import MAX_MEMO_LENGTH, MAX_NAME_LENGTH, check_bool, check_number, check_text

if TYPE_CHECKING:
    from pmkit.registry.context import WriteContext
    from pmkit.registry.registry import Registry

__all__ = [
    "append_cash",
    "append_trade",
    "check_tradable",
    "guard_cash",
    "guard_trade",
    "last_close",
    "record_cash",
    "record_trade",
]


def record_trade(
    reg: Registry,
    asset: str,
    quantity: float,
    price: float,
    *,
    portfolio: str | None = None,
    fee: float = 0.0,
    ts: datetime | None = None,
    memo: str = "",
    force: bool = False,
    reason: str | None = None,
    override: Override | None = None,
) -> int:
    """Append a trade to a portfolio's ledger (needs TRADER; the portfolio must be active).

    The ledger is append-only, so a trade is refused before it is written
    when it, or what it would do, is out of bounds:

    - numbers: see `pmkit.validation` (`MAX_QUANTITY`, `MAX_PRICE`,
      `MAX_AMOUNT` for ``|quantity * price| + fee``, `MAX_BALANCE` for the
      resulting cash);
    - a sale of more than is held, unless the portfolio's resolved config
      has ``allow_short: true`` (`ShortSaleError`);
    - a trade that takes cash below ``-margin_limit`` (config, default 0)
      while lowering it (`InsufficientCashError`);
    - a price more than ``price_band`` (config, default 0.25) away from
      the asset's last close at or before ``ts`` in the registry's market
      data (`PriceBandError`), unless ``force=True`` with a ``reason``;
    - a trade that would breach one of the portfolio's pre-trade limits
      (`pmkit.risk.controls`, stage ``"trade"``): `LimitBreachError`, unless
      the limit is soft and ``override`` is given by a manager.

    Parameters
    ----------
    asset : str
        Asset label; must be in the market data when the registry has it.
    quantity : float
        Signed units: buy > 0, sell < 0 (int, float or numpy scalar).
    price : float
        Price per unit in the portfolio currency (> 0).
    portfolio : str, optional
        Target portfolio (default: the active one).
    fee : float
        Fees in the portfolio currency (>= 0).
    ts : datetime, optional
        Trade time, tz-naive UTC (default now).
    memo : str
        Free text (at most `pmkit.validation.MAX_MEMO_LENGTH` characters).
    force : bool
        Book a price outside the band; needs ``reason``, which is written
        into the trade's audit record and event.
    reason : str, optional
        Why the price is forced.
    override : pmkit.risk.controls.Override, optional
        A reason to exceed soft limits; the acting user must hold MANAGER
        (``limit.override``) on the portfolio. Audited as ``limit.override``.

    Returns
    -------
    int
        The ledger sequence number.
    """
    pid = reg._pid(portfolio)
    with reg._tx("ledger.trade", pid) as (tx, events):
        if override is not None and override.by not in (None, reg.user):
            raise ValidationError("override.by", override.by, f"must be you ({reg.user!r})")
        seq, rec = append_trade(
            reg,
            tx,
            events,
            pid,
            asset,
            quantity,
            price,
            fee,
            ts,
            memo,
            force=force,
            reason=reason,
            override=override,
        )
        tx.record(None, rec)
    return seq


def append_trade(
    reg: Registry,
    tx: Transaction,
    events: list[Event],
    pid: str,
    asset: str,
    quantity: float,
    price: float,
    fee: float,
    ts: datetime | None,
    memo: str,
    *,
    force: bool = False,
    reason: str | None = None,
    override: Override | None = None,
    stage: str = "trade",
    ctx: WriteContext | None = None,
) -> tuple[int, dict[str, Any]]:
    """Validate, guard and append one trade inside ``tx``; (seq, audit image).

    Every trade path (`record_trade`, `Mutation.append_trade` used by
    fills and services) comes through here, so the guards and the pre-trade
    limits (`pmkit.risk.controls.enforce_pre_trade` at ``stage``, with
    ``override``) hold for all. ``ctx`` is the caller's write context, when
    it has one.
    """
    force = check_bool(force, "force")
    if force:
        reason = check_text(reason, "reason", max_length=MAX_MEMO_LENGTH, allow_empty=False)
    elif reason is not None:
        check_text(reason, "reason", max_length=MAX_MEMO_LENGTH)
    info = get_portfolio(tx, pid)
    reg._require(tx, "ledger.trade", pid)
    check_text(asset, "asset", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
    check_tradable(reg, info, asset)
    entry = LedgerEntry(
        pid,
        "trade",
        utcnow() if ts is None else ts,
        asset=asset,
        quantity=quantity,
        price=price,
        fee=fee,
        currency=info.currency,
        actor=reg.user,
        memo=memo,
    ).validated()
    if ctx is None:
        from pmkit.registry.context import WriteContext

        ctx = WriteContext(reg, tx, events)
    cfg = guard_trade(reg, tx, info, entry, force, config=ctx.config(pid))
    trade = ProposedTrade(entry.asset, entry.quantity, entry.price, entry.fee)
    enforce_pre_trade(ctx, pid, [trade], stage=stage, override=override, ts=entry.ts, config=cfg)
    (seq,) = tx.append([entry])
    extra = {"force": True, "reason": reason} if force else {}
    events.append(
        reg._event(
            "ledger.trade",
            portfolio=pid,
            seq=seq,
            asset=entry.asset,
            quantity=entry.quantity,
            price=entry.price,
            **extra,
        )
    )
    return seq, {**entry.to_record(), "seq": seq, **extra}


def guard_trade(
    reg: Registry,
    tx: Transaction,
    info: PortfolioInfo,
    entry: LedgerEntry,
    force: bool,
    *,
    config: Mapping[str, Any] | None = None,
) -> Mapping[str, Any]:
    """Refuse shorts, cash below the margin and off-band prices (see `record_trade`).

    Returns the portfolio's resolved configuration (for the pre-trade limits):
    ``config`` when the caller resolved it in ``tx`` already.
    """
    cfg = resolve_config(tx, info.id) if config is None else config
    pos = tx.positions(info.id)
    cash, held = check_balances(pos, entry)
    assert held is not None and entry.asset is not None
    before = pos.quantities.get(entry.asset, 0.0)
    slack = OPEN_QUANTITY_TOLERANCE * max(1.0, abs(entry.quantity))
    if entry.quantity < 0 and held < -slack and cfg.get("allow_short") is not True:
        raise ShortSaleError(
            "quantity",
            entry.quantity,
            f"sells {-entry.quantity:g} {entry.asset} but {info.id!r} holds {before:g};"
            " set config allow_short: true to allow short sales",
        )
    guard_cash(cfg, info, pos.cash, cash, "quantity", entry.quantity)
    band = check_number(
        cfg.get("price_band", DEFAULT_PRICE_BAND), "config.price_band", error=ConfigError
    )
    close = last_close(reg, entry.asset, entry.ts)
    if close is not None and abs(entry.price / close - 1.0) > band and not force:
        raise PriceBandError(
            "price",
            entry.price,
            f"{abs(entry.price / close - 1.0):.1%} away from the last close {close:g} of"
            f" {entry.asset} (band {band:g}); pass force=True with a reason to book it",
        )
    return cfg


def guard_cash(
    cfg: Mapping[str, Any], info: PortfolioInfo, old: float, new: float, field: str, value: Any
) -> None:
    """`InsufficientCashError` if cash falls, and below the ``margin_limit`` floor."""
    margin = check_number(cfg.get("margin_limit", 0.0), "config.margin_limit", error=ConfigError)
    if new < old and new < -margin - 1e-9 * max(1.0, abs(old)):
        raise InsufficientCashError(
            field,
            value,
            f"would take cash of {info.id!r} from {old:,.2f} to {new:,.2f} {info.currency},"
            f" below the floor {(-margin if margin else 0.0):,.2f} (config margin_limit)",
        )


def _market_tables(reg: Registry) -> tuple[Any, dict[str, int], Any, list[str] | None]:
    """The market as numpy, once per market object: (times, asset rows, closes, currencies).

    Why: xarray's ``.sel`` per trade would double a booking's cost (a fill
    checks the asset's currency and last close every time).
    """
    import numpy as np

    market = reg.market
    cached = getattr(reg, "_close_cache", None)
    if cached is None or cached[0] is not market:
        assets = {str(a): i for i, a in enumerate(market.indexes["asset"])}
        closes = (np.asarray(market["close"].transpose("asset", "time").values, dtype=float)
                  if "close" in market else None)
        times = np.asarray(market.indexes["time"].values, dtype="datetime64[ns]")
        currencies = ([str(c) for c in np.asarray(market["currency"].values)]
                      if "currency" in market else None)
        cached = reg._close_cache = (market, times, assets, closes, currencies)
    return cached[1:]


def last_close(reg: Registry, asset: str, ts: datetime) -> float | None:
    """The asset's last finite close at or before ``ts`` (None: no market data for it)."""
    import numpy as np

    market = reg.market
    if market is None or "close" not in market:
        return None
    times, assets, closes, _ = _market_tables(reg)
    row = assets.get(asset)
    try:
        end = int(np.searchsorted(times, np.datetime64(ts, "ns"), side="right"))
    except (TypeError, ValueError, OverflowError):
        return None
    if row is None or end == 0:
        return None
    window = closes[row, :end]
    ok = np.flatnonzero(np.isfinite(window) & (window > 0))
    return float(window[ok[-1]]) if ok.size else None


def record_cash(
    reg: Registry,
    amount: float,
    *,
    portfolio: str | None = None,
    ts: datetime | None = None,
    memo: str = "",
) -> int:
    """Append an external cash flow (deposit > 0, withdrawal < 0) in the portfolio currency.

    ``amount`` is bounded by `pmkit.validation.MAX_AMOUNT` and the cash it
    leaves by `MAX_BALANCE`; a withdrawal may take cash below zero only down
    to the portfolio's ``margin_limit`` config (default 0), else
    `InsufficientCashError`. ``memo`` is free text of at most
    `pmkit.validation.MAX_MEMO_LENGTH` characters.
    """
    pid = reg._pid(portfolio)
    with reg._tx("ledger.cash", pid) as (tx, events):
        seq, rec = append_cash(reg, tx, events, pid, amount, ts, memo)
        tx.record(None, rec)
    return seq


def append_cash(
    reg: Registry,
    tx: Transaction,
    events: list[Event],
    pid: str,
    amount: float,
    ts: datetime | None,
    memo: str,
) -> tuple[int, dict[str, Any]]:
    """Validate and append one external cash flow inside ``tx``; (seq, audit image)."""
    info = get_portfolio(tx, pid)
    reg._require(tx, "ledger.cash", pid)
    if info.status != "active":
        raise LifecycleError(pid, info.status, "record cash flows for")
    entry = LedgerEntry(
        pid,
        "cash",
        utcnow() if ts is None else ts,
        amount=amount,
        currency=info.currency,
        actor=reg.user,
        memo=memo,
    ).validated()
    pos = tx.positions(pid)
    cash, _ = check_balances(pos, entry)
    guard_cash(resolve_config(tx, pid), info, pos.cash, cash, "amount", amount)
    (seq,) = tx.append([entry])
    events.append(reg._event("ledger.cash", portfolio=pid, seq=seq, amount=entry.amount))
    return seq, {**entry.to_record(), "seq": seq}


def check_tradable(reg: Registry, info: PortfolioInfo, asset: str) -> None:
    """The portfolio is active and the asset is in the market data, in its currency."""
    if info.status != "active":
        raise LifecycleError(info.id, info.status, "trade in")
    if reg.market is None:
        return
    _, assets, _, currencies = _market_tables(reg)
    if asset not in assets:
        raise UnknownAssetError("asset", asset, "not in the registry's market data")
    ccy = currencies[assets[asset]] if currencies is not None else info.currency
    if ccy != info.currency:
        raise CurrencyMismatchError(
            "asset",
            asset,
            f"trades in {ccy}, portfolio {info.id!r} is in {info.currency}"
            " (record trades in the portfolio currency; value foreign assets with"
            " pmkit.analytics.valuation.portfolio_values(..., fx=...))",
        )
