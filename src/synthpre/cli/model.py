"""``synthpre models``: the named configs of both architectures and their exact parameter counts."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

FAMILIES = {"gpt2": "GPT-2", "gpt_neox": "Pythia (GPT-NeoX)", "llama": "Llama"}
POSITIONS = {"gpt2": "learned", "gpt_neox": "rotary", "llama": "rotary"}


def list_models() -> None:
    """List the named configs (built from config, never downloaded) with exact parameter counts: T5
    encoder-decoder models, then decoder-only models (GPT-2, Pythia, Llama).

    Counts are at the default vocabulary (T5: 32,128; decoder-only: 50,304, llama-100m: 32,128);
    `--vocab` of `synthpre pretrain` shrinks the embedding of the tiny models.

    v1.0 T5 models and GPT-2 share the input and output embedding; v1.1, Pythia and Llama untie it.
    A decoder-only model reads input and target as one row of at most `positions` tokens.
    """
    from synthpre.model import MODEL_CONFIGS, is_causal_name, model_summary

    rows = [model_summary(name) for name in MODEL_CONFIGS]
    t5 = Table(title="encoder-decoder (T5)")
    for column in ("name", "version", "d_model", "d_kv", "d_ff", "layers enc+dec", "heads", "FFN", "head"):
        t5.add_column(column)
    t5.add_column("parameters", justify="right")
    causal = Table(title="decoder-only")
    for column in ("name", "family", "d_model", "layers", "heads", "d_ff", "positions", "head"):
        causal.add_column(column)
    causal.add_column("parameters", justify="right")
    for row in rows:
        if is_causal_name(row["name"]):
            causal.add_row(
                row["name"],
                FAMILIES[row["family"]],
                str(row["d_model"]),
                str(row["num_layers"]),
                str(row["num_heads"]),
                str(row["d_ff"]),
                f"{row['max_positions']:,} ({POSITIONS[row['family']]})",
                "tied" if row["tied"] else "untied",
                f"{row['parameters']:,}",
            )
        else:
            t5.add_row(
                row["name"],
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
    console = Console(width=max(Console().width, 130))  # never truncate the counts
    console.print(t5)
    console.print(causal)


def register(app: typer.Typer) -> None:
    app.command("models")(list_models)
