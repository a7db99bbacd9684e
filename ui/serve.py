"""Start the dashboard: ``streamlit run app.py`` with the pages' heavy imports done before the first visit.

Streamlit runs nothing of the app until a browser connects, so the first visitor used to wait for
pandas, plotly, SQLAlchemy and the engine's API to import (0.5-0.8 s of a 3.5 s first chart here).
Importing them first moves that wait to the server's start. Streamlit-facing modules are left to the
first run, since they belong to a script run. Any ``streamlit run`` option may follow:

    python -m ui.serve --server.port 8501

It listens on 127.0.0.1 only: a visitor of the dashboard can register local folders, start workers and
download models. ``COMPRESSION_LISTEN=0.0.0.0`` (or ``--server.address 0.0.0.0``) opts into other interfaces.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"
LOOPBACK = "127.0.0.1"


def address_args(args: list[str]) -> list[str]:
    """``--server.address`` from $COMPRESSION_LISTEN, else loopback, unless ``args`` already names one.

    Example: ``address_args(["--server.port", "8501"])`` -> ``["--server.address", "127.0.0.1"]``.
    """
    if any(a == "--server.address" or a.startswith("--server.address=") for a in args):
        return []
    return ["--server.address", os.environ.get("COMPRESSION_LISTEN") or LOOPBACK]


def main(argv: list[str] | None = None) -> int:
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import sqlalchemy  # noqa: F401

    import compression.api  # noqa: F401
    import ui.charts  # noqa: F401
    from streamlit.web import cli

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["streamlit", "run", str(APP), *address_args(args), *args]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
