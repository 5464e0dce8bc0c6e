"""Logging of the long-running commands (``serve``, ``workers`` and their child processes)."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` (``info``...), one line per record, with the process id
    (several gateway processes share one terminal); httpx/aiohttp request lines are off."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per health check
