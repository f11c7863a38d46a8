"""The write context a service gets: one transaction, its audit, its events, the kernel's rules.

``registry.context(action, target)`` (also ``registry.mutation``) opens it.
Inside, a service reads through ``ctx.view`` (what its user may see, as the
transaction sees it), checks roles with ``ctx.require``, writes its own
records through ``ctx.tx`` (a `GuardedTransaction`: registry-owned records
are refused), books trades and cash flows through ``append_trade`` /
``append_cash`` (every ledger guard and pre-trade limit applies), and queues
events that are published only after the commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pmkit.events import Event
from pmkit.registry.catalogue import get_portfolio
from pmkit.registry.guard import GuardedTransaction
from pmkit.registry.hierarchy import leaf_portfolios
from pmkit.registry.records import PortfolioInfo
from pmkit.registry.resolution import ResolvedConfig, resolve_config
from pmkit.registry.trading import append_cash, append_trade
from pmkit.registry.view import ReadView
from pmkit.store.base import Transaction

if TYPE_CHECKING:
    from pmkit.registry.controls import Override
    from pmkit.registry.registry import Registry

__all__ = ["Mutation", "WriteContext"]


class WriteContext:
    """An open registry transaction handed to a service (see `Registry.context`).

    Attributes
    ----------
    registry : Registry
        The session (its user is the audit actor).
    tx : GuardedTransaction
        The store transaction: reads see its own writes; registry-owned
        kinds (users, portfolios, groups, settings, grants, raw ledger) are refused.
    view : ReadView
        What the acting user may see, read inside this transaction.
    events : list of Event
        Published in order after the commit.
    """

    def __init__(self, registry: Registry, tx: Transaction, events: list[Event]) -> None:
        self.registry = registry
        self._raw = tx  # for the registry's own checked writes (append_trade, append_cash)
        self.tx = GuardedTransaction(tx, registry.user)
        self.events = events
        self.view = ReadView(registry.policy, tx, registry.user)
        self._configs: dict[str, ResolvedConfig] = {}

    @property
    def user(self) -> str:
        """The acting user."""
        return self.registry.user

    def portfolio(self, portfolio_id: str) -> PortfolioInfo:
        """The portfolio as this transaction sees it; `NotFoundError` if missing or deleted.

        No role check: pair it with `require` for the action at hand.
        """
        return get_portfolio(self._raw, portfolio_id)

    def group_portfolios(self, group_id: str) -> list[str]:
        """Every portfolio in the group, nested groups included (each once), in this transaction."""
        return leaf_portfolios(self._raw, group_id)

    def config(self, portfolio_id: str) -> ResolvedConfig:
        """The portfolio's resolved configuration as this transaction sees it (no role check).

        Resolved once per context (a context cannot change settings, groups or
        portfolios); each call gets its own copy of the top level.
        """
        cached = self._configs.get(portfolio_id)
        if cached is None:
            cached = self._configs[portfolio_id] = resolve_config(self._raw, portfolio_id)
        return ResolvedConfig(cached, cached.sources)

    def require(self, action: str, target: str) -> None:
        """Raise `PermissionDenied` unless the user may ``action`` on ``target`` (in this tx)."""
        self.registry.policy.require(self._raw, self.user, action, target)

    def is_admin(self) -> bool:
        """Whether the acting user is an administrator."""
        return self.registry.policy.is_admin(self._raw, self.user)

    def publish(
        self, topic: str, *, portfolio: str | None = None, group: str | None = None, **payload: Any
    ) -> None:
        """Queue an event for publication after the commit."""
        self.events.append(
            Event(topic, portfolio=portfolio, group=group, payload=payload, actor=self.user)
        )

    def take_events(self) -> list[Event]:
        """Take the queued events, to publish them after the commit yourself.

        For services with in-memory state that follows the store: call this
        last inside the ``with`` block, update the state after the commit, then
        publish (`Registry.publish`), so that handlers reading the service see
        the new state (a rollback publishes nothing either way).
        """
        taken, self.events[:] = list(self.events), []
        return taken

    def record(self, before: Any, after: Any) -> None:
        """Before/after images of the transaction's primary audit record."""
        self.tx.record(before, after)

    def note(self, action: str, target: str, before: Any = None, after: Any = None) -> None:
        """A further audit record in the same commit."""
        self.tx.note(action, target, before, after)

    def append_trade(
        self,
        portfolio: str,
        asset: str,
        quantity: float,
        price: float,
        *,
        fee: float = 0.0,
        ts: datetime | None = None,
        memo: str = "",
        override: Override | None = None,
        stage: str = "trade",
    ) -> int:
        """Append a trade to ``portfolio``'s ledger in this transaction (as `record_trade`).

        The same checks apply (TRADER role, active portfolio, tradable asset,
        ledger guards, pre-trade limits at ``stage``, e.g. ``"fill"``); the
        entry gets its own ``ledger.trade`` audit record. ``override`` lets
        soft limits through (`pmkit.risk.controls.Override`; one stored by the
        workflow may name the manager who granted it). Returns the ledger
        sequence number.
        """
        seq, rec = append_trade(
            self.registry,
            self._raw,
            self.events,
            portfolio,
            asset,
            quantity,
            price,
            fee,
            ts,
            memo,
            override=override,
            stage=stage,
            ctx=self,
        )
        self._raw.note("ledger.trade", portfolio, None, rec)
        return seq

    def append_cash(
        self, portfolio: str, amount: float, *, ts: datetime | None = None, memo: str = ""
    ) -> int:
        """Append an external cash flow in this transaction (as `record_cash`)."""
        seq, rec = append_cash(self.registry, self._raw, self.events, portfolio, amount, ts, memo)
        self._raw.note("ledger.cash", portfolio, None, rec)
        return seq


#: The name services have used since the first release.
Mutation = WriteContext
