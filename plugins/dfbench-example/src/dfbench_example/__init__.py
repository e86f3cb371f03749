"""An example dfbench plugin (distribution ``dfbench-example``).

It adds one alignment loss, ``triplet`` (a cross-modal batch-hard triplet loss over the
synthesised photo/sketch pairs), and one method, ``triplet-pairs`` (DF-SBIR's paired estimators
with encoders trained by that loss). See README.md.
"""

__version__ = "0.1.0"
