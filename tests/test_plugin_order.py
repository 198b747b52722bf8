"""Plugins are imported before any field is validated, whatever the order in which a model declares its fields."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import ROOT

MODELS = textwrap.dedent('''
    import sys
    from typing import Annotated
    from pydantic import AfterValidator, BaseModel, ValidationError, model_validator
    from fluidperc.plugins import import_plugins_first
    from fluidperc.tasks import check_task

    class TaskBeforePlugins(BaseModel):  # pydantic validates fields in declaration order: task first
        task: Annotated[str, AfterValidator(check_task)]
        plugins: tuple[str, ...] = ()

    class TaskBeforePluginsImportedFirst(TaskBeforePlugins):
        @model_validator(mode="before")
        @classmethod
        def _plugins_first(cls, data):
            return import_plugins_first(data)

    raw = {"task": "late", "plugins": ["late_task_plugin"]}
    model = sys.argv[1]
    try:
        print(globals()[model].model_validate(raw).task)
    except ValidationError as err:
        print("refused:", err.errors()[0]["msg"])
''')


def _validate(tmp_path, model: str) -> str:
    (tmp_path / "late_task_plugin.py").write_text(
        "from fluidperc.tasks import TaskEntry, register_task\n"
        "register_task(TaskEntry('late', 'late_task_plugin:Nothing', 'a task only this plugin knows'))\n")
    script = tmp_path / "models.py"
    script.write_text(MODELS)
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(script), model], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_field_declared_before_plugins_still_sees_the_plugins_task(tmp_path):
    assert _validate(tmp_path, "TaskBeforePluginsImportedFirst") == "late"


def test_without_the_before_validator_the_same_model_refuses_the_plugins_task(tmp_path):
    # what the models relied on before: the field order alone decided whether the plugin was imported in time
    assert _validate(tmp_path, "TaskBeforePlugins").startswith("refused: Value error, unknown task 'late'")


def test_the_sweep_and_the_cell_import_plugins_before_their_fields():
    from fluidperc.plugins import import_plugins_first
    from fluidperc.tasks.cell import CellConfig
    from hpc.spec import Sweep

    for model in (Sweep, CellConfig):
        before = [d for d in model.__pydantic_decorators__.model_validators.values() if d.info.mode == "before"]
        assert any(import_plugins_first.__name__ in d.func.__func__.__code__.co_names for d in before), model
