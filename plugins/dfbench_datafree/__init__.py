"""Data-free distillation methods adapted to data-free SBIR: DAFL, DeepInversion, ADI, DFAD, ZSKT,
DFQ, CMI and Fast-Datafree, each a declaration over dfbench's shared engine; the ``pixels`` and
``generators`` inversion strategies they use are in ``dfbench_inversions`` (docs/datafree.md)."""
