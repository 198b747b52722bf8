"""The ``check`` stage: probe every array slot (host, devices, a timed matmul), then summarise in one job.

Run it before a big sweep to see that jobs start, find torch and the GPUs you asked for, and write results.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from fluidperc.atomic import write_text
from hpc.plan import JobGroup, Task
from hpc.spec import Sweep


def host_address(host: str) -> str:
    """The IPv4 address this host's name resolves to: what DDP (gloo, NCCL's bootstrap) and Ray use to reach it.
    A name that resolves to loopback, or not at all, breaks multi-node jobs, so the summary flags it."""
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET)[0][4][0]
    except OSError:
        return "unresolved"


def probe(index: int, out_dir: str, matmul_size: int, sleep_s: float, fail: bool) -> dict:
    import torch

    if fail:
        raise RuntimeError(f"probe {index} failed on purpose (listed in check.fail_tasks)")
    if sleep_s:
        time.sleep(sleep_s)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(matmul_size, matmul_size, device=device)
    torch.mm(a, a)
    start = time.perf_counter()
    reps = 5
    for _ in range(reps):
        torch.mm(a, a)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / reps
    result = {
        "index": index,
        "host": socket.gethostname(),
        "address": host_address(socket.gethostname()),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "cpus": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "device": device,
        "gpus": torch.cuda.device_count(),
        "matmul_gflops": 2 * matmul_size**3 / seconds / 1e9,
    }
    path = Path(out_dir) / f"probe-{index}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)  # atomic: a half-written probe never counts as done
    return result


def summarize(out_dir: str, n: int) -> dict:
    probes = [json.loads((Path(out_dir) / f"probe-{i}.json").read_text()) for i in range(n)]
    summary = {
        "probes": n,
        "hosts": sorted({p["host"] for p in probes}),
        "addresses": {p["host"]: p.get("address", "unknown") for p in sorted(probes, key=lambda p: p["host"])},
        "devices": sorted({p["device"] for p in probes}),
        "median_matmul_gflops": sorted(p["matmul_gflops"] for p in probes)[n // 2],
    }
    bad = sorted(h for h, a in summary["addresses"].items() if a == "unresolved" or a.startswith("127."))
    if bad and len(summary["hosts"]) > 1:
        summary["warning"] = (f"host(s) {', '.join(bad)} resolve to loopback or to nothing: a job spanning nodes "
                              "(DDP, Ray) cannot reach them by name; fix /etc/hosts or DNS, or set "
                              "GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME to the node's interface")
    write_text(Path(out_dir) / "summary.json", json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


def plan(sweep: Sweep, run_dir: Path, dry_run: bool = False) -> list[JobGroup]:
    spec = sweep.check
    assert spec is not None
    out_dir = run_dir / "check"
    resources = sweep.resources.merged(spec.resources)
    probes = [
        Task(
            label=f"probe-{i}",
            args=(i, str(out_dir), spec.matmul_size, spec.sleep_s, i in spec.fail_tasks),
            done=(out_dir / f"probe-{i}.json").is_file(),
            output=str((out_dir / f"probe-{i}.json").resolve()),
        )
        for i in range(spec.tasks)
    ]
    summary = Task(label="summary", args=(str(out_dir), spec.tasks), done=(out_dir / "summary.json").is_file(),
                   output=str((out_dir / "summary.json").resolve()))
    return [
        JobGroup("check.probe", "check", probe, probes, resources, progress={"unit": "probes"}),
        JobGroup("check.summary", "check", summarize, [summary], resources.merged(None), after=["check.probe"],
                 progress={"unit": "summary written"}),
    ]
