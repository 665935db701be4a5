"""``synthpre models``: the named T5 configs and their exact parameter counts."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def list_models() -> None:
    """List the named T5 configs (built from config, never downloaded) with exact parameter counts.

    Counts are at the default vocabulary (32,128); `--vocab` of `synthpre pretrain` shrinks the
    embedding of small models. v1.0 models share the input and output embedding; v1.1 models
    have an untied output head.
    """
    from synthpre.model import MODEL_CONFIGS, model_summary

    table = Table(title="named T5 configs")
    for column in ("name", "version", "d_model", "d_kv", "d_ff", "layers enc+dec", "heads", "FFN", "head"):
        table.add_column(column)
    table.add_column("parameters", justify="right")
    for name in MODEL_CONFIGS:
        row = model_summary(name)
        table.add_row(
            name,
            "v1.0" if row["tied"] else "v1.1",
            str(row["d_model"]),
            str(row["d_kv"]),
            str(row["d_ff"]),
            f"{row['num_layers']}+{row['num_decoder_layers']}",
            str(row["num_heads"]),
            row["feed_forward_proj"],
            "tied (rescaled)" if row["tied"] else "untied",
            f"{row['parameters']:,}",
        )
    Console(width=max(Console().width, 130)).print(table)  # never truncate the counts


def register(app: typer.Typer) -> None:
    app.command("models")(list_models)
