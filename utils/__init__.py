"""Data loading, logging, checkpoints and reports for sparse-maml."""
