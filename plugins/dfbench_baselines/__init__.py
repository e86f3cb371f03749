"""The baselines of Data-Free SBIR (Chaudhuri et al., CVPR 2023) and its supervised reference bound.

Methods: ``classifier-only``, ``unimodal-kd``, ``gaussian-prior``, ``avg-weights``, ``meta-data``,
``alt-data`` and ``supervised`` (their inversion strategies ``prior``, ``alt-data`` and ``real``
are in ``dfbench_inversions``); the alignment loss ``kd``. See docs/baselines.md.
"""
