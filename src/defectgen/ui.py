"""The terminal: two consoles that never interpret what they print.

Paths, class names and error messages come from users; `[red]` in a folder name must print as
`[red]`, not change colour or crash the error handler, and `:ok:` must not become an emoji.
Both consoles therefore have console markup and emoji codes off; styled words are passed as
`(text, style)` pairs to `say`.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

# emoji off too: `:ok:` in a path or class name prints as `:ok:`, not as an emoji
console = Console(stderr=True, markup=False, highlight=False, emoji=False)  # progress, notes, errors
out = Console(markup=False, highlight=False, emoji=False)  # results (tables, paths written)


def say(*parts: str | tuple[str, str], to: Console = console) -> None:
    """Print one line from plain strings and (text, style) pairs; nothing is parsed as markup."""
    to.print(Text.assemble(*parts), soft_wrap=True)
