"""User-facing errors: the command line prints them and exits with code 2."""

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user: what is wrong, where, and how to fix it.

    The command line catches it, prints the message (no traceback) and exits with code 2.
    Raise it before anything is written, so that bad input never leaves half a result behind.
    """


def close_match(name: str, names: Iterable[str]) -> str | None:
    """The valid name nearest to a misspelt ``name`` (difflib), or None."""
    near = difflib.get_close_matches(name, list(names), n=1)
    return near[0] if near else None


def lookup(table: Mapping[str, T], name: str, kind: str, listing: str | None = None) -> T:
    """``table[name]``, or a ``UserError`` that suggests the nearest name and lists the valid ones.

    ``kind`` says what is looked up ("task", "model", ...); ``listing`` replaces the list of names
    (e.g. "`synthpre tasks` lists them all.") where the table is long.
    """
    if name in table:
        return table[name]
    near = close_match(name, table)
    hint = f" Did you mean {near!r}?" if near else ""
    listing = listing or f"Valid {kind}s: {', '.join(table)}."
    raise UserError(f"unknown {kind} {name!r}.{hint} {listing}")
