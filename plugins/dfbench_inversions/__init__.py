"""dfbench's built-in inversion strategies (how training pairs are synthesised from teachers), one
module each: ``estimators`` (DF-SBIR), ``generators`` and ``pixels`` (the data-free distillation
methods), ``prior``, ``alt-data`` and ``real`` (the baselines); ``common`` holds what they share.
The synthesis loss terms they weigh are registered here too."""
