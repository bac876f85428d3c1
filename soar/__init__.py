"""soar: security orchestration, automation and response.

The names connector authors need are re-exported from `soar.connectors`; this module carries
only the version.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
