"""adamtune: tune Adam/AdamW hyperparameters, as one command or as a service.

This is the user-facing package: the ``adamtune`` command (:mod:`adamtune.cli`) and what a
user's own code imports. Importing it stays cheap (no torch, no web framework), so scripts
and the CLI start fast; the engine lives in ``tuner``, the REST API in ``api``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adamtune")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_SDK = ("trial", "Trial", "Pruned", "WorkerLost", "ConfigError")


def __getattr__(name: str) -> object:
    """``adamtune.trial`` and the SDK's other names, imported on first use (:mod:`adamtune.sdk`)."""
    if name in _SDK:
        import adamtune.sdk

        return getattr(adamtune.sdk, name)
    raise AttributeError(f"module 'adamtune' has no attribute {name!r}")
