"""taskloom-rich: a live progress display while a flow runs, one bar per task name.

The display starts when a top-level flow run starts on a terminal and stops, leaving its last
frame on screen, when that flow run finishes. Task runs of its subflows add rows to it. It is
switched by the ``progress.enabled`` setting (``true``, ``false`` or ``"auto"``, the default:
on when standard error is a terminal), ``TASKLOOM_PROGRESS_ENABLED`` in the environment.

Importing this package does not import rich: rich is imported when a display starts.
"""

from __future__ import annotations

from ._switch import progress_wanted

__version__ = "0.1.0"
__all__ = ["progress_wanted"]
