"""Bad sweep files: exit non-zero with one short paragraph naming the file, key and value; submit nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

CASES = {
    "missing_file": (None, ["no such sweep file"]),
    "invalid_yaml": ("name: x\ncheck: {tasks: 4\n", ["not valid YAML", "line"]),
    "unknown_key": ("name: x\ncheck: {tasks: 4, taskz: 5}\n", ["unknown key 'check.taskz'"]),
    "wrong_type": ("name: x\ncheck: {tasks: four}\n", ["key 'check.tasks' has value 'four'", "integer"]),
    "unknown_top_level_stage": ("name: x\ntrian: {}\n", ["unknown key 'trian'"]),
    "not_a_mapping": ("- name: x\n", ["expected a mapping"]),
    "bad_name": ("name: 'has space'\n", ["key 'name' has value 'has space'"]),
    # hostile input (issue: nothing crashes)
    "random_bytes": (b"\xa9\x00\xff\xfe name: x\n", ["not UTF-8 text (byte 0, line 1"]),
    "alias_bomb": ("name: x\na: &a [x, x, x, x, x, x, x, x, x]\n"
                   + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
                   ["expands to more than 100000 values"]),
    "infinite_number": ("name: x\ndatagen:\n  datasets:\n  - {scene: karman, resolution: [32, 16], factor: 2, "
                        "train_reynolds: [1.0e+5, .inf], steps: 10, keep_from: 2}\n",
                        ["key 'datagen.datasets.0.train_reynolds.1' has value inf: expected a finite number"]),
    "nan_learning_rate": ("name: x\ntrain: {tasks: [ae], datasets: [{scene: karman, resolution: [32, 16]}], "
                          "losses: [mse], settings: {lr: .nan}}\n", ["key 'train.settings.lr' has value nan"]),
    "dataset_task_not_in_the_stage": ("name: x\ntrain: {tasks: [ae], losses: [mse], datasets: [{scene: karman, "
                                      "resolution: [32, 16], tasks: [sr]}]}\n",
                                      ["datasets.0.tasks names sr, which train.tasks (ae) does not list"]),
    "dataset_setting_unknown": ("name: x\ntrain: {tasks: [ae], losses: [mse], datasets: [{scene: karman, "
                                "resolution: [32, 16], settings: {variabel: marker}}]}\n",
                                ["train.datasets.0.settings", "variabel"]),
    "deep_nesting": ("name: x\ncheck: " + "[" * 5000 + "]" * 5000 + "\n", ["nested more than 64 levels deep"]),
    "huge_file": ("name: x\n" + "#" * (1 << 20) + "\n", ["too large for a sweep file"]),
    "pattern_keeps_its_case": ("name: 'Ünïcode name'\n",
                               ["String should match pattern '^[A-Za-z0-9][A-Za-z0-9_.-]*$'"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_sweep_exits_with_short_error_and_submits_nothing(case, tmp_path, launch_cli):
    text, expected = CASES[case]
    path = tmp_path / f"{case}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    run_dir = tmp_path / "run"
    res = launch_cli(str(path), "--backend", "local", "--out", str(run_dir))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert str(path) in res.stderr
    for fragment in expected:
        assert fragment in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not run_dir.exists(), "nothing may be created or submitted"


def test_unwritable_run_directory_is_refused_before_submission(tmp_path, launch_cli):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: x\ncheck: {tasks: 1}\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = launch_cli(str(sweep), "--backend", "local", "--out", str(blocker / "run"))
    assert res.returncode == 2 and "not writable" in res.stderr and "Traceback" not in res.stderr


def test_status_of_a_directory_without_a_manifest_says_so(tmp_path, status_cli):
    res = status_cli(str(tmp_path))
    assert res.returncode == 2 and "no manifest.json" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("module", ["hpc.launch", "hpc.status"])
def test_every_entry_point_has_help(module):
    from conftest import run_module

    res = run_module(module, "--help")
    assert res.returncode == 0 and "usage:" in res.stdout


def test_command_line_overrides_are_applied_validated_and_recorded_in_the_run(tmp_path, launch_cli):
    import json

    import yaml

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: x\ncheck: {tasks: 4}\n")
    run_dir = tmp_path / "run"
    res = launch_cli(str(sweep), "check.tasks=2", "resources.time_min=5", "--backend", "local", "--out", str(run_dir))
    assert res.returncode == 0, res.stderr
    manifest = json.loads((run_dir / "manifest.json").read_text())
    launch = manifest["launches"][-1]
    assert launch["overrides"] == ["check.tasks=2", "resources.time_min=5"]
    probes = next(g for g in launch["groups"] if g["name"] == "check.probe")
    assert len(probes["tasks"]) == 2 and probes["resources"]["time_min"] == 5
    text = (run_dir / "sweep.yaml").read_text()
    assert text.startswith("# command-line override: check.tasks=2\n")
    assert yaml.safe_load(text)["check"]["tasks"] == 2
    from hpc.spec import load_sweep

    assert load_sweep(run_dir / "sweep.yaml").check.tasks == 2  # the record reloads as a sweep file


@pytest.mark.parametrize("override,expected", [
    ("check.tasks=-1", "key 'check.tasks' has value -1: Input should be greater than or equal to 1 (set on the "
                       "command line: check.tasks=-1)"),
    ("check.taskz=3", "unknown key 'check.taskz' (set on the command line: check.taskz=3)"),
    ("check.tasks=[1", "command-line override 'check.tasks=[1': its value is not valid YAML"),
    ("check.tasks.deeper=1", "'check.tasks' holds a single value, not keys"),
    ("tasks", "command-line override 'tasks' is not KEY=VALUE"),
])
def test_a_bad_override_is_refused_with_one_paragraph_naming_it(override, expected, tmp_path, launch_cli):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: x\ncheck: {tasks: 4}\n")
    res = launch_cli(str(sweep), override, "--dry-run", "--out", str(tmp_path / "run"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert expected in res.stderr and str(sweep) in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


HEAVY = ("torch", "phiml", "phi", "xarray", "ray", "lpips", "torchvision", "scipy")


@pytest.mark.parametrize("sweep", ["sweeps/sol_all_losses.yaml", "sweeps/tune_vgg_layers.yaml",
                                   "sweeps/combined_plume.yaml", "sweeps/datagen_plume_x256.yaml"])
def test_validation_and_dry_run_import_no_runtime(sweep, tmp_path):
    """Sweep schemas and planning load without torch, phiml, xarray or ray (a dry run takes a fraction of a
    second, and a login node need not have CUDA libraries that load); nor submitit, and no zarr while the
    sweep's stores do not exist yet (run from an empty directory, as on a fresh login node)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    code = ("import io, contextlib, sys\nfrom hpc.launch import launch\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    launch({str(root / sweep)!r}, dry_run=True, "
            f"out={str(tmp_path / 'r')!r})\nprint([m for m in {HEAVY + ('submitit', 'zarr')!r} if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout


def test_status_imports_no_runtime(tmp_path, launch_cli):
    import subprocess
    import sys

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: x\ncheck: {tasks: 1}\n")
    assert launch_cli(str(sweep), "--backend", "local", "--out", str(tmp_path / "run")).returncode == 0
    code = (f"import sys\nfrom hpc.status import render\nrender(__import__('pathlib').Path({str(tmp_path / 'run')!r}))\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout


def test_user_error_escapes_controls_bidi_and_newlines_so_the_message_stays_one_printable_paragraph():
    from fluidperc.errors import UserError

    err = UserError("unknown scene '\n\n'; also '\u202eevil\u200b' and '\x1b[31mred\x00'")
    assert str(err) == "unknown scene '\\n\\n'; also '\\u202eevil\\u200b' and '\\x1b[31mred\\x00'"
    assert str(err).isprintable()


def test_user_error_cuts_long_quoted_values_and_runs_with_an_ellipsis_and_reads_the_same_when_wrapped_again():
    from fluidperc.errors import MAX_MESSAGE, MAX_QUOTED, MAX_RUN, UserError, one_paragraph

    quoted = UserError("name 'a " + "b " * 400 + "z' is too long; the sweep's key, don't")
    value = str(quoted).split("'")[1]
    assert len(value) == MAX_QUOTED and "…" in value and value.startswith("a b") and value.endswith("z")
    assert str(quoted).endswith("is too long; the sweep's key, don't")  # apostrophes are not quotes
    run = str(UserError("path /" + "p" * 5000 + " is missing"))
    assert max(len(word) for word in run.split()) == MAX_RUN and run.endswith(" is missing")
    assert len(str(UserError("x " * 10000))) == MAX_MESSAGE
    for text in (str(quoted), run):
        assert one_paragraph(text) == text
        assert str(UserError(f"wrapped: {text}")) == f"wrapped: {text}"
