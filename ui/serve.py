"""Start the dashboard: ``streamlit run app.py`` with the pages' heavy imports done before the first visit.

Streamlit runs nothing of the app until a browser connects, so the first visitor used to wait for
pandas, plotly, SQLAlchemy and the engine's API to import (0.5-0.8 s of a 3.5 s first chart here).
Importing them first moves that wait to the server's start. Streamlit-facing modules are left to the
first run, since they belong to a script run. Any ``streamlit run`` option may follow:

    python -m ui.serve --server.port 8501
"""
from __future__ import annotations

import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"


def main(argv: list[str] | None = None) -> int:
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import sqlalchemy  # noqa: F401

    import compression.api  # noqa: F401
    import ui.charts  # noqa: F401
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(APP), *(sys.argv[1:] if argv is None else argv)]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
