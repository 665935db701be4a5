"""The ``synthpre`` command line: one sub-module per pipeline stage registers its commands."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer

from synthpre.errors import UserError, disk_full, is_disk_full

# Never touch a model or dataset hub: everything is built from configs or read from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

app = typer.Typer(
    help="synthpre: synthetic pre-training of T5 and decoder-only models (Wu, Li, Liang 2022) - generate "
    "tasks, pre-train, transfer weights or statistics, fine-tune, and build the paper's tables.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register_commands() -> None:
    import importlib

    for stage in ("tasks", "model", "train", "init", "downstream", "experiments"):
        importlib.import_module(f"synthpre.cli.{stage}").register(app)


_register_commands()


class _MessageFormatter(logging.Formatter):
    """The library's log records as the command line prints them: ``message``, ``warning: message``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def show_library_messages() -> None:
    """Print what the library logs (``logging.getLogger("synthpre...")``) on stderr, INFO and up."""
    logger = logging.getLogger("synthpre")
    for old in [h for h in logger.handlers if isinstance(h.formatter, _MessageFormatter)]:
        logger.removeHandler(old)  # main() run again in one process (tests): one handler, the current stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MessageFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main() -> None:
    """Entry point: run the app; a ``UserError`` prints its message and exits with code 2."""
    show_library_messages()
    try:
        app()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # a full disk anywhere: a message, not a traceback
        if not is_disk_full(error):
            raise
        written = Path(getattr(error, "filename", None) or Path.cwd())
        print(f"error: {disk_full(str(written), written.parent)}", file=sys.stderr)
        sys.exit(2)
