"""Execution: the cost model, the broker interface and the paper broker."""

from pmkit.execution.costs import CostBreakdown, CostModel

__all__ = ["CostBreakdown", "CostModel"]
