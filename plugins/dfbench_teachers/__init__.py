"""dfbench's built-in teacher loaders: ``trained`` (train and cache) and ``checkpoint`` (load files)."""
