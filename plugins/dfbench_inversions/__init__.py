"""dfbench's built-in inversion strategies (how training pairs are synthesised from teachers)."""
