"""A search's cost ceiling (forward FLOPs per image a config may cost), from measured speed.

A budget with ``trial_seconds`` (``cpu``) does not fix its ceiling: a fixed 80 MFLOPs was a
guess for one 2-core CPU, too tight on a 16-core one and meaningless on a GPU. The ceiling is
the cost at which one trial of the budget (its epochs of its training images) trains in
``trial_seconds`` at the speed per FLOP of the strongest preset (fast94), measured on this device
or read from the throughput cache (:mod:`cifar_search.train.throughput`):

    max_flops = rate x flops(reference) x trial_seconds / (epochs x images)

Smaller, small-batch nets run slower per FLOP than fast94 (on the reference CPU the trials of
a search at this ceiling trained 2.2-2.9 times slower than it predicts), so the figure is a
ceiling, not a promise of trial time. ``--max-flops`` sets the ceiling by hand; a resumed study
keeps the ceiling it was created with (stored under :data:`ATTR`), so its trials stay
comparable and a resume measures nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cifar_search.search.budget import Budget
    from cifar_search.train.throughput import Rate

ATTR = "ceiling"  # study user attribute: {"max_flops": ..., "source": ...}


@dataclass(frozen=True)
class Ceiling:
    max_flops: float | None  # None: no ceiling
    source: str  # how it was set, for the search's header and the study

    def as_dict(self) -> dict[str, Any]:
        return {"max_flops": self.max_flops, "source": self.source}


def derive(budget: Budget, rate: Rate, reference_flops: float, train_images: int) -> float:
    """The FLOPs per image at which a trial of ``budget`` on ``train_images`` images trains in
    ``budget.trial_seconds`` at the reference's ``rate`` per FLOP."""
    if budget.trial_seconds is None:
        raise ValueError(f"budget {budget.name!r} has no trial_seconds to derive a ceiling from")
    per_second = rate.train * reference_flops  # FLOPs (forward, per image) trained a second
    return per_second * budget.trial_seconds / (budget.epochs * max(train_images, 1))


def resolve(budget: Budget, *, given: float | None, stored: Mapping[str, Any],
            measure: Callable[[], tuple[Rate, bool]], reference: str, reference_flops: float,
            train_images: int) -> Ceiling:
    """The ceiling of a search: ``given`` (``--max-flops``), else the one ``stored`` on the
    study being resumed (its user attributes), else the budget's fixed ``max_flops``, else
    derived from ``measure()`` (``(rate, measured_now)`` of ``reference``)."""
    if given is not None:
        return Ceiling(given, "--max-flops")
    kept = stored.get(ATTR)
    if isinstance(kept, Mapping) and "max_flops" in kept:
        value = kept["max_flops"]
        return Ceiling(None if value is None else float(value), f"kept: {kept.get('source')}")
    old = stored.get("budget")
    if isinstance(old, Mapping) and old.get("trial_seconds") is None and "max_flops" in old:
        value = old["max_flops"]  # a study made before ceilings were derived: its fixed one
        return Ceiling(None if value is None else float(value), "kept: the study's budget")
    if budget.trial_seconds is None:
        return Ceiling(budget.max_flops, f"budget {budget.name}")
    rate, measured = measure()
    value = derive(budget, rate, reference_flops, train_images)
    how = "measured" if measured else "cached"
    return Ceiling(value, f"a {budget.epochs} x {train_images:,}-image trial in "
                          f"{budget.trial_seconds:.0f} s at {reference}'s {rate.train:,.0f} "
                          f"training images/s here ({how})")
