"""Stage 6: downstream tasks (App. D) - registry, readers, metrics, tokenizers, fine-tuning, evaluation."""
