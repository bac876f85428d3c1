"""Ingestion: turning messages from detection systems into `Alert`s, or into rejections."""

from soar.ingest.limits import Limits
from soar.ingest.mappings import MAPPINGS, detect_format
from soar.ingest.normalize import normalize

__all__ = ["MAPPINGS", "Limits", "detect_format", "normalize"]
