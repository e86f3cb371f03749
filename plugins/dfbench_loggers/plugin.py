from dfbench import hookimpl


@hookimpl
def dfbench_register_loggers(register):
    register("jsonl", "dfbench_loggers.loggers:JsonLinesLogger",
             description="every run event as one JSON line in <run folder>/events.jsonl (no dependency)")
    register("tensorboard", "dfbench_loggers.loggers:TensorBoardLogger",
             description="TensorBoard event files in <run folder>/tensorboard: curves as scalars by round, config as text, "
                         "final metrics (pip install \"dfbench[tensorboard]\")")
