"""taskloom-loky: a taskloom task runner on loky's reusable process pool.

Importing this package does not import loky: the runner imports it when a flow enters it.
"""

from __future__ import annotations

from .runner import LokyTaskRunner

__version__ = "0.1.0"

__all__ = ["LokyTaskRunner"]
