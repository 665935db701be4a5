"""User-facing errors: the command line prints them and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: what is wrong, where, and how to fix it.

    The command line catches it, prints the message (no traceback) and exits with code 2.
    Raise it before anything is written, so that bad input never leaves half a result behind.
    """
