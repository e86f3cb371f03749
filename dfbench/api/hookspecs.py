"""The hooks a dfbench plugin can implement.

Every hook receives a ``register`` callback, so that dfbench (not the plugin) owns names,
duplicates and lazy imports. A plugin module implements any subset of them::

    from dfbench import hookimpl

    @hookimpl
    def dfbench_register_methods(register):
        register("my-method", "dfbench_mine.method:MyMethod", description="...")

``register(name, target, description="")``: ``target`` is the component itself or a lazy
``"package.module:attribute"`` string, imported only when the component is used, which keeps
``dfbench --help`` and ``dfbench list`` fast. Implementations may accept a subset of a hook's
arguments.
"""

import pluggy

hookspec = pluggy.HookspecMarker("dfbench")
hookimpl = pluggy.HookimplMarker("dfbench")


@hookspec
def dfbench_register_methods(register):
    """Register methods: classes implementing :class:`dfbench.api.methods.Method`."""


@hookspec
def dfbench_register_datasets(register):
    """Register datasets: classes implementing :class:`dfbench.api.datasets.DatasetPlugin`."""


@hookspec
def dfbench_register_teachers(register):
    """Register teacher loaders: classes implementing :class:`dfbench.api.teachers.TeacherLoader`."""


@hookspec
def dfbench_register_inversions(register):
    """Register inversion strategies: classes implementing
    :class:`dfbench.api.inversion.InversionStrategy`."""


@hookspec
def dfbench_register_losses(register):
    """Register alignment losses: classes implementing :class:`dfbench.api.alignment.AlignmentLoss`."""


@hookspec
def dfbench_register_terms(register):
    """Register synthesis loss terms: functions of a :class:`dfbench.train.terms.SynthesisState` returning
    a scalar tensor (lower is better for the synthesiser), declared with :func:`dfbench.train.terms.term`
    (which says what they need: the pair, the modality teacher, the students). A method weighs them
    in ``params.weights``."""


@hookspec
def dfbench_register_loggers(register):
    """Register run loggers (experiment trackers): classes implementing
    :class:`dfbench.api.loggers.RunLogger`, which receive a run's typed events (started, each curve
    point, finished). A run uses those named by ``--logger`` or ``loggers`` in its config."""


@hookspec
def dfbench_register_metrics(register):
    """Register retrieval metrics: classes implementing :class:`dfbench.api.metrics.RetrievalMetric`
    (a per-query score from the ranks of the query's relevant gallery items; the metric is its mean).
    Every run computes every registered metric on its test split and its record carries them; a
    record made before a metric existed stays valid without it."""


@hookspec
def dfbench_register_commands(register, cli):
    """Register extra CLI commands: ``register(click_command)`` adds it to ``cli``."""
