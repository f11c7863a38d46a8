"""Execution: the cost model, the broker interface and the paper broker."""

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
from pmkit.execution.paper import PaperBroker

__all__ = [
    "OPEN_ORDER_STATUSES",
    "Broker",
    "CostBreakdown",
    "CostModel",
    "ExecutionService",
    "Fill",
    "FillRecorder",
    "Order",
    "OrderStatus",
    "PaperBroker",
    "check_orders",
    "new_order_id",
]
