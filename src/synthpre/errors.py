"""User-facing errors: the command line prints them and exits with code 2."""

import difflib
import errno
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
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


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    """A write that failed for want of space: ENOSPC or EDQUOT (also as safetensors reports it, in
    its message only)."""
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return True
    return "No space left on device" in str(error) or "Disk quota exceeded" in str(error)


def free_megabytes(path: Path) -> float:
    """Free space of the filesystem that holds ``path`` (its nearest existing folder), in MB."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free / 1e6


def disk_full(what: str, where: Path, needed_bytes: int | None = None, then: str = "") -> UserError:
    """The error for a full disk: what was being written, how much it needs and how much is free."""
    needs = f"needs ~{needed_bytes / 1e6:,.0f} MB, " if needed_bytes else ""
    return UserError(
        f"disk full while writing {what} ({needs}{free_megabytes(where):,.0f} MB free on {where}): "
        f"free some space{then}, or write elsewhere"
    )
