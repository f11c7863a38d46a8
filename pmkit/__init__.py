"""pmkit: portfolio research and operations for many portfolios at once."""

__version__ = "0.1.0"
