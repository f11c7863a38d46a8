"""Execution: costs, impact and liquidity, schedules, the engine, router, monitoring and TCA."""

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
from pmkit.execution.engine import ExecutionEngine, RunResult, read_parents
from pmkit.execution.impact import (
    AlmgrenChriss,
    ImpactFit,
    calibrate_square_root,
    estimate_profile,
    liquidity,
    plot_frontier,
    square_root_impact,
    u_shape_profile,
)
from pmkit.execution.monitor import portfolio_progress, progress, schedule_frame
from pmkit.execution.paper import PaperBroker
from pmkit.execution.plan import ChildFill, ExecutionPlan, plan_of
from pmkit.execution.router import OrderFeatures, RouteDecision, SmartRouter, Split, Venue
from pmkit.execution.session import IntradaySession, Tick, simulate_session
from pmkit.execution.tca import TCAReport, calibration_error, shortfall, tca
from pmkit.execution.venues import SimulatedVenue, default_venues

__all__ = [
    "OPEN_ORDER_STATUSES",
    "AlmgrenChriss",
    "Broker",
    "ChildFill",
    "CostBreakdown",
    "CostModel",
    "ExecutionEngine",
    "ExecutionPlan",
    "ExecutionService",
    "Fill",
    "FillRecorder",
    "ImpactFit",
    "IntradaySession",
    "Order",
    "OrderFeatures",
    "OrderStatus",
    "PaperBroker",
    "RouteDecision",
    "RunResult",
    "SimulatedVenue",
    "SmartRouter",
    "Split",
    "TCAReport",
    "Tick",
    "Venue",
    "calibrate_square_root",
    "calibration_error",
    "check_orders",
    "default_venues",
    "estimate_profile",
    "liquidity",
    "new_order_id",
    "plan_of",
    "plot_frontier",
    "portfolio_progress",
    "progress",
    "read_parents",
    "schedule_frame",
    "shortfall",
    "simulate_session",
    "square_root_impact",
    "tca",
    "u_shape_profile",
]
