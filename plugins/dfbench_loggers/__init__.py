"""Built-in run loggers: ``jsonl`` (no dependency) and ``tensorboard`` (dfbench.api.loggers)."""
