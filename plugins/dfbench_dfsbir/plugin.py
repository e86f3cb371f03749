from dfbench import hookimpl


@hookimpl
def dfbench_register_methods(register):
    register(
        "dfsbir",
        "dfbench_dfsbir.method:DFSBIR",
        description="Data-Free SBIR (Chaudhuri et al., CVPR 2023): paired estimators with one-hot, "
        "entropy, activation, modality, class-alignment and adversarial terms; Proxy-Anchor "
        "encoders with frozen teacher proxies.",
    )
    register(
        "dfsbir-plus",
        "dfbench_dfsbir.method:DFSBIRPlus",
        description="dfsbir with encoders initialised from the teacher's backbone, a lower encoder "
        "learning rate, BatchNorm prior, replay pool and proxy readout (dfbench's improved recipe; "
        "every change ablated in benchmarks/ablation.yaml).",
    )
