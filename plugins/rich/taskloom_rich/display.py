"""The live display, drawn by rich. This module is imported only when a display starts."""

from __future__ import annotations

import io
import logging
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from ._board import Board

__all__ = ["REFRESH_PER_SECOND", "ProgressDisplay", "render_board"]

REFRESH_PER_SECOND = 10
BAR_WIDTH = 40


def render_board(board: Board) -> RenderableType:
    """One row per task name: the name, a bar, ``done/total`` and, in red, ``N failed``."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True, overflow="ellipsis", style="bold")
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    for name, done, total, failed in board.snapshot():
        bar_style = "red" if failed else None
        bar = ProgressBar(
            total=total,
            completed=done,
            width=BAR_WIDTH,
            complete_style=bar_style or "bar.complete",
            finished_style=bar_style or "bar.finished",
        )
        table.add_row(
            name,
            bar,
            f"{done}/{total}",
            Text(f"{failed} failed", style="bold red") if failed else "",
        )
    return table


class _Frame:
    """The board as it is whenever rich draws it (a refresh, or lines printed above it)."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        yield render_board(self.board)


class _Raw:
    """Text that already ends in a newline, written as it is (its colours included)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        yield Segment(self.text)


class _Proxy(io.TextIOBase):
    """Stands in for a stream while the display is live: writes are queued, not drawn.

    Drawing every log line as it comes would redraw the bars once per line in the flow's
    thread (rich takes milliseconds for that); the refresh thread prints what was queued
    above the bars ten times a second instead. Once the display has stopped, writes go
    straight to the stream.
    """

    def __init__(self, display: ProgressDisplay, stream: IO[str]) -> None:
        super().__init__()
        self._display = display
        self._stream = stream

    @property
    def rich_proxied_file(self) -> IO[str]:
        # The name rich's own proxy uses: code that looks for a live display finds this one.
        return self._stream

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._display.enqueue(text, self._stream)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        # Anything else (``buffer``, ``errors``, ...) is the stream's own: it works, unqueued.
        return getattr(self._stream, name)


class ProgressDisplay:
    """A rich `Live` on ``stream`` that draws ``board`` ten times a second.

    While it is live, ``sys.stderr`` (where taskloom's console log sink writes) and the
    `logging.StreamHandler`s that write to ``stream`` have their lines printed above the bars
    instead of through them; so does ``sys.stdout`` when ``redirect_stdout`` (standard output
    is a terminal too). ``stop`` puts every stream back.
    """

    def __init__(self, board: Board, stream: IO[str], *, redirect_stdout: bool) -> None:
        self.board = board
        self.stream = stream
        self.console = Console(file=stream, highlight=False)
        self.live = Live(
            _Frame(board),
            console=self.console,
            auto_refresh=False,  # our thread refreshes: rich's would race with queued lines
            transient=False,
            redirect_stderr=False,
            redirect_stdout=False,
        )
        self._redirect_stdout = redirect_stdout
        # _draw: one writer to the terminal at a time. _queue_lock: the queue of lines.
        self._draw = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[tuple[str, IO[str]]] = []
        self._partial: dict[int, tuple[IO[str], str]] = {}  # by id(stream): a line not ended yet
        self._closed = False
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_version = -1
        self._restore: list[tuple[Any, str, Any, Any]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._draw:
            self._seen_version = self.board.version
            self.live.start(refresh=True)
            if self.console.is_terminal:
                self._redirect()
        self._thread = threading.Thread(target=self._refresh_loop, name="taskloom-rich-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop drawing; the last frame, with the final counts, stays on the screen."""
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._draw:
            try:
                self._print_queued()
                self.live.stop()
            finally:
                with self._queue_lock:
                    self._closed = True
                    queued, self._queue = self._queue, []
                # What came meanwhile, and unfinished lines, go below the last frame.
                for text, stream in queued:
                    stream.write(self._partial.pop(id(stream), (stream, ""))[1] + text)
                for stream, text in self._partial.values():
                    stream.write(text)
                self._partial.clear()
                self._undo_redirect()

    def _refresh_loop(self) -> None:
        while not self._done.wait(1 / REFRESH_PER_SECOND):
            with self._draw:
                if self._done.is_set():
                    return
                # Printing lines draws the frame below them, with the counts of now.
                if not self._print_queued() and self.board.version != self._seen_version:
                    self.live.refresh()
                self._seen_version = self.board.version

    # -- queued lines ------------------------------------------------------------------------

    def enqueue(self, text: str, stream: IO[str]) -> None:
        with self._queue_lock:
            if not self._closed:
                self._queue.append((text, stream))
                return
        stream.write(text)

    def _print_queued(self) -> bool:
        with self._queue_lock:
            queued, self._queue = self._queue, []
        if not queued:
            return False
        # Whole lines only: a frame drawn after half a line would split it.
        chunks: list[str] = []
        for text, stream in queued:
            key = id(stream)
            text = self._partial.pop(key, (stream, ""))[1] + text
            head, newline, tail = text.rpartition("\n")
            if newline:
                chunks.append(head + newline)
            if tail:
                self._partial[key] = (stream, tail)
        if not chunks:
            return False
        # crop=False: the lines go out as they came, however wide (rich would cut them).
        self.console.print(_Raw("".join(chunks)), crop=False)
        return True

    # -- streams -----------------------------------------------------------------------------

    def _redirect(self) -> None:
        proxy = _Proxy(self, self.stream)
        self._swap(sys, "stderr", proxy)
        if self._redirect_stdout:
            self._swap(sys, "stdout", _Proxy(self, sys.stdout))
        # Handlers that took the terminal's stream before the display started (the core's
        # plain console sink, logging.basicConfig) would write through the frame otherwise.
        for handler in _stream_handlers():
            if handler.stream is self.stream:
                self._swap(handler, "stream", proxy)

    def _swap(self, owner: Any, attribute: str, proxy: Any) -> None:
        previous = getattr(owner, attribute)
        setattr(owner, attribute, proxy)
        self._restore.append((owner, attribute, previous, proxy))

    def _undo_redirect(self) -> None:
        while self._restore:
            owner, attribute, previous, proxy = self._restore.pop()
            # Put back only what is still ours: someone may have swapped it since.
            if getattr(owner, attribute) is proxy:
                setattr(owner, attribute, previous)


def _stream_handlers() -> list[logging.StreamHandler[Any]]:
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)]
    found: dict[int, logging.StreamHandler[Any]] = {}
    for lg in loggers:
        for handler in list(lg.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                found[id(handler)] = handler
    return list(found.values())
