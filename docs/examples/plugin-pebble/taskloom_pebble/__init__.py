"""taskloom-pebble: a taskloom task runner on pebble's process pool.

Importing this package does not import pebble: the runner imports it when a flow enters it.
"""

from __future__ import annotations

from .runner import PebbleTaskRunner

__version__ = "0.1.0"

__all__ = ["PebbleTaskRunner"]
