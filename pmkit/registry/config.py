"""Registry configuration: the ``multi_portfolio_config`` shape and migration.

The accepted shape is the design note's, key for key::

    {
        "portfolios": {pid: {"name", "description", "initial_capital", "currency",
                             "risk_profile", "benchmark", "tags", ...}},
        "groups": {gid: {"name", "portfolios": [...], "allocation": {...}}},
        "default_portfolio": pid,
        "isolation": {"events": bool, "data": bool, "resources": bool},
        "cross_portfolio": {"enable_analysis": bool, "enable_reporting": bool,
                            "correlation_analysis": bool},
    }

pmkit adds optional keys: per portfolio ``segment``, ``config``, ``status``;
per group ``description``, ``config`` and ``groups`` (child groups, for
hierarchies); at the top level ``defaults`` (configuration every portfolio
inherits).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pmkit.errors import ConfigError
from pmkit.validation import MAX_AMOUNT, check_bool, check_number, json_value

__all__ = [
    "CAPITAL_KEYS",
    "DEFAULT_PRICE_BAND",
    "DEFAULT_SETTINGS",
    "LEDGER_GUARD_KEYS",
    "PORTFOLIO_KEYS",
    "from_single_portfolio_config",
    "json_checked",
    "validate_config_values",
    "validate_multi_portfolio_config",
]

PORTFOLIO_KEYS = frozenset(
    {
        "name",
        "description",
        "initial_capital",
        "currency",
        "risk_profile",
        "benchmark",
        "tags",
        "segment",
        "config",
        "status",
    }
)
GROUP_KEYS = frozenset({"name", "description", "portfolios", "groups", "allocation", "config"})
TOP_KEYS = frozenset(
    {
        "portfolios",
        "groups",
        "default_portfolio",
        "isolation",
        "cross_portfolio",
        "defaults",
        "streaming",
    }
)
ISOLATION_KEYS = frozenset({"events", "data", "resources"})
CROSS_KEYS = frozenset({"enable_analysis", "enable_reporting", "correlation_analysis"})

#: Registry-wide settings before any config is applied.
DEFAULT_SETTINGS: dict[str, Any] = {
    "default_portfolio": None,
    "isolation": {"events": True, "data": True, "resources": True},
    "cross_portfolio": {
        "enable_analysis": True,
        "enable_reporting": True,
        "correlation_analysis": True,
    },
    "defaults": {},
}


#: Fraction a trade price may be away from the last known close without ``force=True``.
DEFAULT_PRICE_BAND = 0.25

#: Configuration keys that guard ``record_trade`` (and every fill and transfer booked
#: through the registry), with what they accept:
#:
#: - ``allow_short`` (bool, default False): sales may exceed the position held;
#: - ``margin_limit`` (amount >= 0 in the portfolio currency, default 0): how far
#:   below zero a trade or withdrawal may take cash;
#: - ``price_band`` (fraction > 0, default `DEFAULT_PRICE_BAND`): largest
#:   ``|price / last close - 1|`` accepted without ``force=True`` and a reason.
LEDGER_GUARD_KEYS = ("allow_short", "margin_limit", "price_band")


def _check_known(key: str, value: Any, field: str) -> None:
    name = f"{field}.{key}"
    if key == "allow_short":
        check_bool(value, name, ConfigError)
    elif key == "margin_limit":
        check_number(value, name, limit=MAX_AMOUNT, minimum=0.0, error=ConfigError)
    elif key == "price_band":
        check_number(value, name, limit=MAX_AMOUNT, positive=True, error=ConfigError)
    elif key == "max_position_weight":
        check_number(value, name, minimum=0.0, maximum=1.0, error=ConfigError)


def json_checked(value: Any, field: str) -> dict[str, Any]:
    """A checked configuration mapping (None: empty), exactly as it will be stored."""
    return validate_config_values({} if value is None else value, field)


def validate_config_values(values: Any, field: str = "config") -> dict[str, Any]:
    """A checked, JSON-ready copy of a configuration mapping.

    Every value must be JSON-like within `pmkit.validation.json_value`'s
    limits (finite numbers up to `pmkit.validation.MAX_AMOUNT`, bounded text,
    size and depth); the keys pmkit reads (`LEDGER_GUARD_KEYS`,
    ``max_position_weight``) must have their documented type. None values
    (which remove a key in `Registry.set_config`) are passed through.

    Raises
    ------
    ConfigError
        Naming the key path and value (`LimitExceededError` for a magnitude).
    """
    if not isinstance(values, Mapping):
        raise ConfigError(field, values, "must be a mapping")
    clean = json_value(values, field, error=ConfigError)
    for k, v in clean.items():
        if v is not None:
            _check_known(k, v, field)
    return clean


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(field, value, "must be a mapping")
    return value


def _known(keys: Any, allowed: frozenset[str], field: str) -> None:
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise ConfigError(field, unknown, f"unknown keys; allowed: {sorted(allowed)}")


def _flags(value: Any, allowed: frozenset[str], field: str) -> dict[str, bool]:
    d = _mapping(value, field)
    _known(d, allowed, field)
    for k, v in d.items():
        if not isinstance(v, bool):
            raise ConfigError(f"{field}.{k}", v, "must be True or False")
    return dict(d)


def validate_multi_portfolio_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check the shape of a ``multi_portfolio_config`` and return settings.

    Field values (ids, currencies, allocations) are validated later by the
    registry calls that apply them, inside the same transaction.

    Returns
    -------
    dict
        Registry settings: ``default_portfolio``, ``isolation``,
        ``cross_portfolio``, ``defaults`` and (when given) ``streaming``
        (`pmkit.registry.streaming.StreamSettings`), with defaults filled in.

    Raises
    ------
    ConfigError
        Naming the offending key path and value.
    """
    cfg = _mapping(config, "config")
    _known(cfg, TOP_KEYS, "config")
    portfolios = _mapping(cfg.get("portfolios", {}), "portfolios")
    for pid, spec in portfolios.items():
        _known(_mapping(spec, f"portfolios.{pid}"), PORTFOLIO_KEYS, f"portfolios.{pid}")
    for gid, spec in _mapping(cfg.get("groups", {}), "groups").items():
        _known(_mapping(spec, f"groups.{gid}"), GROUP_KEYS, f"groups.{gid}")
        for key in ("portfolios", "groups"):
            members = spec.get(key, [])
            if not isinstance(members, list | tuple) or not all(
                isinstance(m, str) for m in members
            ):
                raise ConfigError(f"groups.{gid}.{key}", members, "must be a list of ids")
    settings = {k: (dict(v) if isinstance(v, dict) else v) for k, v in DEFAULT_SETTINGS.items()}
    if "isolation" in cfg:
        iso = _flags(cfg["isolation"], ISOLATION_KEYS, "isolation")
        if iso.get("data") is False:
            # Each portfolio's ledger is keyed by its id and replayed alone;
            # there is no shared-data mode to switch to, so saying False would
            # be a promise pmkit cannot keep.
            raise ConfigError(
                "isolation.data",
                False,
                "pmkit always isolates portfolio data (per-portfolio ledgers)",
            )
        settings["isolation"] = {**settings["isolation"], **iso}
    if "cross_portfolio" in cfg:
        settings["cross_portfolio"] = {
            **settings["cross_portfolio"],
            **_flags(cfg["cross_portfolio"], CROSS_KEYS, "cross_portfolio"),
        }
    if "defaults" in cfg:
        settings["defaults"] = validate_config_values(cfg["defaults"], "defaults")
    if "streaming" in cfg:
        from pmkit.registry.streaming import StreamSettings

        settings["streaming"] = StreamSettings.from_mapping(cfg["streaming"]).to_dict()
    default = cfg.get("default_portfolio")
    if default is not None and (not isinstance(default, str) or default not in portfolios):
        raise ConfigError("default_portfolio", default, "is not one of the configured portfolios")
    settings["default_portfolio"] = default
    return settings


#: Names single-portfolio configurations give their starting cash (``equity_<ccy>``
#: also names the currency, as in the design note's ``{"equity_usd": 10000}``).
CAPITAL_KEYS = ("initial_capital", "capital", "equity", "initial_cash", "cash")


def _capital_keys(cfg: Mapping[str, Any]) -> list[str]:
    return [
        k
        for k in cfg
        if isinstance(k, str) and (k in CAPITAL_KEYS or re.fullmatch(r"equity_[a-z]{3}", k))
    ]


def from_single_portfolio_config(
    config: Mapping[str, Any], portfolio_id: str = "default"
) -> dict[str, Any]:
    """Migrate a single-portfolio configuration to the multi-portfolio shape.

    Portfolio metadata keys (``name``, ``initial_capital``, ``currency``, ...)
    become the one portfolio's attributes; every other key becomes that
    portfolio's configuration, so nothing in the old config is dropped. The
    starting cash may be named by any of `CAPITAL_KEYS` or ``equity_<ccy>``
    (which also sets the currency), at the top level or under ``config``; it
    becomes ``initial_capital``, deposited into the portfolio's ledger. The
    portfolio is the registry's default, so calls without a portfolio id keep
    acting on it.

    Parameters
    ----------
    config : mapping
        The old single-portfolio configuration.
    portfolio_id : str
        Id to give the portfolio.

    Returns
    -------
    dict
        A ``multi_portfolio_config`` accepted by `Registry.from_config`.

    Raises
    ------
    ConfigError
        Two capital keys with different amounts, or an ``equity_<ccy>`` key
        whose currency disagrees with ``currency``.
    """
    cfg = dict(_mapping(config, "config"))
    own = dict(_mapping(cfg.pop("config", {}), "config.config"))
    found: dict[str, Any] = {k: cfg.pop(k) for k in _capital_keys(cfg)}
    found.update({f"config.{k}": own.pop(k) for k in _capital_keys(own)})
    spec = {k: cfg.pop(k) for k in list(cfg) if k in PORTFOLIO_KEYS}
    for key, amount in found.items():
        amount = check_number(amount, key, minimum=0.0, limit=MAX_AMOUNT)
        if "initial_capital" in spec and spec["initial_capital"] != amount:
            raise ConfigError(
                key, amount, f"disagrees with the initial capital {spec['initial_capital']!r}"
            )
        spec["initial_capital"] = amount
        ccy = re.fullmatch(r"(?:config\.)?equity_([a-z]{3})", key)
        if ccy:
            currency = ccy.group(1).upper()
            if spec.setdefault("currency", currency) != currency:
                raise ConfigError(
                    key, amount, f"is in {currency}, the currency is {spec['currency']!r}"
                )
    spec.setdefault("name", portfolio_id.replace("_", " ").title())
    spec["config"] = {**cfg, **own}
    return {"portfolios": {portfolio_id: spec}, "default_portfolio": portfolio_id}
