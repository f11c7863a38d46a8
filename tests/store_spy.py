"""Watch which write transactions a store opens (to test what commits together)."""

from __future__ import annotations

from typing import Any


def opened_transactions(store: Any, monkeypatch: Any, *, actor: bool = False) -> list[tuple]:
    """From now on, every transaction ``store`` opens, in order.

    Entries are ``(action, target)``, or ``(actor, action, target)`` with ``actor=True``.
    The list fills as transactions open; ``monkeypatch`` undoes the spying.
    """
    opened: list[tuple] = []
    real = store.transaction

    def counting(who: str, action: str, target: str) -> Any:
        opened.append((who, action, target) if actor else (action, target))
        return real(who, action, target)

    monkeypatch.setattr(store, "transaction", counting)
    return opened
