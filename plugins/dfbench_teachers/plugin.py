from dfbench import hookimpl


@hookimpl
def dfbench_register_teachers(register):
    register(
        "trained",
        "dfbench_teachers.trained:TrainedTeachers",
        default=True,
        description="Default: trains the photo, sketch, unified and modality classifiers on the "
        "train split only, caches them by dataset, architecture, seed and config.",
    )
    register(
        "checkpoint",
        "dfbench_teachers.checkpoint:CheckpointTeachers",
        description="Loads teacher state dicts from teachers.checkpoints.<role> files and checks "
        "that they fit the benchmark (class count, architecture).",
    )
