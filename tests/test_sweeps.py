"""Every sweep file in sweeps/ validates and plans (--dry-run) without creating anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_file_dry_runs(sweep: Path, tmp_path, launch_cli):
    import yaml

    cwd = tmp_path
    searches = (yaml.safe_load(sweep.read_text()).get("train") or {}).get("settings_from") or []
    for search in [searches] if isinstance(searches, str) else searches:
        if Path(search).is_absolute():
            continue
        # a committed search (study/...), read from the checkout's root
        if not (ROOT / search).exists():
            pytest.skip(f"{sweep.name} trains with what the search {search} chose, and that search is not published "
                        "yet (make study-v2 publishes it)")
        from hpc.stages.train import unfinished_search_cells

        if unfinished := unfinished_search_cells(ROOT / search):
            pytest.skip(f"{sweep.name} trains with what the search {search} chose, and {len(unfinished)} of that "
                        "search's cells are unfinished (make study-v2 goes on with it; settings_from refuses it "
                        "until then, as tests/test_protocol.py checks)")
        cwd = ROOT
    res = launch_cli(str(sweep), "--dry-run", "--out", str(tmp_path / "run"), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert "dry run: nothing is submitted" in res.stdout and "submission(s)" in res.stdout
    assert list(tmp_path.iterdir()) == [], "a dry run must not create anything"


def test_study_cpu_sweep_plans_sol_on_karman_and_ae_sr_on_both_scenes_with_the_plume_on_its_marker():
    """sweeps/study_cpu.yaml (RESULTS.md's run): per-dataset tasks and settings pick the cells the study reports."""
    from hpc.spec import load_sweep
    from hpc.stages.train import cells

    sweep = load_sweep(ROOT / "sweeps" / "study_cpu.yaml")
    planned = cells(sweep)
    by_key = {(c.task, c.scene, c.loss_spec.label, c.seed): c for c in planned}
    assert len(by_key) == len(planned) == 5 * 6 * 3  # (sol, sr, ae on karman; sr, ae on plume) x 6 losses x 3 seeds
    assert {(t, s) for t, s, _, _ in by_key} == {("sol", "karman"), ("sr", "karman"), ("ae", "karman"),
                                                ("sr", "plume"), ("ae", "plume")}
    assert {c.settings.variable for c in planned if c.scene == "plume"} == {"marker"}
    assert {c.settings.variable for c in planned if c.scene == "karman"} == {"velocity"}
    assert {c.settings_source for c in planned if c.scene == "plume" and c.task == "ae"} == {
        "train.task_settings.ae + train.datasets.1.settings"}
    assert {label for _, _, label, _ in by_key} == {"mse", "mae", "lsim", "mse+0.01*lsim", "vgg-relu3_3", "lpips-vgg"}
    assert {c.seed for c in planned} == {0, 1, 2}


def test_study_cpu_tune_plans_one_trial_per_lambda_of_the_grid_inside_the_composite_loss(tmp_path, launch_cli):
    """The trial count of a plan multiplies the grids nested in a loss spec (here the sum's lsim weight)."""
    res = launch_cli(str(ROOT / "sweeps" / "study_cpu_tune.yaml"), "--dry-run", "--out", str(tmp_path / "run"),
                     cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Ray on 1 node(s), 4 trial(s) x <= 6 epochs" in res.stdout
