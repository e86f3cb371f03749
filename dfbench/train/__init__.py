"""The training engine every data-free method shares: the data-free loop and its hooks
(``engine``), the synthesis loss terms (``terms``), student encoders and backbones (``students``,
``models``), data-parallel helpers (``distributed``), execution settings (``perf``), resumable
checkpoints (``checkpoint``), named random streams and seeding (``rng``, ``reproducibility``), the
exact retrieval metrics and the evaluation of an embedder (``metrics``, ``evaluation``), and data
subsets (``subset``).

Depends on :mod:`dfbench.api` only; never imports :mod:`dfbench.app`.
"""
