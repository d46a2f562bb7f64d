"""Run bookkeeping: run folder and its lock, checkpoints, RNG states, crash-safe
writes, signals, metrics."""
