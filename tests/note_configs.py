"""Configurations quoted verbatim from the design notes (`../shared/seeds/`), shared by tests."""

from __future__ import annotations

#: ``multi_portfolio_config`` of note 001 ("Configuration Options"), verbatim.
NOTE_001_CONFIG = {
    "portfolios": {
        "growth_strategy": {
            "name": "Growth Strategy",
            "description": "High-growth technology focus",
            "initial_capital": 1000000.0,
            "currency": "USD",
            "risk_profile": "aggressive",
            "benchmark": "QQQ",
            "tags": ["technology", "growth", "high_risk"],
        },
        "income_strategy": {
            "name": "Income Strategy",
            "description": "Dividend-focused income generation",
            "initial_capital": 500000.0,
            "currency": "USD",
            "risk_profile": "conservative",
            "benchmark": "SPYD",
            "tags": ["dividend", "income", "low_risk"],
        },
    },
    "groups": {
        "client_a": {
            "name": "Client A Portfolios",
            "portfolios": ["growth_strategy", "income_strategy"],
            "allocation": {"growth_strategy": 0.7, "income_strategy": 0.3},
        }
    },
    "default_portfolio": "growth_strategy",
    "isolation": {"events": True, "data": True, "resources": True},
    "cross_portfolio": {
        "enable_analysis": True,
        "enable_reporting": True,
        "correlation_analysis": True,
    },
}
