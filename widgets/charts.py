"""What every chart of the views shares."""

from __future__ import annotations

__all__ = ["CANVAS"]

#: Bokeh options of every chart (``backend_opts`` of hvplot and HoloViews): draw on the 2D
#: canvas, not with WebGL (HoloViews' default). The views' charts draw at most a few
#: thousand points, which the canvas draws sooner, and WebGL without a GPU (remote
#: desktops, headless browsers) goes through a software rasterizer and a copy onto the page.
CANVAS = {"plot.output_backend": "canvas"}
