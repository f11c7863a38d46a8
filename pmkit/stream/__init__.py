"""Real-time market data: wire protocol, local feed, streaming client, live revaluation."""
