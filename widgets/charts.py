"""What every chart of the views shares, and the Bokeh figures of the busiest tabs.

The Risk and Optimize tabs draw their charts with Bokeh directly rather than
through hvplot/HoloViews: a served session builds a chart on its one thread
while the person waits. Built and turned into a page's models on an idle
machine, the frontier took 0.39 s through HoloViews and 0.13 s directly, the
three Risk charts 0.54 s and 0.24 s; with a browser sharing two cores both
double. That kept the Optimize tab from opening within 2 s after Risk
(issue 15). Groups and Approvals keep hvplot: their charts are small and
their tabs open well within the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pmkit.display import TABULATOR_FORMATS, Kind

__all__ = ["CANVAS", "CHART_TOOLS", "PALETTE", "hover", "new_figure", "tooltip_field"]

#: Bokeh options of every chart (``backend_opts`` of hvplot and HoloViews): draw on the 2D
#: canvas, not with WebGL (HoloViews' default). The views' charts draw at most a few
#: thousand points, which the canvas draws sooner, and WebGL without a GPU (remote
#: desktops, headless browsers) goes through a software rasterizer and a copy onto the page.
CANVAS = {"plot.output_backend": "canvas"}

#: Tools of a chart drawn with `new_figure` (hover and tap are added per chart).
CHART_TOOLS = "pan,wheel_zoom,box_zoom,reset,save"

#: Colours of series told apart by colour (Bokeh's Category10, cycled past ten).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def new_figure(title: str, *, height: int, xlabel: str = "", ylabel: str = "",
               **options: Any) -> Any:
    """A Bokeh figure as every view's chart is: container-wide, on the canvas.

    Parameters
    ----------
    title : str
        Chart title.
    height : int
        Height in screen pixels; the width follows the container.
    xlabel, ylabel : str
        Axis labels (with their units).
    **options
        Other ``bokeh.plotting.figure`` options (``x_axis_type``, ``y_range`` …).
    """
    from bokeh.plotting import figure

    fig = figure(title=title, height=height, sizing_mode="stretch_width",
                 output_backend="canvas", tools=CHART_TOOLS, toolbar_location="right",
                 x_axis_label=xlabel or None, y_axis_label=ylabel or None, **options)
    fig.toolbar.logo = None
    return fig


def tooltip_field(column: str, kind: Kind) -> str:
    """A Bokeh tooltip field showing ``column`` as `pmkit.display` formats ``kind``."""
    return f"@{{{column}}}{{{TABULATOR_FORMATS[kind]}}}"


def hover(fig: Any, renderers: Sequence[Any], tooltips: list[tuple[str, str]],
          formatters: dict[str, str] | None = None) -> Any:
    """Add a hover tool over ``renderers`` of ``fig`` and return it."""
    from bokeh.models import HoverTool

    tool = HoverTool(renderers=list(renderers), tooltips=tooltips,
                     formatters=dict(formatters or {}))
    fig.add_tools(tool)
    return tool
