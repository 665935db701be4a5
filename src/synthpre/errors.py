"""User-facing errors: the command line prints them and exits with code 2."""

import difflib
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user: what is wrong, where, and how to fix it.

    The command line catches it, prints the message (no traceback) and exits with code 2.
    Raise it before anything is written, so that bad input never leaves half a result behind.
    """


def lookup(table: Mapping[str, T], name: str, kind: str, listing: str | None = None) -> T:
    """``table[name]``, or a ``UserError`` that suggests the nearest name and lists the valid ones.

    ``kind`` says what is looked up ("task", "model", ...); ``listing`` replaces the list of names
    (e.g. "`synthpre tasks` lists them all.") where the table is long.
    """
    if name in table:
        return table[name]
    near = difflib.get_close_matches(name, list(table), n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    listing = listing or f"Valid {kind}s: {', '.join(table)}."
    raise UserError(f"unknown {kind} {name!r}.{hint} {listing}")
