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
