"""The tune stage's job: Ray up, the Tune driver, Ray down. Locally ``ray.init``; in a Slurm allocation every
task (one per node) runs this function: rank 0 starts the head and the driver, the others join as workers and
leave when the driver is done. Slurm ends every process of the job with it, so nothing outlives the allocation.
"""

from __future__ import annotations

import os
from pathlib import Path

import submitit

from fluidperc.tasks.cell import CellConfig
from hpc.spec import TuneStage
from hpc.tune import cluster
from hpc.tune.driver import run_tuner

JOIN_TIMEOUT_S = 600.0


def paths(stage: TuneStage, run_dir: Path) -> tuple[Path, Path]:
    """(Ray's temp dir, the run's auth token file)."""
    run_dir = Path(run_dir).resolve()
    temp = Path(stage.ray_temp_dir) if stage.ray_temp_dir else run_dir / "ray"
    return temp, run_dir / "tune" / "auth_token"


def _announce(run_dir: Path, url: str, host: str) -> None:
    text = (f"Ray dashboard: {url} on {host}. Watch it from your machine with\n"
            f"  ssh -N -L 8265:{url.split('//')[-1]} -J <login node> {host}\n"
            f"then open http://localhost:8265 and paste the token from {Path(run_dir).resolve() / 'tune' / 'auth_token'}\n")
    (Path(run_dir) / "tune" / "dashboard.txt").write_text(text)
    print(text, flush=True)


def _drive(stage: TuneStage, run_dir: Path, cell: CellConfig) -> str:
    from fluidperc.analysis.report import write_report  # matplotlib, torch: on the driver only

    out = run_tuner(stage, run_dir, cell)
    report = write_report(run_dir)
    print(f"tune results: {out}\nreport: {report}", flush=True)
    return str(out)


def run_local(stage: TuneStage, run_dir: Path, cell: CellConfig, cpus: int, gpus: int) -> str:
    temp, token = paths(stage, run_dir)
    with cluster.local_ray(temp, token, cpus, gpus, stage.dashboard_host, stage.dashboard_port) as url:
        _announce(run_dir, url, os.uname().nodename)
        return _drive(stage, run_dir, cell)


def run_in_allocation(stage: TuneStage, run_dir: Path, cell: CellConfig, rank: int, nodes: int, job_id: str,
                      cpus: int, gpus: int) -> str:
    """Rank 0: head + driver. Other ranks: a worker until the driver writes its done file."""
    run_dir = Path(run_dir).resolve()
    temp, token = paths(stage, run_dir)
    rendezvous = run_dir / "tune" / f"head-{job_id}.json"
    done = run_dir / "tune" / f"done-{job_id}.json"
    ip = cluster.node_address(nodes > 1)
    if rank != 0:
        head = cluster.wait_for_file(rendezvous, JOIN_TIMEOUT_S, f"worker {rank}")  # the token exists by then
        os.environ.update(cluster.ray_env(token, multi_node=True))
        proc = cluster.start_node(False, ip, 0, cpus, gpus, {}, None, stage.dashboard_host, stage.dashboard_port,
                                  head_address=head["address"])
        try:
            cluster.wait_for_file(done, 7 * 24 * 3600.0, f"worker {rank}", alive=proc)
        finally:
            cluster.stop_node(proc)
        return "worker done"
    env = cluster.ray_env(token, multi_node=nodes > 1)
    os.environ.update(env)
    port = cluster.free_port(ip)
    proc = cluster.start_node(True, ip, port, cpus, gpus, env, temp, stage.dashboard_host, stage.dashboard_port)
    try:
        address = f"{ip}:{port}"
        cluster.wait_for_nodes(address, 1, JOIN_TIMEOUT_S)  # the head first, then tell the workers where it is
        cluster.write_json(rendezvous, {"address": address, "job_id": job_id})
        cluster.wait_for_nodes(address, nodes, JOIN_TIMEOUT_S)
        _announce(run_dir, f"http://{stage.dashboard_host}:{stage.dashboard_port}", os.uname().nodename)
        return _drive(stage, run_dir, cell)
    finally:
        import ray

        ray.shutdown()
        cluster.write_json(done, {"job_id": job_id})
        cluster.stop_node(proc)
        rendezvous.unlink(missing_ok=True)


class TuneJob(submitit.helpers.Checkpointable):
    """Requeued on preemption or timeout: the relaunched driver restores the experiment from RUN_DIR/tune/."""

    def __call__(self, stage_json: str, run_dir: str, cell_json: str, cpus: int, gpus: int) -> str:
        cell = CellConfig.model_validate_json(cell_json)  # first: it imports the sweep's plugins
        stage = TuneStage.model_validate_json(stage_json)
        env = submitit.JobEnvironment()
        if env.cluster == "slurm":
            return run_in_allocation(stage, Path(run_dir), cell, env.global_rank, env.num_nodes, str(env.job_id),
                                     cpus, gpus)
        return run_local(stage, Path(run_dir), cell, cpus, gpus)
