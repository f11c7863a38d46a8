"""pmkit's mark, inline: the app's favicon and the sign-in pages' logo, fetched from nowhere."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

__all__ = ["FAVICON", "FAVICON_FILE", "FONTS", "LOGO_SVG", "NAME", "mark_svg"]

#: The product's name as every page shows it.
NAME = "pmkit"

#: The fonts of every page: the system's own, so no page fetches a web font.
FONTS = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif'


def mark_svg(size: int) -> str:
    """The mark (a rising line on a navy tile) as an SVG element ``size`` px square."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{int(size)}" height="{int(size)}" '
            'viewBox="0 0 32 32" aria-hidden="true"><rect width="32" height="32" rx="6" '
            'fill="#1f4e79"/><path d="M6 23l6-7 5 4 9-11" stroke="#fff" stroke-width="3" '
            'fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>')


#: The mark beside the name on the sign-in pages.
LOGO_SVG = mark_svg(36)

#: The favicon of every page, as a data URL.
FAVICON = "data:image/svg+xml," + quote(mark_svg(32))

#: The favicon as a file (``mark_svg(32)``): Panel's templates take a path, not a data URL,
#: and embed the file in the page.
FAVICON_FILE = Path(__file__).with_name("static") / "favicon.svg"
