from dfbench import hookimpl


@hookimpl
def dfbench_register_inversions(register):
    register(
        "estimators",
        "dfbench_inversions.estimators:PairedEstimators",
        description="Two DCGAN-style estimators (photo, sketch) fed the same noise, trained on a "
        "weighted sum of synthesis terms (DF-SBIR, Chaudhuri et al. CVPR 2023).",
    )
