"""The multi-portfolio registry: lifecycle, groups, configuration and access control."""

from pmkit.registry.access import Role
from pmkit.registry.config import from_single_portfolio_config, validate_multi_portfolio_config
from pmkit.registry.ids import namespace_of, validate_id
from pmkit.registry.records import GroupInfo, GroupNode, PortfolioInfo, Segment
from pmkit.registry.registry import ALLOCATION_TOLERANCE, Mutation, Registry, ResolvedConfig

__all__ = [
    "ALLOCATION_TOLERANCE",
    "GroupInfo",
    "GroupNode",
    "Mutation",
    "PortfolioInfo",
    "Registry",
    "ResolvedConfig",
    "Role",
    "Segment",
    "from_single_portfolio_config",
    "namespace_of",
    "validate_id",
    "validate_multi_portfolio_config",
]
