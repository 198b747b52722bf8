"""The tune stage: a search space is checked completely before Ray starts; ASHA over VGG layers runs on a local
Ray whose listeners (dashboard included) stay on loopback. Ray inside a Slurm job (head and worker on two nodes,
ending with the job, resumed by a relaunch) is tested in test_multinode.py."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from conftest import ROOT, VGG_LAYERS, check_tidy, tune_sweep
from hpc.tune.cluster import descendants, free_port

def cli(module: str, *args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


def ray_processes(run_dir: Path) -> list[str]:
    """Live Ray processes of this run (their command lines name its temp dir, or the short link to it) and any
    Ray worker (``ray::...``; tests run one Ray at a time)."""
    temp = (run_dir / "ray").resolve()
    markers = (str(temp), "fpray-" + hashlib.sha1(str(temp).encode()).hexdigest()[:12])
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines()
            if any(m in line for m in markers) or line.split(None, 1)[-1].startswith("ray::")]


def listeners_of(pids: set[int]) -> list[tuple[str, int]]:
    """(local address, pid) of every listening TCP socket those processes own, from `ss -ltnpH`."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        for pid in re.findall(r"pid=(\d+)", line):
            if int(pid) in pids:
                found.append((local, int(pid)))
    return found


# --- before Ray ----------------------------------------------------------------------------------------------
BAD_SPACES = {
    "loguniform_from_zero": ({"lr": {"loguniform": [0, 1.0e-2]}}, "needs lo > 0"),
    "yaml_reads_1e-4_as_text": ({"lr": {"loguniform": ["1e-4", "1e-2"]}}, "write 1.0e-4"),
    "unknown_hyper_parameter": ({"momentum": {"uniform": [0.1, 0.9]}}, "unknown hyper-parameter 'momentum'"),
    "bad_vgg_layer": ({"loss": {"choice": [{"name": "vgg", "layer": "relu5_3"}]}}, "invalid options for loss 'vgg'"),
    "empty_choice": ({"batch_size": {"choice": []}}, "needs a non-empty list"),
    "invalid_batch_size": ({"batch_size": {"choice": [4, 0]}}, "value 0 is not a valid batch_size"),
    "managed_setting": ({"steps": {"choice": [10, 20]}}, "set by the tune stage itself"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
@pytest.mark.parametrize("entry", ["hpc.launch", "hpc.tune"])
def test_invalid_search_space_fails_before_ray_starts(case, entry, tmp_path):
    space, fragment = BAD_SPACES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "tune": {
        "task": "ae", "dataset": {"scene": "karman", "resolution": [32, 16]}, "data_dir": str(tmp_path / "nodata"),
        "space": space}}))
    run_dir = tmp_path / "run"
    extra = ["--backend", "local"] if entry == "hpc.launch" else []
    res = cli(entry, str(path), "--out", str(run_dir), *extra, env={})
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert str(path) in res.stderr and "tune.space" in res.stderr and fragment in res.stderr
    assert not run_dir.exists(), "nothing may start: no run directory, no Ray"


def test_settings_the_tune_stage_owns_are_refused_in_tune_settings(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "bad", "tune": {
        "task": "ae", "dataset": {"scene": "karman", "resolution": [32, 16]}, "settings": {"steps": 50},
        "space": {"lr": {"choice": [1.0e-3]}}}}))
    res = cli("hpc.launch", str(path), "--dry-run", "--out", str(tmp_path / "run"), env={})
    assert res.returncode == 2 and "tune.settings" in res.stderr and "set by the tune stage" in res.stderr


def test_a_site_digest_file_with_a_malformed_digest_is_refused(tmp_path):
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps({"vgg16": "abc"}))
    res = cli("fluidperc.weights", "list", env={"FLUIDPERC_WEIGHTS_DIGESTS": str(digests)})
    assert res.returncode == 2 and str(digests) in res.stderr and "key 'vgg16' has value 'abc'" in res.stderr


def test_missing_vgg_weights_stop_the_tune_stage_before_ray(tmp_path, tune_env):
    sweep = tune_sweep(tmp_path / "t.yaml", tune_env["DATA_DIR"], VGG_LAYERS[:2], 2, free_port("127.0.0.1"))
    res = cli("hpc.launch", str(sweep), "--backend", "local", "--out", str(tmp_path / "run"),
              env={"FLUIDPERC_WEIGHTS": str(tmp_path / "empty"), "FLUIDPERC_WEIGHTS_DIGESTS": ""})
    assert res.returncode == 2 and "vgg16-397923af.pth" in res.stderr and "fluidperc.weights fetch vgg16" in res.stderr
    assert not (tmp_path / "run").exists()


# --- local Ray -------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.ray
def test_local_asha_sweep_over_vgg_layers_with_the_dashboard_on_loopback(tmp_path, tune_env):
    port = free_port("127.0.0.1")
    sweep = tune_sweep(tmp_path / "t.yaml", tune_env["DATA_DIR"], VGG_LAYERS, 4, port)
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **tune_env}
    proc = subprocess.Popen([sys.executable, "-m", "hpc.launch", str(sweep), "--backend", "local", "--out", str(run_dir)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "tune" / "dashboard.txt").exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "Ray did not come up"
            time.sleep(0.5)
        token = (run_dir / "tune" / "auth_token").read_text().strip()
        assert oct((run_dir / "tune" / "auth_token").stat().st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{port}/api/version"
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(url, timeout=10)
        assert denied.value.code == 401, "the dashboard's API must want the run's token"
        answer = urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}),
                                        timeout=10)
        assert json.loads(answer.read())["ray_version"]
        ours = set(descendants(proc.pid))
        listening = listeners_of(ours)
        assert any(addr.endswith(f":{port}") for addr, _ in listening), listening
        assert listening and all(addr.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")
                                 for addr, _ in listening), listening
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-3000:]
    assert "best configuration per loss (Tune)" in out
    ds = xr.open_zarr(run_dir / "tune.zarr").load()
    check_tidy(ds, 4, 4)
    assert sorted(ds.loss.values) == [f"vgg-{layer}" for layer in VGG_LAYERS]
    assert (ds.status == "stopped early").any(), "ASHA (reduction factor 2) stops the weaker trials"
    report = (run_dir / "report" / "report.md").read_text()
    assert "Hyper-parameter search" in report and "vgg-relu" in report and (run_dir / "report" / "tune_history.png").exists()
    assert not ray_processes(run_dir), "Ray must be shut down with the job"
    again = cli("hpc.launch", str(sweep), "--backend", "local", "--out", str(run_dir), env=tune_env)
    assert again.returncode == 0 and "nothing to submit" in again.stdout


# --- a tune run's best trials as a train stage's settings ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.ray
def test_train_settings_from_a_tune_run_take_each_losss_best_trial_and_hand_overrides_win(tmp_path, tune_env):
    """A real tiny search over a sum's term weight (a domain inside a list) and the learning rate; then a train
    stage that names the run takes, per loss, the best trial's lr and loss spec."""
    from fluidperc.analysis.tuning import load_tune
    from fluidperc.losses import parse_loss_spec
    from hpc.spec import load_sweep
    from hpc.stages.train import cells

    searched_sum = {"name": "sum", "terms": [{"weight": 1.0, "loss": "mse"},
                                             {"weight": {"loguniform": [0.01, 1.0]}, "loss": "mae"}]}
    tune = {"name": "tune_sum", "resources": {"cpus_per_task": 2, "time_min": 20},
            "tune": {"data_dir": tune_env["DATA_DIR"], "task": "ae", "dataset": {"scene": "karman", "resolution": [32, 16]},
                     "settings": {"batch_size": 4, "val_samples": 4},
                     "space": {"loss": searched_sum, "lr": {"loguniform": [3.0e-4, 3.0e-3]}},
                     "num_samples": 3, "epochs": 2, "epoch_steps": 2, "trial_resources": {"cpus": 1},
                     "dashboard_port": free_port("127.0.0.1")}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune, sort_keys=False))
    run_dir = tmp_path / "tuned"
    res = cli("hpc.launch", str(tmp_path / "tune.yaml"), "--backend", "local", "--out", str(run_dir), env=tune_env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    ds = load_tune(run_dir)
    weights = [json.loads(s)["terms"][1]["weight"] for s in ds.loss_spec.values]
    assert len(set(weights)) == 3 and all(0.01 <= w <= 1.0 for w in weights), "Ray sampled the weight in the list"
    best = int(np.nanargmin(ds.final_val_rel_l2.values))
    report = (run_dir / "report" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| trial | loss |"))
    assert header.startswith("| trial | loss | lr | status | val_rel_l2 @ ") and header.endswith("@ 4 steps |"), header
    rows = [line for line in report.splitlines() if line.startswith("| trial-")]
    assert len(rows) == 3 and rows[0].startswith(f"| {ds.trial.values[best]} |"), "every trial, the best first"
    published = cli("fluidperc.analysis", str(run_dir), "--out", str(tmp_path / "published"), env=tune_env)
    assert published.returncode == 0 and (tmp_path / "published" / "report.md").read_text() == report, published.stderr

    train = {"name": "tr", "train": {
        "data_dir": tune_env["DATA_DIR"], "tasks": ["ae", "sr"],
        "datasets": [{"scene": "karman", "resolution": [32, 16], "high_resolution": [64, 32]}],
        "losses": [{"name": "sum", "terms": [{"weight": 1.0, "loss": "mse"}, {"weight": 0.5, "loss": "mae"}]}, "mse"],
        "settings": {"lr": 1.0e-2}, "settings_from": str(run_dir), "loss_settings": {"mse": {"lr": 5.0e-4}}}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))
    by_key = {(c.task, c.loss_spec.name): c for c in cells(load_sweep(tmp_path / "train.yaml"))}
    tuned = by_key[("ae", "sum")]
    assert tuned.settings.lr == pytest.approx(float(ds.lr.values[best]))
    best_spec = parse_loss_spec(json.loads(str(ds.loss_spec.values[best])))
    assert tuned.loss_spec == best_spec and tuned.loss_spec.terms[1].weight != 0.5, "the tuned weight replaces 0.5"
    assert f"trial {ds.trial.values[best]}" in tuned.settings_source and str(run_dir) in tuned.settings_source
    assert by_key[("ae", "mse")].settings.lr == 5.0e-4
    assert "no finished trial for mse" in by_key[("ae", "mse")].settings_source
    assert "train.loss_settings.mse" in by_key[("ae", "mse")].settings_source
    # the tune run was for ae: sr cells keep the stage's settings
    assert by_key[("sr", "sum")].settings.lr == 1.0e-2 and by_key[("sr", "sum")].settings_source == "train.settings"


@pytest.mark.parametrize("edit, message", [
    ({"settings_from": "nowhere"}, "train.settings_from names 'nowhere', which holds no tune.zarr"),
    ({"loss_settings": {"lsim": {"lr": 1.0e-3}}}, "loss_settings has key 'lsim', which is not the label of a loss"),
    ({"loss_settings": {"mse": {"lr": -1}}}, "loss_settings.mse.lr: Input should be greater than 0"),
], ids=["no-tune-run", "unknown-label", "bad-value"])
def test_bad_settings_from_or_loss_settings_are_refused_naming_the_key(edit, message, tmp_path, launch_cli):
    train = {"name": "tr", "train": {"data_dir": str(tmp_path), "tasks": ["ae"], "datasets": [{"scene": "karman",
             "resolution": [32, 16]}], "losses": ["mse"], **edit}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train, sort_keys=False))
    res = launch_cli(str(tmp_path / "train.yaml"), "--dry-run")
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr
