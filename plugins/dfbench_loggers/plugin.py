from dfbench import hookimpl


@hookimpl
def dfbench_register_loggers(register):
    register("jsonl", "dfbench_loggers.loggers:JsonLinesLogger",
             description="every run event as one JSON line in <run folder>/events.jsonl (no dependency)")
    register("mlflow", "dfbench_loggers.loggers:MLflowLogger",
             description="an MLflow run: the config as params, curves and final metrics, the record and pictures as artifacts; "
                         "$MLFLOW_TRACKING_URI or <results>/mlruns (pip install \"dfbench[mlflow]\")")
    register("tensorboard", "dfbench_loggers.loggers:TensorBoardLogger",
             description="TensorBoard event files in <run folder>/tensorboard: curves as scalars by round, config as text, "
                         "final metrics (pip install \"dfbench[tensorboard]\")")
    register("wandb", "dfbench_loggers.loggers:WandbLogger",
             description="a Weights & Biases run, offline by default (<run folder>/wandb, 'wandb sync' uploads it): config, "
                         "curves by round, final metrics, record and pictures (pip install \"dfbench[wandb]\")")
