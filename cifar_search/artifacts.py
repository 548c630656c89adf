"""Top-k checkpoints as Optuna artifacts, so disk use stays bounded however long the search.

Each kept checkpoint is one ``.safetensors`` file whose metadata holds the config JSON, so it
loads without the study. The trial's user attribute ``checkpoint`` holds the artifact id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
from safetensors.torch import save_model

from cifar_search.config import TrainConfig

logger = logging.getLogger(__name__)


def artifact_dir(study: str, root: Path = Path("studies")) -> Path:
    return root / "artifacts" / study


@dataclass
class TopKCheckpoints:
    """``Objective.on_model`` hook: keep the weights of the ``k`` best complete trials."""

    store_dir: Path
    k: int = 3

    def __post_init__(self) -> None:
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
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial-{trial.number}.safetensors"
            metadata = {"config": json.dumps(cfg.to_dict()), "trial": str(trial.number)}
            save_model(model, str(path), metadata=metadata)
            artifact_id = upload_artifact(
                artifact_store=self.store, file_path=str(path), study_or_trial=trial
            )
        trial.set_user_attr("checkpoint", artifact_id)
        for old in kept[self.k - 1:]:  # the k-th best so far drops out now
            with contextlib.suppress(ArtifactNotFound):  # removed by a peer or by hand
                self.store.remove(old.user_attrs["checkpoint"])
