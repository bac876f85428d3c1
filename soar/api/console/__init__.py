"""The web console: hand-written static files (HTML, ES modules, CSS) with no build step, which
the API serves under /console/. Nothing here runs on the server but this path."""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR: Path = Path(__file__).resolve().parent / "static"
"""The directory holding `index.html` and the assets it loads by relative URL."""
