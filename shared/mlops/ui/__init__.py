"""`mlops ui`: the dashboard, a Flask app of server-rendered pages over the archive, the registry
and the monitoring table.

It sits above the operator tools (`mlops.ops`: it calls their archive, lineage and replay
functions) and below the CLI. Charts are inline SVG drawn on the server (`charts.py`): no
JavaScript, nothing fetched from a CDN, and a test reads a chart's points from the HTML.
"""

from mlops.ui.app import create_app

__all__ = ["create_app"]
