"""The benchmark scripts run end to end on the CPU: ``bench_gpu.py`` modes with ``--tiny``,
``bench_cpu.py --quick``, as subprocesses on a generated data set, printing their tables.

``bench_loader.py`` and ``bench_report.py`` likewise. They prove the scripts work where no GPU
is lent; the numbers they print mean nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--tiny", "--tiny-images", "64"]  # 64 images: seconds even for davidnet on 2 cores
# OpenMP threads that sleep at barriers instead of spinning: on a CPU shared with other test
# processes, spinning makes 2 threads several times slower than 1 (bench/RESULTS.md)
ENV = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def _run(script: str, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False, env=ENV)
    assert proc.returncode == 0, f"{script} {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_bench_loader_times_a_preset_epoch_both_ways(synthetic_npz: Path) -> None:
    out = _run("bench_loader.py", "--data", str(synthetic_npz), "--n", "256", "--batch-size",
               "64", "--repeat", "1", "--epoch-preset", "rdfia-alexnet")
    assert "| crop+flip |" in out and "| autoaugment+crop+flip+erasing |" in out
    rows = [line for line in out.splitlines() if line.startswith("| rdfia-alexnet |")]
    assert [r.split("|")[2].strip() for r in rows] == [
        "DeviceLoader + BatchAugment", "DataLoader, PIL, 2 workers", "DataLoader, PIL, 0 workers"]
    assert all(float(r.split("|")[4]) > 0 for r in rows)


def test_bench_report_times_both_storages() -> None:
    out = _run("bench_report.py", "--trials", "40", "--epochs", "3")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| in memory")
            or line.startswith("| SQLite")]
    assert [r[1].strip() for r in rows] == ["in memory", "SQLite"]
    assert all(r[2].strip() == "40" and float(r[4]) >= 0 and float(r[5]) > 0 for r in rows)


def test_bench_cpu_quick_prints_every_setting(synthetic_npz: Path, tmp_path: Path) -> None:
    out = _run("bench_cpu.py", "--quick", "--data", str(synthetic_npz), "--max-wait", "0",
               "--json", str(tmp_path / "cpu.json"))
    assert "| preset | fwd GFLOP/img | batch | images | precision | memory format " in out
    rows = [line for line in out.splitlines() if line.startswith("| rdfia-alexnet |")]
    assert len(rows) == 4  # fp32 / bf16 x contiguous / channels_last
    assert "train speed vs fp32 contiguous" in out
    assert "resolve_runtime('cpu') default:" in out
    data = json.loads((tmp_path / "cpu.json").read_text())
    assert {(r["precision"], r["memory_format"]) for r in data} == {
        ("fp32", "contiguous"), ("fp32", "channels_last"), ("bf16", "contiguous"),
        ("bf16", "channels_last")}
    assert all(r["train_ips"] > 0 and r["eval_ips"] > 0 for r in data)
    assert all(r["compiled"] is False and r["warmup_s"] > 0 for r in data)  # --compile off


def test_bench_gpu_fast94_tiny(synthetic_npz: Path, tmp_path: Path) -> None:
    record = tmp_path / "fast94.json"
    out = _run("bench_gpu.py", "fast94", *TINY, "--data", str(synthetic_npz),
               "--json", str(record))
    assert "# fast94: time to 94%" in out and "--tiny: CPU smoke run" in out
    assert "| seed | test acc (%) | training time, all epochs (s) | time to target (s)" in out
    assert "test accuracy, mean ± std over 2 seeds" in out
    data = json.loads(record.read_text())
    assert [s["seed"] for s in data["seeds"]] == [0, 1]
    assert all(s["train_seconds"] > 0 and 0 <= s["test_acc"] <= 1 for s in data["seeds"])
    assert data["config"]["model"]["family"] == "airbench" and data["config"]["epochs"] == 1


def test_bench_gpu_davidnet_tiny(synthetic_npz: Path, tmp_path: Path) -> None:
    record = tmp_path / "davidnet.json"
    out = _run("bench_gpu.py", "davidnet", *TINY, "--data", str(synthetic_npz),
               "--peak-tflops", "1", "--json", str(record))
    assert "| epoch | train loss | test acc (%) | train img/s | MFU (%) |" in out
    assert "MFU" in out and "against 1 TFLOP/s" in out
    data = json.loads(record.read_text())
    assert data["forward_flops"] > 7e8  # ResNet-9: 0.76 GFLOP per image
    assert len(data["epochs"]) == 1 and data["images_per_s"] > 0
    assert data["mfu"] == pytest.approx(3 * data["forward_flops"] * data["images_per_s"] / 1e12)


def test_bench_gpu_search_tiny(synthetic_npz: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "search"
    out = _run("bench_gpu.py", "search", *TINY, "--data", str(synthetic_npz),
               "--out", str(out_dir), "--json", str(tmp_path / "search.json"))
    assert "| cifar-search run |" in out and "| cifar-search retrain best |" in out
    assert (out_dir / "gpu8.db").is_file()
    assert (out_dir / "retrain-best" / "metrics.json").is_file()
    data = json.loads((tmp_path / "search.json").read_text())
    assert data["run_seconds"] > 0 and data["retrain_seconds"] > 0
    assert 0 <= data["test_acc"] <= 1
    # a second run refuses to resume the old study silently
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_gpu.py"), "search",
                           *TINY, "--data", str(synthetic_npz), "--out", str(out_dir)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
                          env=ENV)
    assert proc.returncode == 2 and "exists" in proc.stderr


def test_gpu_sh_runs_its_device_plan_on_the_cpu(synthetic_npz: Path, tmp_path: Path) -> None:
    """The shell plumbing of the device calls: fast94 and davidnet, the search started in its
    own session, then its collection with the retrain (the data is already at $DATA)."""
    env = {**ENV, "WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out"),
           "DATA": str(synthetic_npz), "BENCH_ARGS": " ".join(TINY), "PYTHON": sys.executable}

    def gpu_sh(*steps: str) -> str:
        proc = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), *steps], cwd=REPO,
                              capture_output=True, text=True, timeout=600, check=False, env=env)
        assert proc.returncode == 0, f"gpu.sh {steps}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    out = gpu_sh("fast94", "davidnet", "search-start")
    assert "== search-start" in out and "search started at" in out
    gpu_sh("search-retrain")
    got = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"fast94.md", "fast94.json", "davidnet.md", "davidnet.json", "search-run.out",
            "search.md", "search.json", "metrics.json"} <= got
    assert json.loads((tmp_path / "out" / "search.json").read_text())["retrain_seconds"] > 0


def _planted_rate(tmp_path: Path) -> Path:
    """A private XDG cache folder holding fast94's rate for this machine, so that ``auto``
    measures nothing (seconds to minutes on a 2-core CPU)."""
    from cifar_search.search.space import DEFAULT_SPACE, rebuild_in
    from cifar_search.train.presets import get_preset
    from cifar_search.train.runtime import resolve_runtime
    from cifar_search.train.throughput import Rate, RateCache

    xdg = tmp_path / "xdg"
    RateCache(xdg / "cifar-search" / "throughput.json").put(
        rebuild_in(get_preset("fast94").config, DEFAULT_SPACE),
        resolve_runtime("auto", "auto"), Rate(train=64.0, eval=5000.0))
    return xdg


def test_gpu_sh_runs_an_auto_arm_in_its_own_session_and_collects_it(synthetic_npz: Path,
                                                                    tmp_path: Path) -> None:
    """The second device plan: ``auto-start`` returns at once, ``auto-collect`` waits for the
    arm (bench_auto.py, the real CLI) and brings back its row, log and model card.

    fast94's rate is planted in a private cache: its evaluation speed high enough that T = 60 s
    always leaves time to train after the test passes and the exports however slow the
    machine, its training speed the reference CPU's in fp32 (so one short paced epoch)."""
    env = {**ENV, "WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out"),
           "DATA": str(synthetic_npz), "PYTHON": sys.executable, "AUTO_TIME": "60",
           "SEED": "3", "CIFAR_SEARCH_DATA": str(tmp_path / "cache"),
           "XDG_CACHE_HOME": str(_planted_rate(tmp_path))}

    def gpu_sh(step: str) -> str:
        proc = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), step], cwd=REPO,
                              capture_output=True, text=True, timeout=600, check=False, env=env)
        assert proc.returncode == 0, f"gpu.sh {step}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    assert "auto (seed 3, T = 60 s) started at" in gpu_sh("auto-start")
    assert not (tmp_path / "out" / "auto-auto-seed3.jsonl").exists()  # it runs on, detached
    table = gpu_sh("auto-collect")
    out = tmp_path / "out"
    assert {"auto-auto-seed3.jsonl", "auto-auto-seed3-log.txt", "auto-auto-seed3-metrics.json",
            "auto-auto-seed3-MODEL.md", "auto-auto-seed3.md"} <= {p.name for p in out.iterdir()}
    row = json.loads((out / "auto-auto-seed3.jsonl").read_text())
    assert row["arm"] == "auto" and row["seed"] == 3 and row["time"] == 60 and row["rc"] == 0
    assert 0 <= row["test_acc"] <= 1 and "| auto | 3 | 60 |" in table


def test_bench_tricks_runs_each_variant_through_cifar_search_train(synthetic_npz: Path,
                                                                    tmp_path: Path) -> None:
    out = _run("bench_tricks.py", "--tiny", "--data", str(synthetic_npz), "--variants",
               "base,no-lookahead,no-tta", "--json", str(tmp_path / "t.json"), timeout=900)
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| no")]
    assert rows == ["no-lookahead", "no-tta"]
    data = json.loads((tmp_path / "t.json").read_text())
    assert [r["variant"] for r in data["rows"]] == ["base", "no-lookahead", "no-tta"]
    assert all(0 <= r["val_acc"] <= 1 and r["train_seconds"] > 0 for r in data["rows"])


def test_bench_help_times_each_help(tmp_path: Path) -> None:
    out = _run("bench_help.py", "--runs", "1", "--commands", ",auto,nope")
    rows = [line for line in out.splitlines() if line.startswith("| (top level)")
            or line.startswith("| auto") or line.startswith("| nope")]
    assert len(rows) == 3 and "no such command" in rows[2]


def test_bench_auto_table_renders_its_results_file(tmp_path: Path) -> None:
    row = {"arm": "auto", "seed": 0, "time": 600, "when": "2026-12-02 16:00", "load": 0.1,
           "wall_s": 590.0, "test_acc": 0.9351, "test_acc_single": 0.9302, "detail": "x"}
    results = tmp_path / "r.jsonl"
    results.write_text(json.dumps(row) + "\n")
    out = _run("bench_auto.py", "--table", "--results", str(results))
    assert "| auto | 0 | 600 | 590 | 0.983 | 93.51% | 93.02% | x |" in out


def test_bench_resume_cost_writes_a_resume_file_for_every_preset(synthetic_npz: Path) -> None:
    from cifar_search.train.presets import PRESETS

    out = _run("bench_resume.py", "--cost", "--data", str(synthetic_npz), "--device", "cpu")
    rows = [line.split("|")[1].strip() for line in out.splitlines()
            if line.startswith("| ") and not line.startswith(("| preset", "| ---"))]
    assert rows == list(PRESETS)


def test_gpu_sh_auto_collect_reports_a_failed_arm_at_once(synthetic_npz: Path,
                                                          tmp_path: Path) -> None:
    """An arm that fails (T = 1 s leaves no time to train) is reported when it ends, with its
    log, instead of after the 540 s the collect step waits for a running one."""
    env = {**ENV, "WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out"),
           "DATA": str(synthetic_npz), "PYTHON": sys.executable, "AUTO_TIME": "1",
           "CIFAR_SEARCH_DATA": str(tmp_path / "cache"),
           "XDG_CACHE_HOME": str(_planted_rate(tmp_path))}
    script = str(REPO / "bench" / "gpu.sh")
    subprocess.run(["bash", script, "auto-start"], cwd=REPO, env=env, check=True, timeout=60,
                   capture_output=True)
    proc = subprocess.run(["bash", script, "auto-collect"], cwd=REPO, env=env, timeout=300,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "the arm ended without" in proc.stderr
    assert "leaves no time to train" in (tmp_path / "out" / "auto-auto-seed0-log.txt").read_text()


@pytest.mark.parametrize(("mode", "train_images"), [("top-rung", 1800), ("retrain", 2000)])
def test_bench_final_mode_trains_on_its_images_and_tests_once(
        synthetic_npz: Path, tmp_path: Path, mode: str, train_images: int) -> None:
    """``top-rung`` trains on the split (scored on its validation images too), ``retrain`` on
    every training image; both tested once. fast94's rate planted: seconds, not minutes."""
    env = {**ENV, "XDG_CACHE_HOME": str(_planted_rate(tmp_path))}
    out_file = tmp_path / "modes.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_final_mode.py"), "--mode",
                           mode, "--seconds", "2", "--data", str(synthetic_npz), "--device",
                           "cpu", "--json", str(out_file)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(cached 64 images/s)" in proc.stdout  # the planted rate: nothing measured
    row = json.loads(out_file.read_text())
    assert row["mode"] == mode and row["train_images"] == train_images
    assert (row["val_acc"] is None) is (mode == "retrain")
    assert 0.0 <= row["test_acc"] <= 1.0 and 0.0 <= row["test_acc_single"] <= 1.0
    assert row["epochs"] == 1 and row["images_run"] == 1024  # 2 s at 64 images/s: one batch
