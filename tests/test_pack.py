"""Packed cells (fluidperc.train.pack): several cells as one computation end as they would alone, each in its own
directory; a cell that diverges stops alone; a killed pack resumes per cell, in other packs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from fluidperc.errors import UserError
from fluidperc.tasks.cell import CellConfig
from fluidperc.train.outputs import read_pieces
from fluidperc.train.trainer import LOCK, run, run_pack

LSIM_PADDED = {"name": "lsim", "pad_to": [64, 64]}
SUM = {"name": "sum", "terms": [{"weight": 1.0, "loss": "mse"}, {"weight": 0.1, "loss": LSIM_PADDED}]}


def cell(data_dir: Path, task: str, loss="mse", seed: int = 0, **settings) -> CellConfig:
    base = {"steps": 20, "batch_size": 2, "lr": 1e-3, "unroll": 2, "checkpoint_every": 10, "validate_every": 10,
            "val_samples": 2}
    return CellConfig(task=task, loss=loss, scene="karman", data_dir=str(data_dir), resolution=(32, 16),
                      high_resolution=(64, 32) if task == "sr" else None, seed=seed, settings={**base, **settings})


def trio(data_dir: Path, task: str, **settings) -> list[CellConfig]:
    """Three cells that differ in seed, loss (mse, lsim, a sum) and learning rate."""
    return [cell(data_dir, task, "mse", 0, lr=1e-3, **settings), cell(data_dir, task, LSIM_PADDED, 1, lr=3e-4, **settings),
            cell(data_dir, task, SUM, 2, lr=5e-4, **settings)]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", weights_only=True)["model"]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def lsim_env(monkeypatch, lsim_weights):
    monkeypatch.setenv("FLUIDPERC_WEIGHTS", str(lsim_weights.parent))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ae", "sr", "sol"])
def test_a_pack_of_three_cells_ends_with_the_weights_and_metrics_each_has_alone(task, data_dir, tmp_path, lsim_env):
    # SOL's steps cost ten of the AE's (a rollout through the solver): 10 steps, with a checkpoint and a validation
    # halfway, prove the same and keep it under a minute on a busy core
    steps = {"steps": 10, "checkpoint_every": 5, "validate_every": 5} if task == "sol" else {"steps": 20}
    cells = trio(data_dir, task, **steps)
    alone = [run(c, tmp_path / "alone" / c.label, progress=False) for c in cells]
    packed = run_pack(cells, [tmp_path / "pack" / c.label for c in cells], progress=False)
    for c, a, p in zip(cells, alone, packed):
        assert p["cell"] == c.label and p["steps"] == steps["steps"] and p["pack_cells"] == 3 and a["pack_cells"] == 1
        wa, wp = weights(tmp_path / "alone" / c.label), weights(tmp_path / "pack" / c.label)
        assert wa.keys() == wp.keys()
        for name in wa:
            torch.testing.assert_close(wp[name], wa[name], rtol=1e-4, atol=1e-7, msg=lambda m: f"{c.label} {name}: {m}")
        ma, mp = metrics(tmp_path / "alone" / c.label), metrics(tmp_path / "pack" / c.label)
        assert [r.keys() for r in ma] == [r.keys() for r in mp], "the same rows: losses, terms, validations"
        for ra, rp in zip(ma, mp):
            assert rp == pytest.approx(ra, rel=1e-4, abs=1e-8)
        for name in ("config.json", "checkpoint.pt", "checkpoint.pt.sha256", "result.json", "pieces.jsonl"):
            assert (tmp_path / "pack" / c.label / name).is_file(), name
        assert list((tmp_path / "pack" / c.label / "tb").glob("events.out.tfevents.*"))
    # different seeds, losses and rates really trained differently
    assert len({p["weights_sha256"] for p in packed}) == 3


@pytest.mark.parametrize("task", ["ae", "sr", "sol"])
def test_stacked_kernels_give_each_cell_the_loss_and_gradient_of_its_own_kernels(task, data_dir, lsim_env):
    """One packed step with the networks under vmap and the cells that share a loss in one call (the GPU path)
    against one call per network: the same [K] losses and the same gradients, to rounding. (Over many Adam steps
    rounding grows, and a gradient that is zero in exact arithmetic, a bias before an instance norm, is
    normalised into noise; so the path is compared here, step by step.)"""
    from fluidperc.datasets.frames import channel_stats
    from fluidperc.losses import get_loss
    from fluidperc.tasks import get_task
    from fluidperc.tasks.base import TaskData, build_model
    from fluidperc.train.pack import PackedNet, PackLoss

    cells = trio(data_dir, task) + [cell(data_dir, task, "mse", 3)]  # two cells share mse: one grouped call
    data = TaskData(cells[0])
    stats = channel_stats((data.high or data.low).stats, data.variable)
    losses = {c.loss_spec.label: get_loss(c.loss_spec, stats) for c in cells}
    batch = {k: torch.cat([v] * len(cells)) for k, v in data.batch(data.train_index[:3]).items()}
    runs = {}
    for kernels in ("per_cell", "stacked"):
        nets = []
        for c in cells:
            torch.manual_seed(c.seed)
            nets.append(get_task(task).build_net(c, data))
        if task == "sol":  # its output layer starts at zero: give every layer a gradient
            for net in nets:
                torch.nn.init.normal_(net.out.weight, std=1e-3)
        model = build_model(cells[0], data, net=PackedNet(nets, stacked=kernels == "stacked"))
        pack_loss = PackLoss([losses[c.loss_spec.label] for c in cells], grouped=kernels == "stacked")
        values = get_task(task).objective(model, batch, pack_loss, cells[0])
        values.sum().backward()
        runs[kernels] = (values.detach(), [[p.grad for p in net.parameters()] for net in nets], pack_loss.terms)
    (v1, g1, t1), (v2, g2, t2) = runs["per_cell"], runs["stacked"]
    assert v1.shape == (4,) and torch.isfinite(v1).all()
    torch.testing.assert_close(v2, v1, rtol=1e-5, atol=0)
    assert v1[0] != v1[3], "two seeds of one loss: two networks"
    for c, a, b in zip(cells, g1, g2):
        scale = max(float(x.abs().max()) for x in a)
        for x, y in zip(a, b):
            torch.testing.assert_close(y, x, rtol=1e-4, atol=1e-5 * scale, msg=lambda m: f"{c.label}: {m}")
    assert t1[2].keys() == t2[2].keys() == {"mse", "lsim"}
    for k in t1[2]:
        torch.testing.assert_close(t2[2][k], t1[2][k], rtol=1e-5, atol=0)


@pytest.mark.slow
def test_stacked_kernels_train_a_pack_as_its_cells_train_alone(data_dir, tmp_path, lsim_env):
    """The AE through the whole trainer with stacked kernels. Grouped convolutions round differently from a cell's
    own, and training amplifies the difference step by step, by how much depends on the CPU's kernels: after 20 steps
    4.6e-6 on one 2-core AMD EPYC VM and 9e-4 on another (the sum cell). So the first two steps' losses must agree
    to rounding (2e-5; 6e-7 measured), and every logged value of 10 steps, two validations included, within 1e-2
    (1.5e-4 measured): a cell given another's seed, loss, lr or gradient is off by far more."""
    cells = trio(data_dir, "ae", pack_kernels="stacked", steps=10, validate_every=5, checkpoint_every=5)
    for c in cells:
        run(c, tmp_path / "alone" / c.label, progress=False)
    run_pack(cells, [tmp_path / "pack" / c.label for c in cells], progress=False)
    for c in cells:
        ma, mp = metrics(tmp_path / "alone" / c.label), metrics(tmp_path / "pack" / c.label)
        assert len(ma) == len(mp) == 10 and sum("val_mse" in r for r in mp) == 2
        for ra, rp in zip(ma[:2], mp[:2]):
            assert rp == pytest.approx(ra, rel=2e-5), c.label
        for ra, rp in zip(ma, mp):
            assert rp == pytest.approx(ra, rel=1e-2), c.label


def test_a_cell_whose_loss_diverges_stops_alone_and_the_pack_goes_on(data_dir, tmp_path):
    """Cell 1 (lr 1e12) turns non-finite: it stops with the trainer's message and no result, its last checkpoint
    from before; the other two finish with exactly the weights they have alone; the job then fails, naming it."""
    cells = [cell(data_dir, "ae", "mse", 0, steps=12), cell(data_dir, "ae", "mae", 1, steps=12, lr=1e12),
             cell(data_dir, "ae", "mse", 2, steps=12)]
    outs = [tmp_path / "pack" / c.label for c in cells]
    with pytest.raises(FloatingPointError, match=r"cell ae-karman_32x16-mae-s1: the mae loss is (nan|inf) at step \d+"):
        run_pack(cells, outs, progress=False)
    assert not (outs[1] / "result.json").exists()
    for i in (0, 2):
        alone = run(cells[i], tmp_path / "alone" / cells[i].label, progress=False)
        assert json.loads((outs[i] / "result.json").read_text())["weights_sha256"] == alone["weights_sha256"]
    rows = metrics(outs[1])
    assert rows and all(r["step"] < 12 for r in rows), "the stopped cell's log ends before the failing step"


def test_cells_that_cannot_share_a_step_are_refused_in_one_paragraph(data_dir, tmp_path):
    a, b = cell(data_dir, "ae", "mse", 0), cell(data_dir, "ae", "mse", 1, batch_size=4)
    with pytest.raises(UserError, match=r"cells ae-karman_32x16-mse-s0 and ae-karman_32x16-mse-s1 differ in "
                                        r"settings.batch_size, so they cannot train as one computation") as err:
        run_pack([a, b], [tmp_path / "a", tmp_path / "b"], progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="names cell ae-karman_32x16-mse-s0 twice"):
        run_pack([a, a], [tmp_path / "a", tmp_path / "b"], progress=False)


def test_a_cell_locked_by_another_job_is_left_to_it(data_dir, tmp_path):
    """A relaunch may pack cells differently from a job still running: a cell whose lock is held is not trained
    twice at once."""
    import fcntl
    import os

    cells = [cell(data_dir, "ae", "mse", 0, steps=4), cell(data_dir, "ae", "mse", 1, steps=4)]
    outs = [tmp_path / c.label for c in cells]
    outs[0].mkdir()
    fd = os.open(outs[0] / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        import multiprocessing

        holder = multiprocessing.get_context("fork").Process(target=_hold_lock, args=(str(outs[0] / LOCK), 30))
        holder.start()
        for _ in range(100):  # until the other process holds it
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.lockf(fd, fcntl.LOCK_UN)
            except OSError:
                break
            import time

            time.sleep(0.05)
        results = run_pack(cells, outs, progress=False)
        holder.kill()
        holder.join()
    finally:
        os.close(fd)
    assert results[0] is None and results[1]["steps"] == 4
    assert not (outs[0] / "result.json").exists() and (outs[1] / "result.json").exists()
    results = run_pack(cells, outs, progress=False)  # the lock is free again: the cell trains; the other is left as it is
    assert results[0]["steps"] == 4 and results[1]["resumed_from_step"] is None


def _hold_lock(path: str, seconds: float) -> None:
    import fcntl
    import os
    import time

    fd = os.open(path, os.O_RDWR)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    time.sleep(seconds)


KILL_AT = """
import os, signal, sys
from fluidperc.tasks.cell import CellConfig
from fluidperc.train.trainer import run_pack

import torch

torch.set_num_threads(int(sys.argv[4]))  # the test's own: the weights must match bit for bit after the resume
cells = [CellConfig.model_validate_json(line) for line in open(sys.argv[1]).read().splitlines()]
outs = sys.argv[2].split(",")

def hook(trainer):
    step = trainer._train_step

    def killing(*args):
        if trainer.step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9: no handler, no flush
        return step(*args)

    trainer._train_step = killing

run_pack(cells, outs, progress=False, trainer_hook=hook)
"""


@pytest.mark.slow
def test_a_pack_killed_with_sigkill_resumes_each_cell_from_its_checkpoint_in_other_packs(data_dir, tmp_path, lsim_env):
    """Three cells killed with SIGKILL at step 13 (checkpoints at 10) continue as one cell alone and a pack of two,
    and end with the weights and metrics of cells that never stopped (the AE: the trainer's logic is the
    task's alike, and the launcher tests below kill SOL packs)."""
    import subprocess
    import sys

    cells = trio(data_dir, "ae")
    outs = [tmp_path / "pack" / c.label for c in cells]
    (tmp_path / "cells.jsonl").write_text("".join(c.model_dump_json() + "\n" for c in cells))
    (tmp_path / "kill.py").write_text(KILL_AT)
    res = subprocess.run([sys.executable, str(tmp_path / "kill.py"), str(tmp_path / "cells.jsonl"),
                          ",".join(map(str, outs)), "13", str(torch.get_num_threads())], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == -9, res.stderr[-2000:]
    assert all(torch.load(o / "checkpoint.pt", weights_only=True)["step"] == 10 for o in outs)
    assert not any((o / "result.json").exists() for o in outs)
    # the killed job's compute record, up to the checkpoint its cells kept, is open (hpc.status counts it) ...
    assert all([(p["start"], p["to"], p.get("open")) for p in read_pieces(o)] == [(0, 10, True)] for o in outs)
    run_pack(cells[:1], outs[:1], progress=False)
    run_pack(cells[1:], outs[1:], progress=False)
    for c, o in zip(cells, outs):
        whole = run(c, tmp_path / "whole" / c.label, progress=False)
        assert json.loads((o / "result.json").read_text())["weights_sha256"] == whole["weights_sha256"], c.label
        assert (o / "metrics.jsonl").read_text() == (tmp_path / "whole" / c.label / "metrics.jsonl").read_text()
        # ... and the next job settled it: every step of the cell is charged once, the lost ones to nobody
        pieces = read_pieces(o)
        assert [(p["start"], p["to"], p.get("killed", False)) for p in pieces] == [(0, 10, True), (10, 20, False)]
        assert pieces[0]["cells"] == 3 and pieces[1]["cells"] == (1 if c is cells[0] else 2) and "open" not in pieces[0]
        assert not (o / "piece.open.json").exists()



KILL_BEFORE_RESULT = """
import os, signal, sys
from fluidperc.tasks.cell import CellConfig
from fluidperc.train.trainer import run

def hook(trainer):
    trainer._finish = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # every step done and saved, no result

run(CellConfig.model_validate_json(open(sys.argv[1]).read()), sys.argv[2], progress=False, trainer_hook=hook)
"""


@pytest.mark.slow
def test_a_cell_killed_after_its_last_step_but_before_its_result_is_charged_once(data_dir, tmp_path):
    """The job records itself when its cell's last step is saved; killed before the result, the next job only
    writes the result and charges nothing more."""
    import subprocess
    import sys

    c = cell(data_dir, "ae", steps=10, checkpoint_every=5, validate_every=5)
    out = tmp_path / c.label
    (tmp_path / "cell.json").write_text(c.model_dump_json())
    (tmp_path / "kill.py").write_text(KILL_BEFORE_RESULT)
    res = subprocess.run([sys.executable, str(tmp_path / "kill.py"), str(tmp_path / "cell.json"), str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == -9 and not (out / "result.json").exists(), res.stderr[-2000:]
    assert [(p["start"], p["to"], p.get("open")) for p in read_pieces(out)] == [(0, 10, None)]
    assert run(c, out, progress=False)["steps"] == 10  # the next job only writes the result
    assert [(p["start"], p["to"], p.get("killed")) for p in read_pieces(out)] == [(0, 10, None)]
    assert not (out / "piece.open.json").exists()

PACK_SWEEP = """
name: packed
resources: {{cpus_per_task: 1, time_min: 20}}
train:
  data_dir: {data}
  tasks: [sol]
  datasets: [{{scene: karman, resolution: [32, 16]}}]
  losses: [mse, mae]
  seeds: [0, 1, 2]
  grid: {{lr: [1.0e-3, 3.0e-4]}}
  cells_per_task: 6
  settings: {{steps: 30, batch_size: 2, unroll: 2, checkpoint_every: 3, validate_every: 30, val_samples: 2}}
evaluate:
  cells_per_task: 6
  settings: {{rollout_steps: 3, frames: 2, samples: 1, animation_frames: 0, ladder: []}}
"""


def launch_packed_then_kill_one_pack(tmp_path: Path, data_dir: Path, backend: str, kill, runner=None) -> None:
    """The study-like packed sweep (2 losses x 3 seeds x 2 lr, SOL: 12 cells in 2 jobs of 6) launched, one job
    killed with SIGKILL once its cells have checkpoints, then relaunched: only that job's cells train again, each
    from its own checkpoint, and every cell is evaluated."""
    import subprocess
    import sys
    import time

    from conftest import ROOT

    sweep = tmp_path / "packed.yaml"
    sweep.write_text(PACK_SWEEP.format(data=data_dir))
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "hpc.launch", str(sweep), "--backend", backend, "--out", str(run_dir)]
    cmd += ["--wait"] if backend == "slurm" else []
    dry = subprocess.run([*cmd, "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "12 cells in 2 jobs of up to 6 (train.cells_per_task)" in dry.stdout, dry.stdout
    assert "1: sol karman_32x16, 6 cells: mse lr=0.001 (seeds 0 1 2); mse lr=0.0003 (seeds 0 1 2)" in dry.stdout
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    victim_cells = [run_dir / "train" / f"sol-karman_32x16-mae-lr={lr}-s{s}" for lr in ("0.001", "0.0003")
                    for s in range(3)]
    deadline = time.time() + 400  # killed at its first checkpoint, with 27 of its 30 steps still to go
    while not all((c / "checkpoint.pt.sha256").exists() for c in victim_cells):
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.2)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    jobs = {t["label"]: t["job_id"] for g in manifest["launches"][0]["groups"] if g["name"] == "train.sol"
            for t in g["tasks"]}
    victim = next(job for label, job in jobs.items() if label.startswith("sol-karman_32x16-mae-lr=0.001-s0+5-"))
    kill(victim)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 1 and "train.sol task sol-karman_32x16-mae-lr=0.001-s0+5-" in err, err[-3000:]
    kept = {c: (c / "model.pt").stat().st_mtime for c in (run_dir / "train").iterdir() if c not in victim_cells}
    assert len(kept) == 6 and not any((c / "result.json").exists() for c in victim_cells)
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all((c / "model.pt").stat().st_mtime == t for c, t in kept.items()), "finished cells are not trained again"
    for c in victim_cells:
        result = json.loads((c / "result.json").read_text())
        assert result["steps"] == 30 and result["resumed_from_step"] >= 3 and result["pack_cells"] == 6
        rows = [json.loads(line)["step"] for line in (c / "metrics.jsonl").read_text().splitlines()]
        assert rows == list(range(1, 31)), "each cell's log continues from its own checkpoint"
    import numpy as np
    import xarray as xr

    ds = xr.open_zarr(run_dir / "results.zarr")
    rows = ["mse lr=0.001", "mse lr=0.0003", "mae lr=0.001", "mae lr=0.0003"]
    assert list(ds.loss.values) == rows + ["source"]
    assert bool(np.isfinite(ds.rel_l2.sel(task="sol", loss=rows)).all()), "every packed cell is evaluated"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_packed_sweep_survives_a_killed_pack_on_the_local_backend(data_dir, tmp_path):
    import os
    import signal

    def kill(job: str) -> None:  # a local job's id is its submitit controller's pid: kill the job it runs
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == int(job)]
        assert children, f"job {job} runs no process"
        for pid in children:
            os.kill(pid, signal.SIGKILL)

    launch_packed_then_kill_one_pack(tmp_path, data_dir, "local", kill)


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_packed_sweep_survives_a_killed_pack_on_the_slurm_test_cluster(slurm_cluster, data_dir, tmp_path):
    import subprocess

    def kill(job: str) -> None:
        subprocess.run(["scancel", "--signal=KILL", "--full", job], check=True, timeout=60)

    launch_packed_then_kill_one_pack(tmp_path, data_dir, "slurm", kill)


def test_a_packs_compute_record_charges_each_cell_its_share_of_the_job(data_dir, tmp_path):
    """Each cell's pieces.jsonl records the job's wall time and its share (each step's time over the cells it
    trained); the compute summary and hpc.status add the shares, so a pack of 3 is not counted 3 times."""
    from fluidperc.analysis.compute import summarise
    from fluidperc.train.outputs import read_pieces

    cells = [cell(data_dir, "ae", "mse", s, steps=6, validate_every=6, checkpoint_every=6) for s in range(3)]
    run_pack(cells, [tmp_path / "train" / c.label for c in cells], progress=False)
    pieces = [read_pieces(tmp_path / "train" / c.label)[0] for c in cells]
    assert all(p["cells"] == 3 and 0 < p["cost_seconds"] <= p["seconds"] for p in pieces)
    assert sum(p["cost_seconds"] for p in pieces) <= max(p["seconds"] for p in pieces) + 0.1, \
        "the shares add up to no more than the job's time"
    rows, incomplete = summarise(tmp_path)
    assert not incomplete and rows[0][3] == "3"
    assert float(rows[0][5]) == pytest.approx(sum(p["cost_seconds"] for p in pieces) / 60, abs=0.06)


FINISH_THEN_SIGNAL = """
import os, signal, sys
from hpc.jobs import TrainJob

called = []
signal.signal(signal.SIGUSR2, lambda signum, frame: called.append(signum))  # as submitit's handler is installed
TrainJob()(open(sys.argv[1]).read().splitlines(), [sys.argv[2]])
os.kill(os.getpid(), signal.SIGUSR2)  # Slurm's pre-timeout signal, arriving just after the pack finished
print("checkpoint handler called" if called else "signal ignored", flush=True)
"""


def test_a_pre_timeout_signal_after_the_pack_finished_neither_requeues_nor_kills_the_job(data_dir, tmp_path):
    """Slurm may signal a job's time limit early, as its work ends. A finished job ignores the signal: left to
    Python's shutdown (which restores the default action) it ended a complete job with exit 140, FAILED in
    accounting; left to submitit's handler it would requeue finished work."""
    import subprocess
    import sys

    c = cell(data_dir, "ae", steps=4, validate_every=4, checkpoint_every=4)
    (tmp_path / "cells.jsonl").write_text(c.model_dump_json() + "\n")
    (tmp_path / "finish.py").write_text(FINISH_THEN_SIGNAL)
    env = {**os.environ, "SUBMITIT_DEBUG_JOB_ID": "1", "SUBMITIT_EXECUTOR": "debug"}
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, str(tmp_path / "finish.py"), str(tmp_path / "cells.jsonl"),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "signal ignored", res.stdout[-2000:]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["steps"] == 4
