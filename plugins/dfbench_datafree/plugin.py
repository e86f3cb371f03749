"""Registrations of the ``datafree`` plugin (no torch import here: targets are lazy strings)."""

from dfbench import hookimpl

METHODS = {
    "dafl": (
        "DAFL",
        "DAFL (Chen et al., ICCV 2019): unconditional generators with one-hot, information-entropy and "
        "activation terms; here one generator per modality inverts its own teacher, photos and sketches "
        "paired by teacher argmax, Proxy-Anchor encoders.",
    ),
    "deepinversion": (
        "DeepInversion",
        "DeepInversion (Yin et al., CVPR 2020): pixels optimised with Adam under jitter/flip, CE to a "
        "target class, BatchNorm statistics (first layer x10), TV and L2; here each modality's teacher "
        "is inverted with the same target class per row, Proxy-Anchor encoders.",
    ),
    "adi": (
        "ADI",
        "Adaptive DeepInversion (Yin et al., CVPR 2020): DeepInversion plus student/teacher "
        "Jensen-Shannon competition; here per modality, same target class on both sides, disagreement "
        "read through the frozen teacher head.",
    ),
    "dfad": (
        "DFAD",
        "DFAD (Fang et al., 2019): adversarial generator maximising the student/teacher L1 gap, 5 "
        "student steps per generator step; here per modality, pairs by teacher argmax, disagreement "
        "through the frozen teacher head.",
    ),
    "zskt": (
        "ZSKT",
        "ZSKT (Micaelli & Storkey, NeurIPS 2019): adversarial generator maximising KL(teacher||student), "
        "10 student steps per generator step; here per modality, pairs by teacher argmax, no attention "
        "transfer (students learn only the shared alignment loss).",
    ),
    "dfq": (
        "DFQ",
        "DFQ (Choi et al., CVPRW 2020): generator with BatchNorm-statistics, one-hot, class-balance and "
        "adversarial KL terms; here one generator per modality, pairs by teacher argmax.",
    ),
    "cmi": (
        "CMI",
        "CMI (Fang et al., IJCAI 2021): generators re-initialised every round with learnable noise, "
        "BatchNorm, one-hot, adversarial and contrastive (InfoNCE over two views, memory bank) terms; "
        "here per modality with one random target class per pair.",
    ),
    "fast": (
        "Fast",
        "Fast-Datafree (Fang et al., AAAI 2022): meta-learned generators (a few inner steps per round, "
        "Reptile update), BatchNorm with moving average, one-hot and adversarial terms; here per "
        "modality with one random target class per pair.",
    ),
}


@hookimpl
def dfbench_register_methods(register):
    for name, (cls, description) in METHODS.items():
        register(name, f"dfbench_datafree.methods:{cls}", description=description)
