"""Typed errors raised by pmkit.

Every error names what was wrong: the field (or label) and the offending value.
Services raise them *before* they change anything, so a caught error always
means the store, registry and ledger are as they were.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlignmentError",
    "AllocationError",
    "AlreadyExistsError",
    "ConfigConflictError",
    "ConfigError",
    "CurrencyMismatchError",
    "CycleError",
    "DuplicateLabelError",
    "InfeasibleError",
    "InsufficientCashError",
    "InsufficientDataError",
    "IntegrityError",
    "InvalidIdError",
    "LifecycleError",
    "LimitBreachError",
    "LimitExceededError",
    "MakerCheckerError",
    "MissingDependencyError",
    "MissingPriceError",
    "NoSolutionError",
    "NonMonotonicTimeError",
    "NonPositivePriceError",
    "NotAStoreError",
    "NotFoundError",
    "OpenPositionsError",
    "PermissionDenied",
    "PmkitError",
    "PriceBandError",
    "ReadOnlyStoreError",
    "SchemaVersionError",
    "ShortSaleError",
    "SolverError",
    "StoreError",
    "StoreLockedError",
    "StoreNotFoundError",
    "ThrottledError",
    "TransitionError",
    "UnitsMismatchError",
    "UnknownAssetError",
    "ValidationError",
]


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PmkitError(Exception):
    """Base class of every error pmkit raises on purpose."""


class ValidationError(PmkitError, ValueError):
    """Input that pmkit refuses.

    Parameters
    ----------
    field : str
        Name of the offending field, coordinate or argument.
    value : Any
        The offending value (or label).
    reason : str
        Why it was refused, in plain words.
    """

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}={_short(value)}: {reason}")


class MissingPriceError(ValidationError):
    """A price is NaN where one is needed (after listing, or for a held asset)."""


class NonPositivePriceError(ValidationError):
    """A price is zero or negative."""


class DuplicateLabelError(ValidationError):
    """A label appears more than once along a dimension."""


class NonMonotonicTimeError(ValidationError):
    """The ``time`` coordinate is not strictly increasing."""


class UnknownAssetError(ValidationError):
    """An asset is referenced that the market data does not have."""


class InvalidIdError(ValidationError):
    """A portfolio, group or user identifier is malformed."""


class AllocationError(ValidationError):
    """A target allocation is malformed or does not sum to 1."""


class CycleError(ValidationError):
    """A group membership would make a group contain itself."""


class ConfigError(ValidationError):
    """A configuration value or shape is not accepted."""


class ConfigConflictError(ConfigError):
    """Two groups at the same depth give different values for one config key."""


class CurrencyMismatchError(ValidationError):
    """Values in different currencies would be added without FX rates."""


class InsufficientDataError(ValidationError):
    """Too few observations for a statistic (or an asset with no data at all)."""


class AlignmentError(ValidationError):
    """Labels of two inputs that must match do not (assets, portfolios, times)."""


class UnitsMismatchError(ValidationError):
    """Inputs whose ``units`` attrs disagree, or differ from the units a function works in.

    E.g. annualized expected returns given with a per-period covariance:
    mixing them silently would overstate a Sharpe ratio by ``sqrt(252)``.
    ``field`` and ``value`` are the offending input and its units; the
    message names the other input (or the expected units) too.
    """


class NoSolutionError(PmkitError):
    """A numerical problem has no solution, e.g. an IRR with no root."""


class InfeasibleError(PmkitError, ValueError):
    """An optimization problem has no feasible point.

    Parameters
    ----------
    conflicts : list of str
        Human-readable statements of the constraints that conflict, e.g.
        ``"sector minimums sum to 1.2 > budget 1"``. The first is the most
        specific finding; the list is never empty.
    """

    def __init__(self, conflicts: list[str] | str) -> None:
        self.conflicts = [conflicts] if isinstance(conflicts, str) else list(conflicts)
        if not self.conflicts:
            self.conflicts = ["the constraints admit no feasible point"]
        super().__init__("infeasible: " + "; ".join(self.conflicts))


class SolverError(PmkitError, RuntimeError):
    """Every solver in the fallback chain failed on a feasible-looking problem.

    Parameters
    ----------
    statuses : dict of str to str
        Solver name to the status (or exception text) it returned, in the
        order they were tried.
    problem : str
        What was being solved, e.g. ``"minimum variance"``.
    """

    def __init__(self, statuses: dict[str, str], problem: str = "optimization") -> None:
        self.statuses = dict(statuses)
        self.problem = problem
        tried = ", ".join(f"{k}: {v}" for k, v in self.statuses.items()) or "no solver available"
        super().__init__(f"{problem} failed in every solver ({tried})")


class NotFoundError(PmkitError, LookupError):
    """A portfolio, group, user or record does not exist.

    Parameters
    ----------
    kind : str
        What was looked up, e.g. ``"portfolio"``.
    key : Any
        The identifier that was not found.
    """

    def __init__(self, kind: str, key: Any) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {_short(key)} does not exist")

    def __str__(self) -> str:  # LookupError would otherwise repr() the message
        return self.args[0]


class AlreadyExistsError(PmkitError):
    """An identifier is already taken (by a portfolio, a group or a tombstone)."""

    def __init__(self, kind: str, key: Any, detail: str = "") -> None:
        self.kind = kind
        self.key = key
        msg = f"{kind} {_short(key)} already exists"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class LifecycleError(PmkitError):
    """An operation is not allowed in the target's current lifecycle state."""

    def __init__(self, target: str, status: str, action: str, detail: str = "") -> None:
        self.target = target
        self.status = status
        self.action = action
        msg = f"cannot {action} {target!r} while it is {status!r}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


class OpenPositionsError(LifecycleError):
    """A hard delete was refused because the portfolio still holds positions."""


class PermissionDenied(PmkitError):
    """The acting user lacks the role an action needs on its target.

    Parameters
    ----------
    user : str
        The acting user.
    action : str
        The action that was refused, e.g. ``"portfolio.delete"``.
    target : str
        The portfolio or group id (or ``"registry"``).
    needed : str
        The least role that would have allowed it.
    """

    def __init__(self, user: str, action: str, target: str, needed: str = "") -> None:
        self.user = user
        self.action = action
        self.target = target
        self.needed = needed
        msg = f"user {user!r} may not {action} on {target!r}"
        super().__init__(f"{msg} (needs role {needed!r})" if needed else msg)


class MakerCheckerError(PermissionDenied):
    """The user who proposed something tried to approve it (four-eyes rule)."""

    def __init__(self, user: str, action: str, target: str) -> None:
        super().__init__(user, action, target)
        self.args = (
            f"user {user!r} may not {action} {target!r}: they proposed it, and approval"
            " needs a second person (maker-checker)",
        )


class TransitionError(LifecycleError):
    """A state machine was asked for a transition its current state does not allow.

    Parameters
    ----------
    target : str
        Id of the proposal, order or signal.
    status : str
        Its current state.
    action : str
        The requested transition, e.g. ``"approve"``.
    allowed : sequence of str
        The transitions the current state does allow.
    """

    def __init__(self, target: str, status: str, action: str, allowed: Any = ()) -> None:
        allowed = sorted(allowed)
        detail = f"allowed from {status!r}: {allowed}" if allowed else f"{status!r} is final"
        super().__init__(target, status, action, detail)
        self.allowed = allowed


class InsufficientCashError(ValidationError):
    """A trade or fill would take cash below zero (or below the configured margin)."""


class LimitExceededError(ValidationError):
    """A value, or what it would do (a product, a balance), exceeds a documented bound."""


class LimitBreachError(LimitExceededError):
    """A trade would breach a portfolio's pre-trade risk limit (`pmkit.risk.controls`).

    Raised before anything is written: the proposal, signal, order or
    trade is refused and the store is as it was (a signal's refusal is
    recorded as a rejected signal, like its other rejections).

    Parameters
    ----------
    limit : str
        The limit's configuration key, e.g. ``"max_position_weight"``
        (also the error's ``field``).
    value : float
        The value the trade would lead to, in the limit's unit (NaN when it
        cannot be measured; the reason says why).
    threshold : float
        The configured limit it exceeds.
    portfolio : str, optional
        The portfolio whose limit it is.
    stage : str, optional
        Where it was checked: ``"signal"``, ``"proposal"``, ``"approval"``,
        ``"order"``, ``"fill"`` or ``"trade"``.
    item : str, optional
        The asset or sector of a per-item limit.
    hard : bool, default True
        False for a soft limit: a manager may override it with a reason.
    breaches : sequence, optional
        Every `pmkit.risk.controls.Breach` found (the first is this one).
    reason : str, optional
        The message; default built from the other fields.
    """

    def __init__(
        self,
        limit: str,
        value: float,
        threshold: float,
        *,
        portfolio: str | None = None,
        stage: str | None = None,
        item: str | None = None,
        hard: bool = True,
        breaches: Any = (),
        reason: str = "",
    ) -> None:
        self.limit = limit
        self.threshold = threshold
        self.portfolio = portfolio
        self.stage = stage
        self.item = item
        self.hard = hard
        self.breaches = tuple(breaches)
        if not reason:
            what = f"{item} " if item else ""
            kind = "hard" if hard else "soft"
            reason = f"{what}would be {value:g}, above the {kind} limit {threshold:g}"
            if portfolio is not None:
                reason += f" of {portfolio!r}"
            if stage is not None:
                reason += f" (checked at {stage})"
        super().__init__(limit, value, reason)


class ShortSaleError(ValidationError):
    """A sale of more than is held, in a portfolio whose configuration does not allow shorts."""


class PriceBandError(ValidationError):
    """A trade price too far from the last known close (pass ``force=True`` with a reason)."""


class StoreError(PmkitError):
    """The store refused or failed an operation.

    Parameters
    ----------
    message : str
        What happened.
    path : str, optional
        The store's location (file path or URL), when the error concerns one.
    reason : str, optional
        Why, in plain words (repeated in the message).
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str = "") -> None:
        self.path = path
        self.reason = reason or message
        super().__init__(message)


class _StoreFileError(StoreError):
    """Base of the errors that name a store path and a reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"store {path!r}: {reason}", path=path, reason=reason)


class SchemaVersionError(_StoreFileError):
    """The store's schema is newer than this pmkit understands."""


class NotAStoreError(_StoreFileError):
    """The path is not a pmkit store: a foreign or damaged file, a directory, or a bad parent.

    The file was left byte-for-byte as it was.
    """


class StoreNotFoundError(_StoreFileError):
    """No store exists at the path and creating one was not asked for."""


class ReadOnlyStoreError(_StoreFileError):
    """A write was attempted on a store opened read-only (or on a file that cannot be written)."""


class StoreLockedError(_StoreFileError):
    """Another writer held the store's lock for longer than the busy timeout."""


class IntegrityError(_StoreFileError):
    """Stored data contradicts itself, e.g. a positions cache that differs from the ledger replay.

    Parameters
    ----------
    path : str
        The store.
    reason : str
        What differs; names the portfolio.
    portfolio : str, optional
        The portfolio whose data is inconsistent.
    """

    def __init__(self, path: str, reason: str, *, portfolio: str | None = None) -> None:
        super().__init__(path, reason)
        self.portfolio = portfolio


class ThrottledError(PmkitError):
    """Too many attempts (e.g. failed logins); retry after ``retry_after`` seconds.

    Parameters
    ----------
    key : str
        What is throttled, e.g. ``"login 'alice'"`` or ``"address 10.0.0.1"``.
    retry_after : float
        Seconds until another attempt is accepted.
    """

    def __init__(self, key: str, retry_after: float) -> None:
        self.key = key
        self.retry_after = float(retry_after)
        super().__init__(f"too many attempts for {key}; retry in {self.retry_after:.0f} s")


class MissingDependencyError(PmkitError, ImportError):
    """An optional dependency (an extra) is needed and not installed."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(f"{package!r} is not installed: pip install 'pmkit[{extra}]'")
