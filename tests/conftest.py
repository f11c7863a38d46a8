"""Shared pytest configuration."""

from __future__ import annotations

# -- hypothesis profiles (input-fuzz suite) ---------------------------------------------------
# "ci" bounds every hypothesis test that does not set its own max_examples, so the suite's
# run time stays predictable on shared CI runners; selected when the CI variable is set
# (as GitHub Actions and most CI services do). Locally hypothesis's defaults apply.
import os

from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
# -- end of hypothesis profiles -----------------------------------------------------------------
