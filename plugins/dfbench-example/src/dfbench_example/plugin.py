"""The hook implementations dfbench finds through the ``dfbench`` entry point.

Targets are lazy ``"module:attribute"`` strings: this module imports neither torch nor the
implementations, so ``dfbench --help`` and ``dfbench list`` stay fast with the plugin installed.
"""

from dfbench import hookimpl


@hookimpl
def dfbench_register_losses(register):
    register(
        "triplet",
        "dfbench_example.triplet:CrossModalTriplet",
        description="Cross-modal triplet loss over synthesised pairs (Hermans et al. 2017 batch-hard "
        "mining, or batch-all): cosine distance, labels = teacher argmax, a pair's partner is "
        "always a positive; options margin, mining, symmetric. (example plugin)",
    )


@hookimpl
def dfbench_register_methods(register):
    register(
        "triplet-pairs",
        "dfbench_example.method:TripletPairs",
        description="Paired estimators (DF-SBIR's synthesis terms, no adversarial term) with encoders "
        "trained by the cross-modal batch-hard triplet loss, raw-embedding retrieval. (example plugin)",
    )
