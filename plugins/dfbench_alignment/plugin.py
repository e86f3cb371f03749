from dfbench import hookimpl


@hookimpl
def dfbench_register_losses(register):
    register(
        "proxy-anchor",
        "dfbench_alignment.proxy_anchor:ProxyAnchor",
        default=True,
        description="Proxy-Anchor loss (Kim et al. CVPR 2020) with the teachers' frozen classifier "
        "weights as proxies: the paper's L_metric.",
    )
    register(
        "infonce",
        "dfbench_alignment.infonce:PairedInfoNCE",
        description="Two-way InfoNCE between paired photo and sketch embeddings (the release's "
        "second variant), with a correctly updated queue of negatives.",
    )
