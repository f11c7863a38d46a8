"""Streaming options (`StreamSettings`): defined with the registry, whose settings hold them.

The registry validates them when they are set, so the definition lives in
`pmkit.registry.streaming`; this module keeps the stream-side import path.
"""

from pmkit.registry.streaming import StreamSettings

__all__ = ["StreamSettings"]
