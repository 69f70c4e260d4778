"""The client, the remote CLI, the pages, the charts and the metrics never import torch:
`adamtune status` and the API must start fast on machines without a GPU stack."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "tuner.client",
    "adamtune.cli.remote",
    "api.charts",
    "api.metrics",
    "api.routes.pages",
    "api.routes.plots",
    "api.app",
]


def test_ui_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + (
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "print(','.join(loaded))\n"
        )
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"torch imported: {done.stdout.strip()[:200]}"
