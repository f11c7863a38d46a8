"""Keep pmkit's compiled JAX programs on disk, so a new process does not compile them again.

JAX compiles each jitted program once per input shape in each process. The
programs behind the risk screens (historical VaR and ES with their Euler
contributions, volatility, drawdowns) take from a fraction of a second to
several seconds each to compile on a busy machine, which a served app pays
again after every restart. JAX's persistent compilation cache stores the
compiled executables on disk and loads them in milliseconds.

`enable_compile_cache` turns it on for the whole process. It is a
process-wide JAX setting, so the library never turns it on by itself:
``pmkit serve`` does, before anything compiles, and a notebook may call it.
Set ``PMKIT_JAX_CACHE=off`` to keep it off, or ``PMKIT_JAX_CACHE_DIR`` to
choose the directory.

JAX runs what it finds in the cache as is (the cache is trusted), so the
directory is created private to the user (mode 0700) and refused when
anyone else may write to it.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "CACHE_ENV", "default_cache_dir", "enable_compile_cache"]

#: Environment variable naming the cache directory.
CACHE_DIR_ENV = "PMKIT_JAX_CACHE_DIR"
#: Environment variable that turns the cache off when ``off``, ``0``, ``false`` or ``no``.
CACHE_ENV = "PMKIT_JAX_CACHE"


def default_cache_dir() -> Path:
    """``$PMKIT_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/pmkit/jax``, else ``~/.cache/pmkit/jax``."""
    given = os.environ.get(CACHE_DIR_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pmkit" / "jax"


def _private(path: Path) -> bool:
    info = path.stat()
    mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return mine and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def enable_compile_cache(
    path: str | os.PathLike[str] | None = None, *, min_compile_seconds: float = 0.0
) -> Path | None:
    """Turn on JAX's persistent compilation cache for this process.

    Parameters
    ----------
    path : path-like, optional
        Cache directory (default `default_cache_dir`); created with mode 0700.
    min_compile_seconds : float, default 0.0
        Programs that compiled faster than this are not stored (JAX's
        default is 1 s; pmkit's small programs add up, so all are kept).

    Returns
    -------
    pathlib.Path or None
        The directory in use: the one already configured if the process
        chose one before (left as it is), else ``path``; None when turned off
        by ``PMKIT_JAX_CACHE`` or when the directory is unusable (a warning
        says why).
    """
    if os.environ.get(CACHE_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        return None
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    directory = Path(path).expanduser() if path is not None else default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(directory):
            warnings.warn(f"not using {directory} as JAX compilation cache: other users may "
                          "write to it, and JAX runs cached programs as they are",
                          RuntimeWarning, stacklevel=2)
            return None
    except OSError as exc:
        warnings.warn(f"no JAX compilation cache: {exc}", RuntimeWarning, stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    # JAX decides once per process whether the cache is on; if something compiled
    # already, make it decide again (this clears no compiled program).
    compilation_cache.reset_cache()
    return directory
