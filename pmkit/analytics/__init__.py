"""Labelled analytics over the JAX core: valuation, returns and performance statistics."""
