"""The one Registry class behind the loss, scene, task and source tables: installed packages' entry points are
loaded on first use, after the built-in entries; a broken one names itself; a name cannot mean two things."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fluidperc.errors import UserError


def _install(site: Path, dist: str, group: str, module: str, source: str) -> None:
    """A minimal installed distribution: importlib.metadata finds its entry points through the .dist-info."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{dist} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(source))


def _python(site: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_an_installed_task_and_source_are_listed_after_the_built_in_entries(tmp_path):
    _install(tmp_path, "denoiselab", "fluidperc.tasks", "denoiselab", """
        from fluidperc.tasks import TaskEntry, register_task
        register_task(TaskEntry("denoise", "denoiselab:Denoise", "a plugin task"))
    """)
    _install(tmp_path, "h5lab", "fluidperc.sources", "h5lab", """
        from fluidperc.datasets.sources import SourceEntry, register_source
        register_source(SourceEntry("h5", "h5lab:open_h5", "a plugin reader"))
    """)
    out = _python(tmp_path, """
        from fluidperc.datasets.sources import sources
        from fluidperc.tasks import tasks
        print(list(tasks()), list(sources()))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['ae', 'sr', 'sol', 'denoise'] ['xarray', 'npz', 'h5']"


def test_an_import_without_source_finds_its_reader_through_the_table(tmp_path):
    """Each reader says whether it can open a path (xarray's guess_can_open): a plugin's reader claims its files
    before the built-in ones, which claim Zarr stores, NetCDF files and .npz folders; nothing claims a text file."""
    _install(tmp_path, "h5lab", "fluidperc.sources", "h5lab", """
        from fluidperc.datasets.sources import SourceEntry, register_source
        register_source(SourceEntry("h5", "h5lab:open_h5", "a plugin reader", can_open="h5lab:is_h5"))
        def is_h5(path):
            return path.suffix == ".h5"
    """)
    data = tmp_path / "data"
    (data / "run.zarr").mkdir(parents=True)
    (data / "v3").mkdir()
    (data / "v3" / "zarr.json").write_text("{}")
    (data / "frames" / "sim0").mkdir(parents=True)
    (data / "frames" / "sim0" / "f0.npz").write_bytes(b"")
    (data / "a.nc").write_bytes(b"CDF\x01rest")
    (data / "b.h5").write_bytes(b"\x89HDF\r\n\x1a\nrest")
    (data / "notes.txt").write_text("not data")
    out = _python(tmp_path, f"""
        from pathlib import Path
        from fluidperc.datasets.sources import default_source, sources
        root = Path({str(data)!r})
        for p in ("run.zarr", "v3", "frames", "a.nc", "b.h5", "notes.txt"):
            claims = [e.name for e in sources().values() if e.claims(root / p)]
            print(p, default_source(root / p), ",".join(claims) or "-")
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["run.zarr xarray xarray", "v3 xarray xarray", "frames npz npz",
                                       "a.nc xarray xarray", "b.h5 h5 xarray,h5", "notes.txt xarray -"]


def test_a_broken_installed_scene_plugin_names_itself(tmp_path):
    _install(tmp_path, "cavitylab", "fluidperc.scenes", "cavitylab", "import not_a_module_anywhere\n")
    out = _python(tmp_path, """
        from fluidperc.errors import UserError
        from fluidperc.sim.scenes import scenes
        try:
            scenes()
        except UserError as err:
            print(err)
    """)
    assert out.returncode == 0, out.stderr
    assert ("the installed plugin 'cavitylab' (cavitylab, entry point group fluidperc.scenes) fails to load: "
            "ModuleNotFoundError: No module named 'not_a_module_anywhere'") in out.stdout


def test_a_name_registered_twice_with_another_implementation_is_refused():
    from fluidperc.tasks import TaskEntry, register_task, task_entry

    with pytest.raises(UserError, match=r"task 'sr' is registered twice \(fluidperc.tasks.sr:SuperResolution, "
                                        r"mylab:Other\); rename one"):
        register_task(TaskEntry("sr", "mylab:Other"))
    assert register_task(task_entry("ae")) == task_entry("ae")  # the same entry again is harmless
    with pytest.raises(UserError, match="unknown task 'denoise'; expected one of ae, sr, sol"):
        task_entry("denoise")


def test_a_plugin_loss_whose_build_cannot_be_imported_or_called_as_build_spec_stats_store_names_the_loss():
    from fluidperc.losses import LossEntry, get_entry
    from fluidperc.losses.base import MSELoss
    from fluidperc.losses.spec import MSESpec

    class NoSpecLoss(MSELoss):  # keeps nn.Module's __init__: the class itself is no build(spec, stats, store)
        pass

    def two_arguments(spec, stats):
        return MSELoss()

    with pytest.raises(UserError, match=r"loss 'bad_call': its build '.*NoSpecLoss' cannot be called as "
                                        r"build\(spec, stats, store\) \(NoSpecLoss\(\) takes no arguments: its "
                                        r"__init__ is torch.nn.Module's\)"):
        LossEntry("bad_call", MSESpec, NoSpecLoss).builder()
    with pytest.raises(UserError, match=r"loss 'two': its build '.*two_arguments' cannot be called as build\(spec, "
                                        r"stats, store\) \(too many positional arguments\)"):
        LossEntry("two", MSESpec, two_arguments).builder()
    with pytest.raises(UserError, match=r"loss 'bad_ref': its build 'fluidperc.losses.base:NoSuchLoss' cannot be "
                                        r"imported \(AttributeError: .*NoSuchLoss"):
        LossEntry("bad_ref", MSESpec, "fluidperc.losses.base:NoSuchLoss").builder()
    for name in ("mse", "mae", "lsim", "vgg", "lpips", "sum"):  # every built-in build passes the check
        assert callable(get_entry(name).builder())
