"""The terminal: two consoles that never interpret what they print.

Paths, class names and error messages come from users; `[red]` in a folder name must print as
`[red]`, not change colour or crash the error handler, and `:ok:` must not become an emoji.
Both consoles therefore have console markup and emoji codes off; styled words are passed as
`(text, style)` pairs to `say`.

Progress (`progress`, `track`) is rich's live display on a terminal and a plain line at a steady
pace elsewhere, so a run whose output goes to a log file still says how far it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress
from rich.text import Text

# emoji off too: `:ok:` in a path or class name prints as `:ok:`, not as an emoji
console = Console(stderr=True, markup=False, highlight=False, emoji=False)  # progress, notes, errors
out = Console(markup=False, highlight=False, emoji=False)  # results (tables, paths written)


def say(*parts: str | tuple[str, str], to: Console = console) -> None:
    """Print one line from plain strings and (text, style) pairs; nothing is parsed as markup."""
    to.print(Text.assemble(*parts), soft_wrap=True)


# --- progress ------------------------------------------------------------------------------------

PLAIN_EVERY = 30.0  # seconds between progress lines when the output is not a terminal


def progress(*columns, transient: bool = True, disable: bool = False):
    """A progress display on `console`: rich's live bars on a terminal; elsewhere (a log file, a
    pipe) a `PlainProgress` that prints a plain line at a steady pace. Same interface
    (`add_task`, `advance`, `update`, a context manager)."""
    if console.is_terminal:
        return Progress(*columns, console=console, transient=transient, disable=disable)
    return PlainProgress(disable=disable)


def track(sequence: Iterable, description: str, total: int | None = None, *, transient=True, disable=False):
    """Iterate over `sequence` with a `progress` display of it."""
    total = len(sequence) if total is None and hasattr(sequence, "__len__") else total
    with progress(transient=transient, disable=disable) as bar:
        task = bar.add_task(description, total=total)
        for value in sequence:
            yield value
            bar.advance(task)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict
    start: float
    printed: float  # when its last line was printed
    closed: bool = False  # its final line is out


class PlainProgress:
    """Progress for output that is not a terminal: one line per task every `PLAIN_EVERY` seconds
    while it runs and one when it ends (if it ran a second or more), e.g.
    `training: 300/1000 (30 %), 2:05 elapsed, about 4:52 left; loss_g 1.23`."""

    def __init__(self, disable: bool = False, clock=time.monotonic):
        self.disable, self.clock = disable, clock
        self.tasks: list[_Task] = []
        self._lock = threading.Lock()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields) -> int:
        now = self.clock()
        with self._lock:
            self.tasks.append(_Task(description, total, completed, fields, now, now))
            return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def update(self, task_id: int, *, completed=None, advance=None, total=None, description=None, **fields):
        with self._lock:
            task = self.tasks[task_id]
            task.completed = completed if completed is not None else task.completed + (advance or 0)
            task.total = total if total is not None else task.total
            task.description = description if description is not None else task.description
            task.fields.update(fields)
            now = self.clock()
            ended = task.total is not None and task.completed >= task.total
            due = now - task.printed >= PLAIN_EVERY or (ended and now - task.start >= 1.0)
            if self.disable or not due or task.closed:
                return
            task.printed, task.closed = now, ended
            line = self.line(task, now)
        say(line)

    @staticmethod
    def line(task: _Task, now: float) -> str:
        elapsed = now - task.start
        done = f"{task.completed:g}"
        if task.total:
            share = task.completed / task.total
            done += f"/{task.total:g} ({share:.0%})"
            if 0 < share < 1:
                done += f", {_clock(elapsed)} elapsed, about {_clock(elapsed / share - elapsed)} left"
            else:
                done += f", {_clock(elapsed)}"
        else:
            done += f", {_clock(elapsed)} elapsed"
        extra = "; ".join(str(v) for v in task.fields.values() if str(v))
        return f"{task.description}: {done}" + (f"; {extra}" if extra else "")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
