"""Execution: costs, impact and liquidity models, the broker interface, the paper broker."""

from pmkit.execution.broker import (
    OPEN_ORDER_STATUSES,
    Broker,
    ExecutionService,
    Fill,
    FillRecorder,
    Order,
    OrderStatus,
    check_orders,
    new_order_id,
)
from pmkit.execution.costs import CostBreakdown, CostModel
from pmkit.execution.impact import (
    AlmgrenChriss,
    ImpactFit,
    calibrate_square_root,
    liquidity,
    plot_frontier,
    square_root_impact,
    u_shape_profile,
)
from pmkit.execution.paper import PaperBroker

__all__ = [
    "OPEN_ORDER_STATUSES",
    "AlmgrenChriss",
    "Broker",
    "CostBreakdown",
    "CostModel",
    "ExecutionService",
    "Fill",
    "FillRecorder",
    "ImpactFit",
    "Order",
    "OrderStatus",
    "PaperBroker",
    "calibrate_square_root",
    "check_orders",
    "liquidity",
    "new_order_id",
    "plot_frontier",
    "square_root_impact",
    "u_shape_profile",
]
