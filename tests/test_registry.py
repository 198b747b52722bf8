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
