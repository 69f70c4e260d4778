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
