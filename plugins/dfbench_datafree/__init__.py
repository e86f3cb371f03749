"""Data-free distillation methods adapted to data-free SBIR: DAFL, DeepInversion, ADI, DFAD, ZSKT,
DFQ, CMI and Fast-Datafree, each a declaration over dfbench's shared engine, with the ``pixels``
and ``generators`` inversion strategies they need (docs/datafree.md)."""
