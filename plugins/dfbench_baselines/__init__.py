"""The baselines of Data-Free SBIR (Chaudhuri et al., CVPR 2023) and its supervised reference bound.

Methods: ``classifier-only``, ``unimodal-kd``, ``gaussian-prior``, ``avg-weights``, ``meta-data``,
``alt-data`` and ``supervised``; inversion strategies ``prior``, ``alt-data`` and ``real``; the
alignment loss ``kd``. See docs/baselines.md.
"""
