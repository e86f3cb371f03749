from dfbench import hookimpl


@hookimpl
def dfbench_register_inversions(register):
    register(
        "estimators",
        "dfbench_inversions.estimators:PairedEstimators",
        default=True,
        description="Two DCGAN-style estimators (photo, sketch) fed the same noise, trained on a "
        "weighted sum of synthesis terms (DF-SBIR, Chaudhuri et al. CVPR 2023).",
    )
    register(
        "pixels",
        "dfbench_inversions.pixels:PixelInversion",
        description="Pixels optimised with Adam under random jitter/flip (DeepInversion); class targets "
        "shared by both modalities, or none (BatchNorm-only inversion, pairs by teacher argmax).",
    )
    register(
        "generators",
        "dfbench_inversions.generators:ModalityGenerators",
        description="One generator per modality; options for class targets, conditional input, "
        "learnable noise, per-round re-initialisation, meta-learning (Reptile/FOMAML), contrastive "
        "memory and moving-average BatchNorm statistics.",
    )
    register(
        "prior",
        "dfbench_inversions.prior:GaussianPrior",
        description="Images drawn from a Gaussian prior in image space (tanh/clamp to [-1, 1], grey "
        "sketches), labelled by the teachers, paired by label (DF-SBIR's Gaussian Prior baseline).",
    )
    register(
        "alt-data",
        "dfbench_inversions.alt_data:AlternativeData",
        description="Real images of another dataset (option 'source', default shapes) labelled by the "
        "teachers and paired by label; never the benchmark's train split (DF-SBIR's Alternative Data).",
    )
    register(
        "real",
        "dfbench_inversions.real:RealPairs",
        description="Class-matched photo/sketch pairs of the benchmark's real train split with true "
        "labels; only for methods that declare uses_train_data (the supervised bound).",
    )


#: the built-in synthesis loss terms (dfbench.train.terms), with the one line each shows in 'dfbench list'
TERMS = {
    "one_hot": "Cross-entropy of the teacher's logits against their argmax or target (DAFL, DF-SBIR's L_sem).",
    "pair_one_hot": "Cross-entropy of both teachers' logits against the pair's jointly most likely class (dfbench).",
    "entropy": "Entropy of the batch-mean softmax, lowest for a batch spread over the classes (DAFL, L_sem).",
    "balance": "KL of the batch-mean softmax from uniform (DFQ's class balance).",
    "activation": "Minus the mean absolute penultimate teacher feature (DAFL, L_sem).",
    "modality": "BCE of the photo-vs-sketch classifier: each estimator on its side (DF-SBIR's L_modal).",
    "class_alignment": "KL between the teachers' class distributions of a photo and a sketch of one noise (DF-SBIR's L_align).",
    "adversarial": "Minus the students' cross-entropy against the teacher labels (DF-SBIR's L_adv).",
    "adversarial_l1": "Minus the L1 distance of student and teacher probabilities (DFAD).",
    "adversarial_kl": "Minus KL(teacher || student) (ZSKT).",
    "adversarial_kl_masked": "Minus KL(teacher || student) on samples both classify alike (CMI, Fast).",
    "adversarial_js": "Minus the Jensen-Shannon divergence of teacher and student (ADI).",
    "contrastive": "InfoNCE instance discrimination over teacher features of two views (CMI).",
    "bn": "BatchNorm-statistics matching of the teachers (DeepInversion, Fast, DFQ, CMI).",
    "tv": "Total variation of the images (DeepInversion's image prior).",
    "l2": "Mean squared pixel value (DeepInversion's image prior).",
}


@hookimpl
def dfbench_register_terms(register):
    for name, description in TERMS.items():
        register(name, f"dfbench.train.terms:{name}", description=description)
