"""Top-k checkpoints as Optuna artifacts, so disk use stays bounded however long the search.

Each kept checkpoint is one ``.safetensors`` file whose metadata holds the config JSON, so it
loads without the study. The trial's user attribute ``checkpoint`` holds the artifact id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
from safetensors.torch import save_model

from cifar_search.errors import DiskFullError
from cifar_search.names import NO_SPACE, check_name, inside, user_path
from cifar_search.train.config import TrainConfig

logger = logging.getLogger(__name__)
_OS_ERROR = re.compile(r"os error (\d+)\)")


def artifact_dir(study: str, root: Path = Path("studies")) -> Path:
    """``<root>/artifacts/<study>``; the name is checked first (:func:`check_name`)."""
    return root / "artifacts" / check_name("study", study)


@dataclass
class TopKCheckpoints:
    """``Objective.on_model`` hook: keep the weights of the ``k`` best complete trials."""

    store_dir: Path
    k: int = 3

    def __post_init__(self) -> None:
        with user_path("artifact folder", self.store_dir):
            self.store_dir.mkdir(parents=True, exist_ok=True)
        self.store = FileSystemArtifactStore(str(self.store_dir))

    def __call__(
        self, trial: optuna.Trial, model: torch.nn.Module, cfg: TrainConfig, value: float
    ) -> None:
        if self.k <= 0:
            return
        kept = sorted(
            (t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
             if "checkpoint" in t.user_attrs and t.value is not None),
            key=lambda t: t.value,  # type: ignore[arg-type,return-value]
            reverse=True,
        )
        if len(kept) >= self.k and value <= kept[self.k - 1].value:  # type: ignore[operator]
            return
        try:
            artifact_id = self._save(trial, model, cfg)
        except Exception as exc:
            code = _errno(exc)
            if code not in NO_SPACE:
                raise
            raise DiskFullError(
                f"no space to save trial {trial.number}'s checkpoint under {self.store_dir} "
                f"({os.strerror(code)}): free some space or lower --keep-top-k, then run the "
                "same command again to resume."
            ) from exc
        trial.set_user_attr("checkpoint", artifact_id)
        for old in kept[self.k - 1:]:  # the k-th best so far drops out now
            stored = str(old.user_attrs["checkpoint"])  # read back: it must stay in store_dir
            inside(self.store_dir, stored, f"trial {old.number}'s checkpoint id")
            with contextlib.suppress(ArtifactNotFound):  # removed by a peer or by hand
                self.store.remove(stored)

    def _save(self, trial: optuna.Trial, model: torch.nn.Module, cfg: TrainConfig) -> str:
        """Write the weights and config, then upload them; returns the artifact id."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{trial.number}.safetensors"
            metadata = {"config": json.dumps(cfg.to_dict()), "trial": str(trial.number)}
            save_model(model, str(path), metadata=metadata)
            return upload_artifact(
                artifact_store=self.store, file_path=str(path), study_or_trial=trial
            )


def _errno(exc: BaseException) -> int | None:
    """The OS error number of an ``OSError``, or of a safetensors error that names one in its
    text ("... (os error 28)"): safetensors writes from Rust and raises its own type."""
    if isinstance(exc, OSError):
        return exc.errno
    found = _OS_ERROR.search(str(exc))
    return int(found.group(1)) if found else None
