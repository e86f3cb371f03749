"""Built-in run loggers: ``jsonl`` (no dependency), ``tensorboard`` and ``mlflow`` (dfbench.api.loggers)."""
