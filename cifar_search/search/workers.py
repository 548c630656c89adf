"""``cifar-search run --workers N``: N search processes on one machine, one display, one Ctrl-C.

Nothing is coordinated here beyond starting and stopping processes: the workers meet only in
the study's storage, exactly as processes on different machines do (Optuna's own distributed
mode), so a local run and a cluster run behave alike. The process that starts them first does
every check and the one-off work (creating the study, the warm start, queueing the retries of
interrupted trials), so the workers do not race for it; then each worker opens the study, puts
the data on its own device and runs trials until the study holds ``--trials`` finished ones.

Placement: with CUDA, one worker per visible GPU (``CUDA_VISIBLE_DEVICES`` pinned per worker,
round-robin when there are more workers than GPUs); on CPU, the cores are split between the
workers (``sched_setaffinity`` and as many torch threads as cores each).

Progress: the starting process polls the study (Optuna caches finished trials, so each poll
reads only the running ones) and shows one bar for all workers, with the time left for
``--trials`` after the first trials as a single run prints it. Ctrl-C (or SIGTERM) is passed
to every worker once; each closes its running trial as *interrupted* and exits, and the next run
retries those trials with the same params. A second Ctrl-C kills the workers at once (their
trials are then found stale by heartbeat and retried).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing as mp
import os
import signal
import sys
import time
import types
from dataclasses import dataclass
from multiprocessing.process import BaseProcess

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from cifar_search.errors import CifarSearchError, ConfigError
from cifar_search.search.launch import OpenSearch, SearchSettings, open_search, prepare_search
from cifar_search.search.progress import TimeLeft, write_estimate
from cifar_search.search.study import count_finished

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often the display reads the study, seconds
STOP_SECONDS = 120.0  # how long interrupted workers get to close their trials, seconds
EXIT_ERRORS = 1  # a worker stopped after repeated trial errors
EXIT_USAGE = 2  # a worker could not start (bad input it found itself)
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Placement:
    """Where one worker runs: a GPU (``cuda``, an index into the visible ones) or CPU cores."""

    index: int
    cuda: int | None = None  # the one GPU this worker sees (CUDA_VISIBLE_DEVICES)
    cpus: tuple[int, ...] = ()  # the cores this worker may use (CPU workers)

    def describe(self) -> str:
        if self.cuda is not None:
            return f"worker {self.index}: GPU {self.cuda}"
        cores = ",".join(map(str, self.cpus))
        return f"worker {self.index}: CPU cores {cores}"


def place_workers(n: int, device: str, *, gpus: list[int], cpus: list[int]) -> list[Placement]:
    """One placement per worker.

    Args:
        n: number of workers (>= 1).
        device: the ``--device`` asked for (``auto``, ``cpu``, ``cuda`` or ``cuda:i``).
        gpus: the visible GPU ids (``CUDA_VISIBLE_DEVICES`` order), empty without CUDA.
        cpus: the cores this process may use.
    """
    if n < 1:
        raise ConfigError(f"--workers must be >= 1, but got {n}.")
    use_cuda = device.startswith("cuda") or (device == "auto" and bool(gpus))
    if use_cuda:
        if not gpus:
            raise ConfigError(f"--device {device} asked for, but CUDA is not available here.")
        if ":" in device:  # an explicit GPU: every worker shares it
            i = int(device.split(":", 1)[1])
            if i >= len(gpus):
                raise ConfigError(
                    f"--device {device}: only {len(gpus)} CUDA device(s) are visible.")
            return [Placement(w, cuda=gpus[i]) for w in range(n)]
        return [Placement(w, cuda=gpus[w % len(gpus)]) for w in range(n)]
    per = max(1, len(cpus) // n)
    return [Placement(w, cpus=tuple(cpus[(w * per + k) % len(cpus)] for k in range(per)))
            for w in range(n)]


def visible_gpus() -> list[int]:
    """The GPU ids this process sees (as ``CUDA_VISIBLE_DEVICES`` would name them)."""
    import torch

    if not torch.cuda.is_available():
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env:
        ids = [int(p) for p in env.split(",") if p.strip().isdigit()]
        if ids:
            return ids[: torch.cuda.device_count()]
    return list(range(torch.cuda.device_count()))


def default_workers(device: str) -> int:
    """``--workers auto``: one per visible GPU, else one."""
    return max(1, len(visible_gpus())) if device in ("auto", "cuda") else 1


def _worker_main(settings: SearchSettings, place: Placement) -> None:
    """Entry point of one worker process (spawned, so it starts with fresh CUDA and threads)."""
    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the parent only; it passes it on once
    if place.cuda is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(place.cuda)
        settings = dataclasses.replace(settings, device="cuda")
    else:
        import torch

        if hasattr(os, "sched_setaffinity"):  # Linux; elsewhere only the thread count
            os.sched_setaffinity(0, place.cpus)
        torch.set_num_threads(len(place.cpus))
        settings = dataclasses.replace(settings, device="cpu")
    logging.basicConfig(level=logging.WARNING,
                        format=f"worker {place.index}: %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signal.signal(signal.SIGINT, _interrupt_once)
    signal.signal(signal.SIGTERM, _interrupt_once)
    try:
        result = prepare_search(settings).run()
    except CifarSearchError as exc:
        print(f"worker {place.index}: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    if result.stopped_by_errors:
        print(f"worker {place.index}: error: stopped after repeated trial errors; last:\n"
              f"{result.last_error.strip()}", file=sys.stderr)
        sys.exit(EXIT_ERRORS)
    sys.exit(EXIT_INTERRUPTED if result.interrupted else 0)


def _interrupt_once(signum: int, frame: types.FrameType | None) -> None:
    """Raise KeyboardInterrupt on the first signal; ignore later ones, so that closing the
    running trial in the storage is not itself interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


@dataclass
class WorkerPool:
    """Starts the workers, shows their common progress, stops them together."""

    search: OpenSearch  # opened by this process (checks done, warm start queued); no data
    placements: list[Placement]
    progress: bool = True
    processes: list[BaseProcess] = dataclasses.field(default_factory=list)

    @classmethod
    def open(cls, settings: SearchSettings, n: int) -> WorkerPool:
        """Every check a single run does, the warm start, then the placements. Nothing runs."""
        search = open_search(settings)  # fails here, once, on missing or corrupt data
        cpus = (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else list(range(os.cpu_count() or 1)))
        placements = place_workers(n, settings.device, gpus=visible_gpus(), cpus=cpus)
        return cls(search, placements, progress=settings.progress)

    def describe(self) -> str:
        return "\n".join([self.search.describe(), *(p.describe() for p in self.placements)])

    def run(self) -> int:
        """Run the workers to the end; returns the exit code (0, 1 errors, 2, 130)."""
        s = dataclasses.replace(self.search.settings, presets=(), parallel=True, progress=False)
        ctx = mp.get_context("spawn")
        self.processes = [
            ctx.Process(target=_worker_main, args=(dataclasses.replace(s, worker=p.index), p),
                        name=f"cifar-search-worker-{p.index}")
            for p in self.placements
        ]
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
        interrupted = False
        try:
            for proc in self.processes:
                proc.start()
            self._watch()
        except KeyboardInterrupt:
            interrupted = True
            self._stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
        codes = [proc.exitcode for proc in self.processes]
        if interrupted or EXIT_INTERRUPTED in codes:
            return EXIT_INTERRUPTED
        bad = [(i, c) for i, c in enumerate(codes) if c not in (0, None)]
        if bad:
            for i, c in bad:
                logger.error("worker %d exited with code %s", i, c)
            return EXIT_USAGE if all(c == EXIT_USAGE for _, c in bad) else EXIT_ERRORS
        return 0

    def _watch(self) -> None:
        study, total = self.search.study, self.search.settings.trials
        initial = count_finished(study)
        bar = tqdm(total=total, initial=initial, unit="trial", file=sys.stderr,
                   disable=not self.progress, dynamic_ncols=True)
        left = TimeLeft(total, initial)  # all workers together: wall seconds a finished trial
        try:
            while any(p.is_alive() for p in self.processes):
                time.sleep(POLL_SECONDS)
                done, text = poll(study, self.search.budget.epochs)
                bar.n = min(done, total)
                bar.set_postfix_str(text, refresh=True)
                line = left.update(done)
                if line is not None:
                    write_estimate(bar, line)
        finally:
            bar.close()
        for proc in self.processes:
            proc.join()

    def _stop(self) -> None:
        """Pass the interrupt to every worker once; a second Ctrl-C (or the deadline) kills."""
        print("cifar-search run: stopping the workers (they close their running trials; "
              "Ctrl-C again to kill them now)", file=sys.stderr)
        alive = [p for p in self.processes if p.is_alive()]
        for proc in alive:
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_SECONDS
        try:
            for proc in alive:
                proc.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass
        for proc in self.processes:
            if proc.is_alive():
                proc.kill()
                proc.join()


def raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    """A signal handler that turns SIGTERM into Ctrl-C: the running trial closes as
    *interrupted* and the next run retries it."""
    raise KeyboardInterrupt


def poll(study: optuna.Study, epochs: int) -> tuple[int, str]:
    """Finished trials that count, and a line: best so far and what each worker is doing."""
    trials = study.get_trials(deepcopy=False)
    done = count_finished(study)
    best = math.nan
    running = []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.values:
            best = t.values[0] if math.isnan(best) else max(best, t.values[0])
        elif t.state == TrialState.RUNNING:
            epoch = max(t.intermediate_values, default=0)
            running.append(f"#{t.number} ep {epoch}/{epochs}")
    shown = "-" if math.isnan(best) else f"{100 * best:.2f}%"
    return done, f"best {shown} | running {', '.join(running) or 'none'}"
