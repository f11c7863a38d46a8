"""Labelled risk over the JAX core: VaR/ES, contributions, covariance, stress, exposures, limits."""
