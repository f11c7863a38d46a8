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

from collections.abc import Mapping
from typing import Any

from pmkit.errors import ConfigError

__all__ = [
    "DEFAULT_SETTINGS",
    "PORTFOLIO_KEYS",
    "from_single_portfolio_config",
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
        (`pmkit.stream.settings.StreamSettings`), with defaults filled in.

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
        settings["defaults"] = dict(_mapping(cfg["defaults"], "defaults"))
    if "streaming" in cfg:
        from pmkit.stream.settings import StreamSettings

        settings["streaming"] = StreamSettings.from_mapping(cfg["streaming"]).to_dict()
    default = cfg.get("default_portfolio")
    if default is not None and default not in portfolios:
        raise ConfigError("default_portfolio", default, "is not one of the configured portfolios")
    settings["default_portfolio"] = default
    return settings


def from_single_portfolio_config(
    config: Mapping[str, Any], portfolio_id: str = "default"
) -> dict[str, Any]:
    """Migrate a single-portfolio configuration to the multi-portfolio shape.

    Portfolio metadata keys (``name``, ``initial_capital``, ``currency``, ...)
    become the one portfolio's attributes; every other key becomes that
    portfolio's configuration, so nothing in the old config is dropped. The
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
    """
    cfg = dict(_mapping(config, "config"))
    spec = {k: cfg.pop(k) for k in list(cfg) if k in PORTFOLIO_KEYS and k != "config"}
    own = dict(_mapping(cfg.pop("config", {}), "config.config"))
    spec.setdefault("name", portfolio_id.replace("_", " ").title())
    spec["config"] = {**cfg, **own}
    return {"portfolios": {portfolio_id: spec}, "default_portfolio": portfolio_id}
