"""Helpers for tests of the Panel views."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


def double_click_while_running(button: Any, view: Any, release: threading.Event) -> list[bool]:
    """Click ``button`` twice inside an event loop while its call is held by ``release``.

    The second click arrives while the first call still runs on the view's
    worker; ``release`` is then set and the loop waits (up to 10 s) until the
    view is idle again. Returns the button's ``disabled`` state seen between
    the clicks (``[True]`` when the view guards its call).
    """
    seen: list[bool] = []

    async def main() -> None:
        button.clicks += 1
        await asyncio.sleep(0.05)
        seen.append(button.disabled)
        button.clicks += 1  # the second click of a double click
        release.set()
        for _ in range(1000):
            await asyncio.sleep(0.01)
            if not view.acting:
                return

    asyncio.run(main())
    return seen
