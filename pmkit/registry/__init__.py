"""The multi-portfolio registry: lifecycle, groups, configuration and access control."""

from pmkit.registry.access import AccessPolicy, Role
from pmkit.registry.config import from_single_portfolio_config, validate_multi_portfolio_config
from pmkit.registry.context import Mutation, WriteContext
from pmkit.registry.ids import namespace_of, validate_id
from pmkit.registry.records import GroupInfo, GroupNode, PortfolioInfo, Segment
from pmkit.registry.registry import ALLOCATION_TOLERANCE, Registry
from pmkit.registry.resolution import ResolvedConfig
from pmkit.registry.view import ReadView

__all__ = [
    "ALLOCATION_TOLERANCE",
    "AccessPolicy",
    "GroupInfo",
    "GroupNode",
    "Mutation",
    "PortfolioInfo",
    "ReadView",
    "Registry",
    "ResolvedConfig",
    "Role",
    "Segment",
    "WriteContext",
    "from_single_portfolio_config",
    "namespace_of",
    "validate_id",
    "validate_multi_portfolio_config",
]
