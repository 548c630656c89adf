"""Typed errors. Library code raises these; only the CLI turns them into messages and exit codes.

Every message names the bad value, so the one line the CLI prints is enough to fix the input.
"""

from __future__ import annotations


class CifarSearchError(Exception):
    """Base class: an error the user can fix; the CLI prints it on one line and exits 2."""


class ConfigError(CifarSearchError, ValueError):
    """A configuration, search-space file or command-line value is invalid."""


class DataError(CifarSearchError):
    """The dataset is missing, truncated, corrupt or unsafe."""


class PathError(CifarSearchError):
    """A path the user gave cannot be used: missing, a folder where a file was expected (or the
    reverse), no permission, or no space left. The message names the path and the reason."""


class DiskFullError(PathError):
    """A write failed for lack of space (ENOSPC) or over the file size limit (EFBIG)."""


class StudyError(CifarSearchError):
    """A study or storage URL does not exist or cannot be used."""


class ModelFolderError(CifarSearchError):
    """A model folder is missing files or was written by an incompatible version."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss. Carries the epoch and step where it happened."""

    def __init__(self, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at epoch {epoch}, step {step}")
        self.epoch = epoch
        self.step = step
        self.loss = loss


class SurplusTrial(Exception):
    """The study already has its N trials finished or training, so this one does not train
    (parallel workers raced for the last slot; see ``cifar_search.search.study.has_slot``)."""
