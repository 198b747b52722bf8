"""submitit against the real local Slurm cluster: the behaviours the launcher relies on."""

from __future__ import annotations

import subprocess
import time

import pytest
import submitit

pytestmark = pytest.mark.slurm


def _executor(tmp_path, **params):
    ex = submitit.SlurmExecutor(folder=tmp_path / "logs")
    ex.update_parameters(time=5, cpus_per_task=1, **params)
    return ex


def test_submitit_job_returns_its_result(slurm_cluster, tmp_path):
    job = _executor(tmp_path).submit(lambda a, b: a * b, 6, 7)
    assert job.result() == 42
    # slurmctld hands accounting records to slurmdbd asynchronously: right after bring-up sacct may lag.
    deadline = time.time() + 30
    while job.state == "UNKNOWN" and time.time() < deadline:
        time.sleep(1)
        job.watcher.update()
    assert job.state == "COMPLETED"


def test_four_task_array_returns_each_result_in_order(slurm_cluster, tmp_path):
    ex = _executor(tmp_path)
    jobs = ex.map_array(lambda x: x**2, [1, 2, 3, 4])
    assert len({j.job_id.split("_")[0] for j in jobs}) == 1, "map_array must submit ONE array"
    assert [j.result() for j in jobs] == [1, 4, 9, 16]


def test_python_exception_in_a_job_surfaces_with_its_message(slurm_cluster, tmp_path):
    def boom():
        raise ValueError("the flux capacitor is empty")

    job = _executor(tmp_path).submit(boom)
    with pytest.raises(submitit.core.utils.FailedJobError, match="the flux capacitor is empty"):
        job.result()


@pytest.mark.timeout(120)
def test_scancelled_job_is_reported_as_uncompleted_not_waited_on_forever(slurm_cluster, tmp_path):
    job = _executor(tmp_path).submit(time.sleep, 300)
    deadline = time.time() + 30
    while job.state not in ("RUNNING",) and time.time() < deadline:
        time.sleep(0.5)
    subprocess.run(["scancel", job.job_id], check=True)
    with pytest.raises(submitit.core.utils.UncompletedJobError):
        job.result()
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "State", "-j", job.job_id], capture_output=True, text=True)
    assert out.stdout.startswith("CANCELLED")
