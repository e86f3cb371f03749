"""The ``checkpoint`` teacher loader: state-dict files given per role in ``teachers.checkpoints``.

A file holds either a bare state dict of :func:`dfbench.train.models.build_classifier`'s network or a
dict with a ``state_dict`` key (as the ``trained`` loader's cache files do). The architecture is
taken from ``teachers.arch``/``width``/``feature_dim``; a mismatch (other architecture, other
class count) is reported with the expected and found shapes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dfbench.api.errors import TeacherError
from dfbench.api.modalities import pair_of
from dfbench.train.models import freeze
from dfbench.api.safeload import UnreadableTorchFile, load_torch_file
from dfbench.api.teachers import TeacherLoader, TeacherSet
from dfbench_teachers.common import build_teacher, evaluate_teacher, role_config, teacher_outputs
from dfbench_teachers.options import PROFILES, CheckpointPaths, TeacherOptions


class CheckpointTeachers(TeacherLoader):
    Options = TeacherOptions
    profiles = PROFILES

    def load(self, ctx, roles):
        tcfg = ctx.config["teachers"]
        paths = tcfg.get("checkpoints") or {}
        models, accuracy, info = {}, {}, {}
        pair = pair_of(ctx)
        fields = {f.name for f in dataclasses.fields(CheckpointPaths)}
        for role in sorted(roles):
            side = pair[role].role if role in pair else None  # a modality's classifier may be given by its side
            key = role if role in fields else side  # the option that names this role's file
            raw = paths.get(role) or (paths.get(side) if side else None)
            if not raw:
                raise TeacherError(
                    f"The checkpoint teacher loader needs a file for the '{role}' teacher, but "
                    f"teachers.checkpoints.{key} is not set. Pass --set teachers.checkpoints.{key}=PATH "
                    f"(this method needs: {', '.join(sorted(roles))}), or use --set teachers.loader=trained."
                )
            path = Path(raw).expanduser()
            if not path.is_file():
                raise TeacherError(f"Teacher checkpoint {path} (role '{role}') does not exist. Check teachers.checkpoints.{key}.")
            try:
                blob = load_torch_file(path)  # no code runs from the file (dfbench.api.safeload)
            except UnreadableTorchFile as exc:
                raise TeacherError(
                    f"Teacher checkpoint {path} (role '{role}') could not be read as a torch file ({exc}). "
                    "Save it with torch.save(model.state_dict(), path)."
                ) from None
            state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
            if not isinstance(state, dict):
                raise TeacherError(f"Teacher checkpoint {path} holds no state dict (found {type(blob).__name__}).")
            model = build_teacher(role, tcfg, ctx.num_classes, ctx.image_size)
            expected = model.state_dict()
            head_w = state.get("head.weight")
            want_out = teacher_outputs(role, ctx.num_classes)
            if head_w is not None and head_w.shape[0] != want_out:
                raise TeacherError(
                    f"Teacher checkpoint {path} (role '{role}') has a head with {head_w.shape[0]} "
                    f"outputs, but the benchmark '{ctx.config['dataset']}' needs {want_out} "
                    f"({'photo vs sketch' if role == 'modality' else 'one per class'}). Use a teacher "
                    "trained on this benchmark's classes."
                )
            missing = sorted(set(expected) - set(state))
            unexpected = sorted(set(state) - set(expected))
            wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
            if missing or unexpected or wrong:
                detail = []
                if missing:
                    detail.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
                if unexpected:
                    detail.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
                if wrong:
                    k = wrong[0]
                    detail.append(f"{len(wrong)} tensors of other shapes (e.g. {k}: file {tuple(state[k].shape)}, expected {tuple(expected[k].shape)})")
                rc = role_config(tcfg, role)
                prefix = "modality_" if role == "modality" else ""
                raise TeacherError(
                    f"Teacher checkpoint {path} (role '{role}') does not fit the architecture "
                    f"teachers.{prefix}arch={rc['arch']} (width {rc['width']}, feature_dim {rc['feature_dim']}): "
                    + "; ".join(detail)
                    + f". Set teachers.{prefix}arch/{prefix}width (and feature_dim) to the ones the checkpoint was trained with."
                )
            model.load_state_dict(state)
            model = freeze(model.to(ctx.device))
            start = time.perf_counter()
            accuracy[role] = evaluate_teacher(model, role, ctx.benchmark, ctx.device)
            models[role] = model
            info[role] = {"checkpoint": str(path), "eval_seconds": round(time.perf_counter() - start, 2)}
        return TeacherSet(models=models, accuracy=accuracy, info=info)
