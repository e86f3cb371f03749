"""Registers the baselines (lazily: nothing here imports torch)."""

from dfbench import hookimpl

_M = "dfbench_baselines.methods"


@hookimpl
def dfbench_register_methods(register):
    register(
        "classifier-only",
        f"{_M}:ClassifierOnly",
        description="Classifier Only (DF-SBIR baseline, Chaudhuri et al. CVPR 2023): no training; each "
        "modality embedded by its own teacher's class probabilities (or logits), compared by cosine.",
    )
    register(
        "unimodal-kd",
        f"{_M}:UnimodalKD",
        description="Uni-Modal Distillation (DF-SBIR baseline; DAFL, Chen et al. ICCV 2019): a DAFL "
        "generator per modality with independent noise, each encoder distilled (KD) from its own "
        "teacher through the frozen teacher head; no cross-modal term.",
    )
    register(
        "gaussian-prior",
        f"{_M}:GaussianPriorBaseline",
        description="Gaussian Prior (DF-SBIR baseline): no estimator; Gaussian noise images labelled "
        "by the teachers train the encoders with dfsbir's Proxy-Anchor loss.",
    )
    register(
        "avg-weights",
        f"{_M}:AveragedWeights",
        description="Averaging Weights (DF-SBIR baseline): one network, the element-wise mean of the "
        "photo and sketch teachers' weights and BatchNorm statistics, used untrained for both modalities.",
    )
    register(
        "meta-data",
        f"{_M}:MetaData",
        description="Meta-Data (DF-SBIR baseline; Lopes et al. 2017, DeepInversion, Yin et al. CVPR "
        "2020): pixels inverted from the teachers' BatchNorm statistics, then dfsbir's encoder training.",
    )
    register(
        "alt-data",
        f"{_M}:AlternativeDataBaseline",
        description="Alternative Data (DF-SBIR baseline): real images of an unrelated source dataset "
        "(default: shapes, another seed when it is the benchmark) labelled by the teachers replace the estimators.",
    )
    register(
        "supervised",
        f"{_M}:Supervised",
        description="Supervised reference bound (DF-SBIR's data-dependent comparison): the same encoders "
        "and Proxy-Anchor loss on class-matched real train pairs with true labels (reads the train split).",
    )
    register(
        "kd-real",
        f"{_M}:KDWithData",
        description="KD with data (reference bound, the pipeline's positive control): unimodal-kd's encoders "
        "and KD loss on the real train images, the teachers' outputs as targets (reads the train split).",
    )


@hookimpl
def dfbench_register_losses(register):
    register(
        "kd",
        "dfbench_baselines.kd:KnowledgeDistillation",
        description="Knowledge distillation (Hinton et al. 2015; DAFL's student loss): KL from each "
        "teacher's softmax to its student's class prediction through the frozen teacher head.",
    )
