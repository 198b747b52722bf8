"""The GPU check: everything fluidperc does on CUDA, checked and timed in one run that fits a short lease.

    python -m benchmarks.gpu_check                    # on a machine with a GPU (default --device cuda)
    python -m benchmarks.gpu_check --device cpu --quick   # the same code paths on the CPU (make test runs this)

Checks (each passes or fails on its own; the exit code is 1 if any failed):
- every task x loss training step on the device: finite loss, finite gradients that reach the network;
- a Solver-in-the-Loop rollout on the device equal to the CPU rollout within float32 tolerance;
- a DDP training cell through NCCL (gloo on the CPU) with world size 1, via fluidperc.train.run;
- a SOL cell trained with ``cuda_graph: true`` against the same cell trained eagerly;
- packed cells: 24 SOL cells as one graphed computation against one cell (step times, the projected training
  stage of sweeps/sol_all_losses.yaml), and stacked kernels against per-call ones;
- the pressure solve: the device's dense inverse against the host LU, values and time per solve;
- probes: whether a SOL rollout, and a whole SOL training step, can be captured as one CUDA graph, and the
  replay's time against eager;
Timings (medians, interleaved rounds):
- the SOL training step per loss and its ratio to MSE, and the same MSE step on 2 CPU threads of this machine;
- datagen frames per second on the device against the CPU in the same run.

ImageNet trunks and LSiM are random files of the right shapes when absent (speed and finiteness do not depend on
the values). The table comes last; the JSON goes to --json (default benchmarks/results/gpu_check.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.bench_losses import SHARED_LSIM, random_trunks
from benchmarks.common import RESULTS, benchmark_device, machine, step_timer, table
from fluidperc.devices import synchronize, timed
from fluidperc.weights import CATALOG, WeightStore, default_dirs

PAD = {"pad_to": [64, 64]}
LOSSES = ["mse", "mae", {"name": "lsim", **PAD}, {"name": "vgg", "layer": "relu3_3", **PAD},
          {"name": "lpips", "net": "alex", **PAD}, {"name": "lpips", "net": "vgg", **PAD},
          {"name": "lpips", "net": "squeeze", **PAD}, {"name": "vgg", "layer": "relu3_3", **PAD, "precision": "bfloat16"}]
QUICK_LOSSES = ["mse", {"name": "lsim", **PAD}, {"name": "vgg", "layer": "relu3_3", **PAD}]


def random_lsim(tmp: Path, store: WeightStore) -> WeightStore:
    """LSiM.pth in the published layout with random values, when the real one is absent."""
    if store.present("lsim") or SHARED_LSIM.is_file():
        return store
    from fluidperc.losses.lsim import _KEYS, LSiM

    ours = LSiM().state_dict()
    raw = {"stateDict": {theirs: torch.rand_like(ours[mine]) * 0.1 for theirs, mine in _KEYS.items()},
           "normAcc": [ours[f"norm_mean{i}"] for i in range(5)], "normM2": [ours[f"norm_m2{i}"] for i in range(5)],
           "normCount": [2.0] * 5}
    path = tmp / store.catalog["lsim"].filename
    torch.save(raw, path)
    catalog = dict(store.catalog)
    catalog["lsim"] = replace(catalog["lsim"], sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    return WeightStore(store.dirs, catalog)


def seconds(fn: Callable[[], Any], device: torch.device) -> float:
    return timed(fn, device)[1]


class Report:
    """Checks and timings, printed as tables at the end and written as JSON."""

    def __init__(self, only: list[str] | None = None) -> None:
        self.checks: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {}
        self.only = only

    def check(self, name: str, fn: Callable[[], str]) -> None:
        if self.only and not any(word in name for word in self.only):
            return
        t0 = time.perf_counter()
        try:
            detail, ok = fn(), True
        except Exception as exc:  # a check that fails is reported; the others still run
            detail, ok = f"{type(exc).__name__}: {exc}".splitlines()[0][:300], False
            traceback.print_exc(file=sys.stderr)
        self.checks.append({"check": name, "ok": ok, "detail": detail, "seconds": time.perf_counter() - t0})
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)


# --- data -------------------------------------------------------------------------------------------------------
def make_dataset(root: Path, quick: bool) -> None:
    from fluidperc.datasets import generate
    from fluidperc.datasets.spec import DatasetSpec

    res = [64, 32] if quick else [128, 64]
    spec = DatasetSpec.model_validate({"scene": "karman", "resolution": res, "factor": 2,
                                      "train_reynolds": [1.0e5, 3.0e5, 6.0e5], "test_reynolds": [2.0e5],
                                      "steps": 24 if quick else 30, "keep_from": 10, "sims_per_task": 4})
    generate.generate_all(spec, root, device="cpu")


def make_cell(root: Path, task: str, loss, device: str, quick: bool, steps: int = 10):
    from fluidperc.tasks.cell import CellConfig

    low = (32, 16) if quick else (64, 32)
    return CellConfig(task=task, loss=loss, scene="karman", data_dir=str(root), resolution=low,
                      high_resolution=(low[0] * 2, low[1] * 2) if task == "sr" else None, seed=0,
                      settings={"steps": steps, "batch_size": 3 if task == "sol" else 8, "unroll": 4, "lr": 1e-3,
                                "val_rollout": 4,
                                "checkpoint_every": 1000, "validate_every": 1000, "device": device})


def training_step(cell, store: WeightStore, device: torch.device):
    """One optimiser step of the cell on a fixed batch, as a closure returning (loss, model)."""
    from fluidperc.losses import get_loss
    from fluidperc.datasets.frames import channel_stats
    from fluidperc.tasks.base import TaskData, build_model, sample_loss

    torch.manual_seed(0)
    data = TaskData(cell)
    model = build_model(cell, data, device)
    loss_fn = get_loss(cell.loss_spec, channel_stats((data.high or data.low).stats, data.variable), store).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = {k: v.to(device) for k, v in data.batch(data.train_index[: cell.settings.batch_size]).items()}

    def step():
        opt.zero_grad()
        value = sample_loss(model, batch, loss_fn, cell)
        value.backward()
        opt.step()
        return value

    return step, model


# --- checks -----------------------------------------------------------------------------------------------------
def check_training_step(cell, store, device) -> str:
    step, model = training_step(cell, store, device)
    value = step()
    synchronize(device)
    if not torch.isfinite(value):
        raise FloatingPointError(f"loss {float(value)}")
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    if any(g is None for g in grads):
        raise RuntimeError("a parameter received no gradient")
    if not all(torch.isfinite(g).all() for g in grads):
        raise FloatingPointError("non-finite gradient")
    total = float(sum(g.abs().sum() for g in grads))
    if total == 0.0:
        raise RuntimeError("all gradients are zero")
    on = {str(p.device) for p in model.parameters()}
    return f"loss {float(value):.4g}, |grad| {total:.3g}, parameters on {', '.join(sorted(on))}"


def sol_rollouts(root: Path, device: torch.device, quick: bool) -> dict[str, torch.Tensor]:
    """The same SOL network (small random weights, so the correction matters) rolled out on the CPU and the
    device from the same frames: [sims, steps, values] per device type."""
    from fluidperc.tasks.base import TaskData, build_model

    cell = make_cell(root, "sol", "mse", "cpu", quick)
    data = TaskData(cell)
    steps = min(16, data.low.centred.shape[1] - 1)
    outs = {}
    for dev in (torch.device("cpu"), device):
        torch.manual_seed(0)
        model = build_model(cell, data, dev).eval()
        gen = torch.Generator().manual_seed(1)  # the same weights on every device: drawn on the CPU, then copied
        with torch.no_grad():
            for p in model.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02 if p.dim() > 1 else torch.zeros(p.shape))
        s = torch.tensor(data.low.test_sims + data.low.train_sims)
        args = [t.to(dev) for t in (data.low.velocity_x[s, 0], data.low.velocity_y[s, 0], data.low.marker[s, 0],
                                    data.low.reynolds[s].float())]
        with torch.no_grad():
            states = model(*args, steps)
        outs[dev.type] = torch.stack([torch.cat([st["velocity_x"].flatten(1), st["velocity_y"].flatten(1)], 1)
                                      for st in states], 1).cpu().double()
    return outs


def rel_per_step(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b).flatten(2).norm(dim=2) / a.flatten(2).norm(dim=2)).max(dim=0).values  # per step, worst sim


def check_sol_rollout(root: Path, device: torch.device, quick: bool, report: Report) -> str:
    """Strict float32 on the device (TF32 off) must match the CPU; with TF32 (PyTorch's cuDNN default) the
    difference is recorded, not judged."""
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        outs = sol_rollouts(root, device, quick)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    rel = rel_per_step(outs["cpu"], outs[device.type])
    report.timings["sol_rollout_rel_diff_per_step"] = rel.tolist()
    extra = ""
    if device.type == "cuda":
        tf32 = sol_rollouts(root, device, quick)
        rel_tf32 = rel_per_step(tf32["cpu"], tf32["cuda"])
        report.timings["sol_rollout_rel_diff_per_step_tf32"] = rel_tf32.tolist()
        extra = f"; with TF32 convolutions {float(rel_tf32.max()):.2e}"
    worst = float(rel.max())
    if not worst < 1e-4:
        raise AssertionError(f"CPU and {device.type} rollouts differ: max relative L2 {worst:.2e} over {rel.numel()} "
                             f"steps (per step {[f'{x:.1e}' for x in rel.tolist()]})")
    return (f"{rel.numel()} steps, {outs['cpu'].shape[0]} sims: max relative L2 difference {worst:.2e} "
            f"(step 1: {float(rel[0]):.1e}){extra}")


def probe_sol_graph(root: Path, device: torch.device, quick: bool, report: Report, steps: int = 4) -> str:
    """Can a SOL rollout (no autograd, m steps, the test and training sims in one batch) be captured as one CUDA
    graph, and what does a replay cost against the eager rollout? PhiFlow's steps are launch-bound on a GPU
    (BENCHMARKS.md); a graph replays their kernels without the Python that issues them. A probe: a capture that
    fails is reported as the finding; a replay that disagrees with the eager rollout fails the check."""
    if device.type != "cuda":
        return "skipped: CUDA graphs need a GPU"
    from fluidperc.tasks.base import TaskData, build_model

    cell = make_cell(root, "sol", "mse", "cuda", quick)
    data = TaskData(cell)
    torch.manual_seed(0)
    model = build_model(cell, data, device).eval()
    s = torch.tensor(data.low.test_sims + data.low.train_sims)
    args = [t.to(device) for t in (data.low.velocity_x[s, 0], data.low.velocity_y[s, 0], data.low.marker[s, 0],
                                   data.low.reynolds[s].float())]
    with torch.no_grad():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # eager first call, the trace, then warm calls, as capture requires
            for _ in range(3):
                model(*args, steps)
        torch.cuda.current_stream().wait_stream(side)
        eager = statistics.median(seconds(lambda: model(*args, steps), device) for _ in range(9))
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                captured = model(*args, steps)
        except Exception as exc:  # the finding: what stops a capture
            report.timings["sol_graph"] = {"captured": False, "error": f"{type(exc).__name__}: {exc}"[:500],
                                           "eager_s": eager}
            return f"not capturable ({type(exc).__name__}: {str(exc).splitlines()[0][:150]}); eager {eager * 1e3:.1f} ms"
        graph.replay()
        last = model(*args, steps)[-1]
        torch.cuda.synchronize()
        diff = max(float((captured[-1][k] - last[k]).norm() / last[k].norm()) for k in ("velocity_x", "velocity_y"))
        replay = statistics.median(seconds(graph.replay, device) for _ in range(9))
    report.timings["sol_graph"] = {"captured": True, "steps": steps, "sims": len(s), "eager_s": eager,
                                   "replay_s": replay, "max_rel_diff": diff}
    if not diff < 1e-5:
        raise AssertionError(f"the graph's replay differs from the eager rollout: relative L2 {diff:.2e}")
    return (f"{steps} steps, {len(s)} sims: replay {replay * 1e3:.2f} ms against eager {eager * 1e3:.2f} ms "
            f"({eager / replay:.1f}x), relative difference {diff:.1e}")


def probe_sol_train_graph(root: Path, device: torch.device, quick: bool, store: WeightStore, report: Report) -> str:
    """Can a whole SOL training step (m = 4 unrolled solver steps with the correction, MSE, backward through the
    solver, Adam) be captured as one CUDA graph? Replay time against the eager step, and one replayed step against
    one eager step from the same weights and optimiser state (copied in place: a graph keeps its addresses)."""
    if device.type != "cuda":
        return "skipped: CUDA graphs need a GPU"
    from fluidperc.losses import get_loss
    from fluidperc.tasks.base import TaskData, build_model, sample_loss
    from fluidperc.datasets.frames import channel_stats

    cell = make_cell(root, "sol", "mse", "cuda", quick)
    data = TaskData(cell)
    torch.manual_seed(0)
    model = build_model(cell, data, device)
    loss_fn = get_loss(cell.loss_spec, channel_stats(data.low.stats, data.variable), store).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=True)
    batch = {k: v.to(device) for k, v in data.batch(data.train_index[: cell.settings.batch_size]).items()}

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=False)
        value = sample_loss(model, batch, loss_fn, cell)
        value.backward()
        opt.step()
        return value.detach()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    eager = statistics.median(seconds(step, device) for _ in range(9))
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            step()
    except Exception as exc:
        report.timings["sol_train_graph"] = {"captured": False, "error": f"{type(exc).__name__}: {exc}"[:500],
                                             "eager_s": eager}
        return f"not capturable ({type(exc).__name__}: {str(exc).splitlines()[0][:150]}); eager {eager * 1e3:.1f} ms"
    tensors = [p for p in model.parameters()] + [t for st in opt.state.values() for t in st.values()
                                                 if isinstance(t, torch.Tensor)]
    saved = [t.detach().clone() for t in tensors]
    step()
    after_eager = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for t, v in zip(tensors, saved):
            t.copy_(v)
    graph.replay()
    torch.cuda.synchronize()
    diff = max(float((p.detach() - e).norm() / e.norm().clamp_min(1e-30)) for p, e in zip(model.parameters(), after_eager))
    replay = statistics.median(seconds(graph.replay, device) for _ in range(9))
    report.timings["sol_train_graph"] = {"captured": True, "eager_s": eager, "replay_s": replay, "max_rel_diff": diff}
    if not diff < 1e-4:
        raise AssertionError(f"a replayed training step differs from an eager one: relative L2 {diff:.2e}")
    return (f"m = 4, {cell.settings.batch_size} sims, MSE: replay {replay * 1e3:.2f} ms against eager "
            f"{eager * 1e3:.2f} ms ({eager / replay:.1f}x); weights after one step differ by {diff:.1e}")


def check_ddp(root: Path, device: torch.device, quick: bool, tmp: Path) -> str:
    """fluidperc.train.run inside a world-size-1 process group: DDP-wrapped, all-reduced, NCCL on CUDA."""
    import torch.distributed as dist

    from fluidperc.train import run

    backend = "nccl" if device.type == "cuda" else "gloo"
    # a file, not tcp://: torch's TCPStore would listen on every interface whatever address it is given
    store = dist.FileStore(str(tmp / "ddp-store"), 1)
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    try:
        cell = make_cell(root, "sr", "mse", device.type, quick, steps=6)
        result = run(cell, tmp / "ddp", progress=False)
        used = dist.get_backend()
    finally:
        dist.destroy_process_group()
    if result["steps"] != 6 or not all(d == result["weights_sha256"] for d in result["rank_digests"]):
        raise AssertionError(f"unexpected result {result}")
    if not (result["train_loss"] == result["train_loss"]):
        raise FloatingPointError("NaN training loss")
    return f"backend {used}, 6 steps through DistributedDataParallel, final train_loss {result['train_loss']:.4g}"


def check_graph_cell(root: Path, device: torch.device, quick: bool, tmp: Path, report: Report) -> str:
    """A SOL cell trained through fluidperc.train.run with settings.cuda_graph against the same cell trained
    eagerly, twice. Scatter-adds in the solver's backward are not deterministic on CUDA and Adam magnifies tiny
    gradients, so two eager runs drift apart: the graphed run must stay within a few times that drift. Recorded:
    the drift per step and the wall time of each run. On the CPU the setting is ignored (eager, with a note), so
    the runs must agree exactly there."""
    import json as _json

    from fluidperc.train import run

    steps = 6 if quick else 12  # on the CPU (quick) the three runs must agree exactly, which 6 steps show as well
    out = {}
    for name, graphed in (("eager", False), ("eager again", False), ("graphed", True)):
        cell = make_cell(root, "sol", "mse", device.type, quick, steps=steps)
        cell = cell.model_copy(update={"settings": cell.settings.model_copy(update={"cuda_graph": graphed})})
        folder = tmp / f"graph-{name.replace(' ', '-')}"
        t0 = time.perf_counter()
        run(cell, folder, progress=False)
        wall = time.perf_counter() - t0
        losses = [_json.loads(line)["train_loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        weights = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)["model"]
        out[name] = (losses, weights, wall)

    def drift(a: str, b: str) -> tuple[float, list[float]]:
        wa, wb = out[a][1], out[b][1]
        w = max(float((wb[k].float() - wa[k].float()).norm() / wa[k].float().norm().clamp_min(1e-30)) for k in wa)
        return w, [abs(x - y) / abs(x) for x, y in zip(out[a][0], out[b][0])]

    w_graph, l_graph = drift("eager", "graphed")
    w_eager, l_eager = drift("eager", "eager again")
    report.timings["graph_cell"] = {"steps": steps, "wall_s": {k: v[2] for k, v in out.items()},
                                    "weights_rel_diff": {"graphed": w_graph, "eager again": w_eager},
                                    "loss_rel_diff_per_step": {"graphed": l_graph, "eager again": l_eager}}
    # On CUDA, two eager runs already drift apart (H200: 7.4e-4 in the weights after 12 steps, the graphed run
    # 7.1e-4): the graphed run must stay within a few times that spread. On the CPU everything is exact.
    allowed = 3 * w_eager + 1e-6 if device.type == "cuda" else 0.0
    if not w_graph <= allowed:
        raise AssertionError(f"after {steps} steps the graphed run's weights differ from the eager run's by "
                             f"{w_graph:.2e}, more than 3x what two eager runs differ by ({w_eager:.2e}); losses per "
                             f"step differ by {[f'{x:.1e}' for x in l_graph]}")
    return (f"after {steps} steps weights differ by {w_graph:.1e} from eager (two eager runs: {w_eager:.1e}), losses "
            f"by at most {max(l_graph):.1e} (eager: {max(l_eager):.1e}); wall {out['graphed'][2]:.1f} s graphed "
            f"against {out['eager'][2]:.1f} s eager (build and warm-up included)")


def check_packed_cells(root: Path, device: torch.device, quick: bool, tmp: Path, report: Report) -> str:
    """Packed cells (train.cells_per_task) on the device: K SOL cells trained as one computation through
    fluidperc.train.run_pack against one cell, both with cuda_graph on CUDA; the median step of each, their
    ratio (issue: a pack of 24 at most 2.4x one cell's step), and the projected training stage of
    sweeps/sol_all_losses.yaml (24 cells x 20000 steps) as packs of K against one cell after another. Also: the
    stacked kernels' losses over the first steps against per-call kernels (to rounding)."""
    import statistics as st

    from fluidperc.train.trainer import run_pack

    k = 2 if quick else 24
    steps = 5 if quick else 20

    def train(n: int, kernels: str, name: str) -> tuple[list[float], list[list[float]]]:
        cells = [make_cell(root, "sol", "mse", device.type, quick, steps=steps) for _ in range(n)]
        cells = [c.model_copy(update={"seed": i, "settings": c.settings.model_copy(update={
            "cuda_graph": device.type == "cuda", "pack_kernels": kernels, "lr": 1e-3 * (1 + 0.05 * i)})})
            for i, c in enumerate(cells)]
        times: list[float] = []
        outs = [tmp / f"pack-{name}" / c.label for c in cells]
        run_pack(cells, outs, progress=False, trainer_hook=step_timer(times, device))
        losses = [[json.loads(line)["train_loss"] for line in (o / "metrics.jsonl").read_text().splitlines()]
                  for o in outs]
        return times, losses

    one, _ = train(1, "auto", "one")
    pack, _ = train(k, "auto", "pack")
    t1, tk = st.median(one[4:]), st.median(pack[4:])
    _, stacked = train(2, "stacked", "stacked")
    _, per_cell = train(2, "per_cell", "per-cell")
    worst = max(abs(a - b) / max(abs(b), 1e-12) for x, y in zip(stacked, per_cell) for a, b in zip(x[:3], y[:3]))
    if worst > 1e-3:
        raise AssertionError(f"stacked kernels' first losses differ from per-call kernels' by {worst:.1e}")
    stage = {"one cell after another": 24 * 20000 * t1, f"packs of {k}": -(-24 // k) * 20000 * tk}
    report.timings["packed_cells"] = {"k": k, "steps": steps, "one_cell_step_s": t1, "pack_step_s": tk,
                                      "ratio": tk / t1, "throughput_x": k * t1 / tk, "stacked_vs_per_cell": worst,
                                      "sol_all_losses_training_stage_min": {n: v / 60 for n, v in stage.items()}}
    return (f"a pack of {k}: {tk * 1e3:.1f} ms per step against {t1 * 1e3:.1f} ms for one cell ({tk / t1:.2f}x, "
            f"{k * t1 / tk:.1f}x the throughput); sol_all_losses' 24 x 20000 steps: "
            f"{stage[f'packs of {k}'] / 60:.1f} min packed, {stage['one cell after another'] / 60:.1f} min one by one; "
            f"stacked vs per-call losses {worst:.1e}")


def check_pressure(device: torch.device, report: Report, quick: bool) -> str:
    """Dense inverse on the device against the host LU: the same solution, and seconds per solve of 4 sims."""
    from fluidperc.sim.simulation import Simulation

    rows = {}
    grids = [("karman", 64, 32), ("plume", 64, 64)] + ([] if quick else [("plume", 128, 128)])
    worst = 0.0
    for scene, ny, nx in grids:
        sim = Simulation(scene, ny, nx, [1e5] * 4, 1, compiled=False, device=device)
        solver = sim.solver
        rhs = torch.randn(4, nx, ny, device=device)
        lu = lambda: solver.solve_native(rhs.cpu(), False).to(device)  # noqa: E731  the host path, as before
        x_lu = lu()
        row = {"lu_host_s": statistics.median(seconds(lu, device) for _ in range(5))}
        if solver.inverse is not None:
            dense = lambda: solver.solve_native(rhs, False)  # noqa: E731
            x = dense()
            err = float((x - x_lu).norm() / x_lu.norm())
            worst = max(worst, err)
            row.update(dense_s=statistics.median(seconds(dense, device) for _ in range(20)), rel_diff=err)
        rows[f"{scene} {ny}x{nx}"] = row
    report.timings["pressure_solve"] = rows
    if worst > 1e-5:
        raise AssertionError(f"dense inverse and LU differ by {worst:.2e} (relative L2)")
    return "; ".join(f"{k}: " + ", ".join(f"{n} {v:.2e}" for n, v in r.items()) for k, r in rows.items())


# --- timings ----------------------------------------------------------------------------------------------------
def sol_step_times(root: Path, store: WeightStore, device: torch.device, quick: bool, repeats: int,
                   report: Report) -> list[list[str]]:
    steps = {}
    for loss in (QUICK_LOSSES if quick else LOSSES):
        cell = make_cell(root, "sol", loss, device.type, quick)
        steps[cell.loss_spec.label] = training_step(cell, store, device)[0]
    for fn in steps.values():
        fn(), fn()
    synchronize(device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for label, fn in steps.items():
            times[label].append(seconds(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    if device.type == "cuda":  # where the MSE step's time goes: device kernels against host-side Python
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            wall = sum(seconds(steps["mse"], device) for _ in range(3)) / 3
        events = prof.key_averages()
        kernel_s = sum(e.self_device_time_total for e in events) / 1e6 / 3
        launches = sum(e.count for e in events if e.key.startswith("cudaLaunchKernel")) / 3
        report.timings["sol_step_profile"] = {"wall_s": wall, "device_kernel_s": kernel_s,
                                              "kernel_launches": launches,
                                              "top_device_ops": [(e.key, e.self_device_time_total / 3e6)
                                                                 for e in sorted(events, key=lambda e: -e.self_device_time_total)[:8]]}
        print(f"SOL MSE step under the profiler: wall {wall * 1e3:.0f} ms, device kernels {kernel_s * 1e3:.1f} ms, "
              f"{launches:.0f} kernel launches per step", flush=True)
    # the same MSE step on 2 CPU threads of this machine, the issue's "these 2 cores" baseline
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cpu_fn = training_step(make_cell(root, "sol", "mse", "cpu", quick), store, torch.device("cpu"))[0]
        # quick (the CPU test, beside other tests on two cores): one warm-up and one timed step, since two threads
        # that wait for each other's core make each step over ten times slower there; the figure means nothing there
        warm, timed = (1, 1) if quick else (2, max(3, repeats // 2))
        for _ in range(warm):
            cpu_fn()
        cpu_mse = statistics.median(seconds(cpu_fn, torch.device("cpu")) for _ in range(timed))
    finally:
        torch.set_num_threads(threads)
    report.timings["sol_step"] = {"device": device.type, "median_s": med, "times_s": times,
                                  "ratio_to_mse": {k: v / med["mse"] for k, v in med.items()},
                                  "cpu_2_threads_mse_s": cpu_mse, "speedup_vs_2_cpu_threads": cpu_mse / med["mse"]}
    rows = [[f"SOL step {k}", f"{v * 1e3:.1f} ms", f"{v / med['mse']:.2f}x MSE"] for k, v in med.items()]
    rows.append(["SOL step mse, 2 CPU threads", f"{cpu_mse * 1e3:.1f} ms", f"{cpu_mse / med['mse']:.1f}x the {device.type} step"])
    return rows


def datagen_rates(device: torch.device, quick: bool, report: Report) -> list[list[str]]:
    """Frames per second of batched datagen steps (4 sims) on the device and on the CPU, same grids."""
    from fluidperc.sim.scenes import diffusion_substeps, scene_info
    from fluidperc.sim.simulation import Simulation, components

    grids = [("karman", 64, 32)] if quick else [("karman", 128, 64), ("plume", 128, 128), ("plume", 256, 256)]
    n = 4 if quick else 20
    rows, out = [], {}
    for scene, ny, nx in grids:
        rates = {}
        for dev in dict.fromkeys([torch.device("cpu"), device]):
            re = [1e5, 2e5, 3e5, 4e5]
            sim = Simulation(scene, ny, nx, re, diffusion_substeps(scene_info(scene), nx, min(re)), device=dev)
            state = sim.initial_state([0, 1, 2, 3])
            for _ in range(2):
                state = sim.step(state)

            def run(state=state, sim=sim):
                for _ in range(n):
                    state = sim.step(state)
                    components(state)  # the host copy datagen makes of every stored frame

            rates[dev.type] = 4 * n / seconds(run, dev)
        out[f"{scene} {ny}x{nx}"] = rates
        ratio = rates.get(device.type, 0) / rates["cpu"]
        rows.append([f"datagen {scene} {ny}x{nx}", ", ".join(f"{k} {v:.0f} frames/s" for k, v in rates.items()),
                     f"{ratio:.1f}x CPU"])
    report.timings["datagen_frames_per_s"] = out
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--quick", action="store_true", help="a tiny dataset, three losses, one repeat (the CPU test)")
    p.add_argument("--repeats", type=int, default=None, help="timing rounds (default 9, quick 1)")
    p.add_argument("--json", type=Path, default=RESULTS / "gpu_check.json")
    p.add_argument("--only", nargs="+", default=None, metavar="WORD",
                   help="run only the checks whose names contain one of these words (a partial rerun)")
    args = p.parse_args(argv)
    device = benchmark_device(args.device, "gpu_check")
    if device is None:
        return 2
    repeats = args.repeats or (1 if args.quick else 9)
    started = time.perf_counter()
    report = Report(args.only)
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = tmp / "data"
        make_dataset(root, args.quick)
        store, random_ones = random_trunks(WeightStore(default_dirs(), dict(CATALOG)), tmp)
        store = random_lsim(tmp, store)
        for task in ("ae", "sr", "sol"):
            for loss in (QUICK_LOSSES if args.quick else LOSSES):
                cell = make_cell(root, task, loss, args.device, args.quick)
                report.check(f"train step {task} {cell.loss_spec.label}",
                             lambda cell=cell: check_training_step(cell, store, device))
        report.check("SOL rollout equals the CPU's", lambda: check_sol_rollout(root, device, args.quick, report))
        report.check("DDP cell, world size 1", lambda: check_ddp(root, device, args.quick, tmp))
        report.check("SOL cell with cuda_graph", lambda: check_graph_cell(root, device, args.quick, tmp, report))
        report.check("packed SOL cells", lambda: check_packed_cells(root, device, args.quick, tmp, report))
        report.check("pressure solve", lambda: check_pressure(device, report, args.quick))
        report.check("SOL step times", lambda: rows.extend(sol_step_times(root, store, device, args.quick, repeats,
                                                                          report)) or "timed")
        report.check("datagen rates", lambda: rows.extend(datagen_rates(device, args.quick, report)) or "timed")
        # last: a capture that fails can leave the device's random generator unusable for what would follow
        report.check("SOL rollout as one CUDA graph (probe)", lambda: probe_sol_graph(root, device, args.quick, report))
        report.check("SOL training step as one CUDA graph (probe)",
                     lambda: probe_sol_train_graph(root, device, args.quick, store, report))
    elapsed = time.perf_counter() - started
    payload = {"benchmark": "gpu_check", "machine": machine(), "device": str(device), "quick": args.quick,
               "repeats": repeats, "random_weights": random_ones, "seconds": elapsed, "checks": report.checks,
               "timings": report.timings}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1))
    failed = [c for c in report.checks if not c["ok"]]
    print()
    print(table(["check", "result", "s"], [[c["check"], "ok" if c["ok"] else "FAIL", f"{c['seconds']:.1f}"]
                                           for c in report.checks]))
    print()
    if rows:
        print(table(["timing", "value", "ratio"], rows))
    print(f"\n{len(report.checks) - len(failed)} passed, {len(failed)} failed on {payload['machine']['gpu'] or 'CPU'} "
          f"in {elapsed:.0f} s; wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
