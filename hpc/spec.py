"""Sweep files: pydantic models (unknown keys forbidden) and the loader that turns mistakes into one paragraph.

A sweep file names the work (stage sections such as ``check``) and default cluster resources; each stage may
override resources field by field. Later stages add their own sections here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from fluidperc.datasets.import_spec import ImportSpec
from fluidperc.datasets.spec import DatasetSpec
from fluidperc.losses import parse_loss_spec
from fluidperc.losses.grids import expand_loss, expand_losses
from fluidperc.plugins import ImportsPluginsFirst, import_plugins
from fluidperc.sim.scenes import check_scene
from fluidperc.tasks import check_task
from fluidperc.tasks.settings import EvalSettings, TrainSettings
from hpc import overrides as ov
from hpc.errors import UserError
from hpc.space import MANAGED, validate_space

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
TaskName = Annotated[str, AfterValidator(check_task)]  # a registered task (fluidperc.tasks): ae, sr, sol, ...


def _as_value_error(check, *args: Any, **kwargs: Any) -> None:
    """Run a fluidperc check inside a pydantic validator: its UserError becomes the ValueError pydantic reports
    with the file, key and value."""
    try:
        check(*args, **kwargs)
    except UserError as err:
        raise ValueError(str(err)) from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Resources(Strict):
    """What one job of a stage asks the scheduler for. The local backend honours cpus and time only."""

    partition: str | None = Field(None, description="Slurm partition (sbatch --partition); default: the cluster's")
    account: str | None = Field(None, description="Slurm account the jobs are charged to (--account)")
    qos: str | None = Field(None, description="Slurm quality of service (--qos)")
    constraint: str | None = Field(None, description="node features a job needs (--constraint, e.g. a100)")
    time_min: int = Field(60, ge=1, description="wall-clock limit per job, minutes")
    nodes: int = Field(1, ge=1, description="nodes per job (DDP across nodes, a Ray cluster)")
    tasks_per_node: int = Field(1, ge=1, description="processes per node (DDP ranks)")
    cpus_per_task: int = Field(1, ge=1, description="CPUs per process (its torch threads)")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per node; each DDP rank takes the one of its local rank")
    mem_gb: float | None = Field(None, gt=0, description="memory per node in GB (default: the partition's)")
    array_parallelism: int = Field(64, ge=1, description="array tasks running at once")
    signal_s: int | None = Field(None, ge=5, le=3600, description="seconds before the time limit at which Slurm "
                                 "asks a training job to checkpoint and requeue itself (default: 90, or a third of a "
                                 "limit under 4.5 minutes)")
    max_requeues: int = Field(20, ge=0, le=1000, description="how often a training job that reaches its time limit "
                              "is checkpointed and requeued before it counts as failed")
    setup: list[str] = Field(default_factory=list, description="shell lines run before the job (module load ...)")
    extra_sbatch: dict[str, str | int | bool] = Field(default_factory=dict, description="any other sbatch option")

    @model_validator(mode="after")
    def _signal_inside_limit(self) -> "Resources":
        if self.signal_s is not None and self.signal_s >= self.time_min * 60:
            raise ValueError(f"signal_s {self.signal_s} must be shorter than the time limit ({self.time_min} min = "
                             f"{self.time_min * 60} s), or the job is asked to stop as soon as it starts")
        return self

    @property
    def signal_delay_s(self) -> int:
        """When Slurm signals before the limit: submitit's 90 s, or a third of a short limit (Slurm may signal up
        to a minute early, so a short job needs the signal late enough to make progress first)."""
        if self.signal_s is not None:
            return min(self.signal_s, self.time_min * 60 - 1)  # merged stage resources skip the validator
        return min(90, self.time_min * 60 // 3)

    def merged(self, override: "Resources | None") -> "Resources":
        """These defaults with the fields that ``override`` sets explicitly."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


class CheckStage(Strict):
    """Cluster check: an array of probes (host, devices, a timed matmul) and one dependent summary job."""

    tasks: int = Field(4, ge=1, le=10000, description="probes in the array, one per array task")
    matmul_size: int = Field(256, ge=8, le=16384, description="side of the square matrices each probe multiplies and "
                             "times")
    sleep_s: float = Field(0.0, ge=0, description="hold each probe this long (to rehearse cancellation)")
    fail_tasks: list[int] = Field(default_factory=list, description="probe indices that raise on purpose (a drill)")
    resources: Resources | None = Field(None, description="overrides of the sweep's resources for this stage's jobs")


class DatagenStage(Strict):
    """Simulated datasets: one high/low store pair per entry, written by one Slurm array each; imported datasets
    (imports): one job each that maps an outside Zarr, NetCDF or .npz folder onto a store pair."""

    data_dir: str = Field("data", description="where the <scene>_<ny>x<nx>.zarr stores live")
    datasets: list[DatasetSpec] = Field(default_factory=list, description="simulated datasets, one high/low store pair "
                                        "each")
    imports: list[ImportSpec] = Field(default_factory=list, description="outside data: {name, path, variables, "
                                      "dims, resolution, factor, test_sims}; train.datasets name them as imported")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when the job holds a GPU, else "
                                                   "the CPU (a store's frames then depend on the device, not on it)")
    resources: Resources | None = Field(None, description="overrides of the sweep's resources for this stage's jobs")

    @model_validator(mode="after")
    def _something(self) -> "DatagenStage":
        if not self.datasets and not self.imports:
            raise ValueError("datagen needs datasets (simulated) or imports (outside data), or both")
        names = [spec.name for spec in self.imports]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"imports: the name {', '.join(twice)} is used twice; each import needs its own")
        return self


class TrainDataset(Strict):
    """The stores a cell reads: a simulated scene's, or (imported) those of a datagen import of that name."""

    scene: Annotated[str, AfterValidator(check_scene)] | None = Field(None, description="a registered scene (karman, "
                                                                       "plume, ...)")
    imported: str | None = Field(None, description="the name of a datagen import (instead of scene)")
    resolution: tuple[int, int] = Field(description="the low grid [ny, nx] the networks work on")
    high_resolution: tuple[int, int] | None = Field(None, description="SR's target grid")

    @model_validator(mode="after")
    def _one_source(self) -> "TrainDataset":
        if (self.scene is None) == (self.imported is None):
            raise ValueError("a dataset names exactly one of scene (simulated) and imported (a datagen import)")
        return self

    @property
    def name(self) -> str:
        """What its stores are named after: the scene, or the import."""
        return self.scene or self.imported or ""

    def cell_source(self) -> dict[str, Any]:
        """The CellConfig fields that say where the cell's data comes from."""
        return {"scene": self.name, "imported": self.imported is not None}


class TrainStageDataset(TrainDataset):
    """A dataset of the train stage: which of the stage's tasks train on it, and settings for its cells."""

    tasks: list[TaskName] | None = Field(
        None, min_length=1, description="the tasks of train.tasks that train on this dataset (default: all)")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="settings for this dataset's cells ({variable: marker}); they win over "
        "train.settings and task_settings, and lose to settings_from and loss_settings")

    @field_validator("settings")
    @classmethod
    def _settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        TrainSettings.model_validate(v)
        return v


class TrainStage(Strict):
    """Cells = tasks x datasets x losses x seeds; one Slurm array per task, after the datagen that feeds it."""

    data_dir: str | None = Field(None, description="default: datagen.data_dir, else 'data'")
    tasks: list[TaskName] = Field(min_length=1, description="registered tasks to train (ae, sr, sol, ...)")
    datasets: list[TrainStageDataset] = Field(min_length=1, description="the datasets the cells train on, each with "
                                              "its grids")
    losses: list[Any] = Field(min_length=1, description="loss specs: 'mse' or {name: vgg, layer: relu3_3}; a sum's "
                              "weight may be a grid that holds 0 ({weight: [0, 0.01, 0.1], loss: lsim}): one loss "
                              "per value, chosen among on validation")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="every cell's seeds "
                             "(initialisation and batch order)")
    settings: TrainSettings = Field(default_factory=TrainSettings, description="settings for every cell "
                                    "(train.settings below)")
    task_settings: dict[TaskName, dict[str, Any]] = Field(default_factory=dict, description="settings per task ({sol: "
                                                          "{unroll: 4}}); they win over train.settings")
    settings_from: str | list[str] | None = Field(
        None, description="a finished tune run (a run directory holding tune.zarr): each loss trains with the "
        "searched settings (lr, batch_size, unroll, ...) of its best trial, and with that trial's loss spec where "
        "the search tuned weights inside the loss; cells of other tasks than the tune run's keep train.settings. "
        "Or a finished search (a run directory or bundle of a train stage with a grid): each task, grid and loss "
        "family trains with the candidate it chose on validation; a search with unfinished cells is refused. A list "
        "of searches pools their candidates, as if one search had tried them all (a grid widened by a second "
        "search); their cells must differ only in their grids' keys")
    loss_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings per loss label, written by hand (lsim: {lr: 3.0e-4}); they "
        "win over settings_from and task_settings")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description="settings tried as a grid ({lr: [1.0e-3, 3.0e-4]}): every cell trains "
        "once per combination, which joins its label and its row in the results (mse lr=0.0003); they win over "
        "every other source of settings")
    cells_per_task: int | Literal["auto"] = Field(
        1, description="cells one job trains as one computation (as datagen's sims_per_task): cells of a task that "
        "share the dataset, architecture and every setting but seed, loss and lr; auto: as many as the job's "
        "device and memory take at the best measured throughput (docs/training.md)")
    resources: Resources | None = Field(None, description="overrides of the sweep's resources for this stage's jobs")
    task_resources: dict[TaskName, Resources] = Field(default_factory=dict, description="resources per task, over the "
                                                      "stage's ({sr: {gpus_per_node: 2}})")

    @field_validator("settings_from")
    @classmethod
    def _settings_from(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("settings_from lists no run; name one, or leave the key out")
            if len(value) > 8:
                raise ValueError(f"settings_from lists {len(value)} runs; at most 8")
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:
                raise ValueError(f"settings_from lists {', '.join(twice)} more than once")
            if len(value) == 1:
                return value[0]
        return value

    @field_validator("cells_per_task")
    @classmethod
    def _cells_per_task(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not 1 <= v <= 1024:
            raise ValueError(f"expected auto or a whole number from 1 to 1024, got {v}")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        fields = TrainSettings.model_fields
        for key, values in grid.items():
            if key not in fields:
                raise ValueError(f"grid key {key!r} is not a training setting; expected one of "
                                 f"{', '.join(sorted(fields))}")
            if not values:
                raise ValueError(f"grid.{key} is empty; list at least one value")
            if len(values) > 64:
                raise ValueError(f"grid.{key} lists {len(values)} values; at most 64")
            for value in values:
                try:
                    TrainSettings.model_validate({key: value})
                except ValidationError as err:
                    raise ValueError(f"grid.{key} value {value!r}: {err.errors()[0]['msg']}") from None
            twice = sorted({repr(v) for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"grid.{key} lists {', '.join(twice)} more than once")
        return grid

    @model_validator(mode="after")
    def _dataset_tasks(self) -> "TrainStage":
        for i, ds in enumerate(self.datasets):
            extra = sorted(set(ds.tasks or ()) - set(self.tasks))
            if extra:
                raise ValueError(f"datasets.{i}.tasks names {', '.join(extra)}, which train.tasks "
                                 f"({', '.join(self.tasks)}) does not list; a dataset picks among the stage's tasks")
        return self

    def expanded_losses(self) -> list[tuple[str, Any]]:
        """(family, spec) of every loss, weight grids expanded (fluidperc.losses.grids)."""
        return expand_losses(self.losses)

    @model_validator(mode="after")
    def _loss_settings(self) -> "TrainStage":
        labels = [parse_loss_spec(spec).label for _, spec in self.expanded_losses()]
        twice = sorted({lb for lb in labels if labels.count(lb) > 1})
        if twice:
            raise ValueError(f"losses: the label {', '.join(twice)} names two losses; each loss needs a label of its "
                             "own (a resize shows in it, e.g. lsim-r224)")
        for label, overrides in self.loss_settings.items():
            if label not in labels:
                raise ValueError(f"loss_settings has key {label!r}, which is not the label of a loss in train.losses "
                                 f"(labels: {', '.join(labels)})")
            try:
                TrainSettings.model_validate(overrides)
            except ValidationError as err:
                e = err.errors()[0]
                raise ValueError(f"loss_settings.{label}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}") from None
        return self

    @field_validator("losses")
    @classmethod
    def _losses(cls, losses: list[Any]) -> list[Any]:
        for i, loss in enumerate(losses):
            _as_value_error(expand_loss, loss, where=f"losses.{i}")
        return losses

    @field_validator("task_settings")
    @classmethod
    def _task_settings(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for task, overrides in v.items():
            TrainSettings.model_validate(overrides)
        return v


class AshaSettings(Strict):
    """ASHA (asynchronous successive halving): trials below the top 1/reduction_factor at a rung stop early."""

    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it may be stopped")
    reduction_factor: float = Field(3.0, gt=1, description="keep the top 1/reduction_factor of trials at each rung")
    brackets: int = Field(1, ge=1, description="ASHA brackets (1: plain successive halving)")


class TrialResources(Strict):
    cpus: float = Field(1.0, gt=0, description="CPUs per trial (its torch threads)")
    gpus: float = Field(0.0, ge=0, description="GPUs per trial (fractions share a GPU)")


TUNE_METRICS = ("val_rel_l2", "val_mse", "val_mae", "val_vorticity_rmse", "val_spectrum_error")


class TuneStage(Strict):
    """Ray Tune over the loss spec and hyper-parameters of one task on one dataset. Every trial trains through
    fluidperc.train and reports the evaluation stage's metrics on held-out training sims once per epoch."""

    data_dir: str | None = Field(None, description="default: datagen.data_dir, else 'data'")
    task: TaskName = Field(description="the registered task every trial trains")
    dataset: TrainDataset = Field(description="the dataset every trial trains and validates on")
    loss: Any = Field("mse", description="the loss when the space does not search it")
    seed: int = Field(0, description="the trials' cell seed; it also seeds the search's sampler")
    settings: TrainSettings = Field(default_factory=TrainSettings, description="defaults for what the space leaves fixed")
    space: dict[str, Any] = Field(description="hyper-parameter -> fixed value or {choice|grid|loguniform|uniform|randint: ...}")
    epochs: int = Field(8, ge=1, description="the most epochs a trial runs (ASHA's max_t)")
    epoch_steps: int = Field(20, ge=1, description="training steps per epoch; a trial reports and checkpoints per epoch")
    val_sims: int = Field(1, ge=1, description="last training sims held out for validation (never the test sims)")
    val_rollout: int = Field(8, ge=1, description="SOL: validation rollout length, the same for every unroll m")
    metric: Literal[TUNE_METRICS] = Field("val_rel_l2", description="what ASHA and the report rank trials by (lower is better)")
    num_samples: int = Field(8, ge=1, description="trials (each grid point is sampled this often)")
    max_concurrent: int | None = Field(None, ge=1, description="trials at once (default: as many as resources allow)")
    asha: AshaSettings = Field(default_factory=AshaSettings, description="ASHA's early stopping")
    trial_resources: TrialResources = Field(default_factory=TrialResources, description="what one trial holds; trials "
                                            "per node follow from the stage's resources")
    max_failures: int = Field(2, ge=0, description="restarts of a failed trial, each from its last checkpoint")
    dashboard_port: int = Field(8265, ge=1, le=65535, description="the Ray dashboard's port on the head node")
    dashboard_host: str = Field("127.0.0.1", description="the dashboard's interface; keep loopback and port-forward")
    ray_temp_dir: str | None = Field(None, description="Ray's session files (default RUN_DIR/ray); node-local on Lustre")
    resources: Resources | None = Field(None, description="the one allocation the Ray cluster runs in (nodes, gpus)")

    @field_validator("loss")
    @classmethod
    def _loss(cls, loss: Any) -> Any:
        _as_value_error(parse_loss_spec, loss, where="loss")
        return loss

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, Any]) -> dict[str, Any]:
        _as_value_error(validate_space, space, where="space")
        return space

    @field_validator("settings")
    @classmethod
    def _settings(cls, settings: TrainSettings) -> TrainSettings:
        defaults = TrainSettings()
        # val_rollout: null was the default before 16 was (a sweep resolved then says so); it changes nothing here
        managed = sorted(k for k in MANAGED if getattr(settings, k) != getattr(defaults, k)
                         and not (k == "val_rollout" and settings.val_rollout is None))
        if managed:
            raise ValueError(f"{', '.join(managed)} are set by the tune stage (epochs, epoch_steps, val_sims, "
                             "val_rollout), not in tune.settings")
        return settings


class CombinedPipeline(Strict):
    """The study's closing comparison: low-res sim + SOL + SR (marker) against the high-res sim, per loss and seed.
    Needs SOL cells and SR cells with variable: marker on the same scene and low grid."""

    scene: Annotated[str, AfterValidator(check_scene)] = Field("plume", description="the scene the combined pipeline "
                                                               "runs on")
    resolution: tuple[int, int] = Field(description="the low grid [ny, nx] SOL runs on and SR upscales from")


class EvaluateStage(Strict):
    """Evaluate every trained cell on held-out test sims, gather results.zarr, write the report."""

    settings: EvalSettings = Field(default_factory=EvalSettings, description="what each evaluation job computes "
                                   "(evaluate.settings below)")
    combined: CombinedPipeline | None = Field(None, description="the combined pipeline: low-res sim + SOL + SR against "
                                              "the high-res sim")
    cells_per_task: int = Field(8, ge=1, le=1024, description="trained cells one evaluation job evaluates, one "
                                "after another: a small cell's evaluation takes less time than starting the process")
    resources: Resources | None = Field(None, description="overrides of the sweep's resources for this stage's jobs")


class Sweep(Strict, ImportsPluginsFirst):
    name: str = Field(pattern=NAME_PATTERN, description="the sweep's name; its run directory is runs/<name> unless "
                      "--out says otherwise")
    plugins: list[str] = Field(default_factory=list, description="Python modules to import first: they register "
                               "losses, scenes, tasks and backends that the rest of the sweep may name")
    description: str = Field("", description="free text for the reader, kept in the resolved sweep")
    resources: Resources = Field(default_factory=Resources, description="defaults for every job; each stage may "
                                 "override any field under its own resources")
    check: CheckStage | None = Field(None, description="the cluster check: an array of probes, then a summary")
    datagen: DatagenStage | None = Field(None, description="simulated and imported datasets (store pairs)")
    train: TrainStage | None = Field(None, description="the training cells: tasks x datasets x losses x seeds")
    tune: TuneStage | None = Field(None, description="one Ray Tune search of one task on one dataset")
    evaluate: EvaluateStage | None = Field(None, description="evaluation on held-out test sims, results.zarr and the "
                                           "report")
    missing_weights: Literal["skip", "fail"] = Field(
        "fail", description="a loss whose weights are not staged: fail before submitting, or skip its cells"
    )

    @field_validator("plugins", mode="after")
    @classmethod
    def _import_plugins(cls, v: list[str]) -> list[str]:
        _as_value_error(import_plugins, v, where="plugins")
        return v



MAX_SWEEP_BYTES = 1 << 20  # a sweep file is a page of YAML; a megabyte is already absurd
MAX_NODES = 100_000  # values in the document after YAML aliases are expanded
MAX_DEPTH = 64  # nesting of mappings and lists


def _describe(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 15] + f"... ({len(text)} chars)"


def format_validation_error(path: Path, err: ValidationError) -> str:
    """One paragraph naming the file, each bad key, its value and what was expected (pydantic's text as it is:
    lower-casing it would also change the patterns and values it quotes)."""
    problems = []
    for item in err.errors():
        key = _describe(item["loc"])
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown key '{key}'")
        elif item["type"] == "missing":
            problems.append(f"missing key '{key}'")
        else:
            problems.append(f"key '{key}' has value {_short(item['input'])}: {item['msg']}")
    if len(problems) > 8:
        problems = problems[:8] + [f"and {len(problems) - 8} more"]
    return f"{path}: invalid sweep file: " + "; ".join(problems) + ". Nothing was submitted."


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only) that refuses documents nested too deeply while composing them,
    before Python's recursion limit would end it with a traceback."""

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML's hook
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep at line {mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_tree(path: Path, data: Any) -> None:
    """Walk the loaded document as pydantic will (aliases expanded): bound its size, and refuse NaN and +-inf
    anywhere, since no sweep setting means them and pydantic would accept them as floats."""
    budget = [MAX_NODES]

    def walk(value: Any, where: tuple[Any, ...]) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise UserError(
                f"{path}: the sweep file expands to more than {MAX_NODES} values (YAML anchors and aliases repeating "
                "each other?); a sweep is a page of settings. Nothing was submitted."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{path}: invalid sweep file: key '{_describe(where)}' has value {value!r}: expected a "
                            "finite number. Nothing was submitted.")
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, where)
                walk(v, (*where, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*where, i))

    walk(data, ())


def read_sweep_text(path: Path) -> str:
    """The file as UTF-8 text below MAX_SWEEP_BYTES, or one paragraph saying what it is instead."""
    if not path.is_file():
        raise UserError(f"{path}: no such sweep file. Nothing was submitted.")
    size = path.stat().st_size
    if size > MAX_SWEEP_BYTES:
        raise UserError(f"{path}: {size} bytes is too large for a sweep file (at most {MAX_SWEEP_BYTES}); is it "
                        "the right file? Nothing was submitted.")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(f"{path}: not UTF-8 text (byte {err.start}, line {line}: {raw[err.start:err.start + 1]!r}); "
                        "a sweep file is YAML text. Nothing was submitted.") from None


def parse_sweep(path: Path, data: Any) -> Sweep:
    """Validate loaded YAML data as a sweep (the one place a mapping becomes a Sweep, files and overrides)."""
    if not isinstance(data, dict):
        raise UserError(
            f"{path}: expected a mapping of sweep keys (name, resources, stages), got {type(data).__name__}. "
            "Nothing was submitted."
        )
    _check_tree(path, data)
    try:
        return Sweep.model_validate(data)
    except ValidationError as err:
        raise UserError(format_validation_error(path, err)) from None
    except RecursionError:
        raise UserError(f"{path}: the sweep file nests too deeply. Nothing was submitted.") from None


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """The sweep file, validated, with command-line ``KEY=VALUE`` overrides applied first (hpc.overrides)."""
    path = Path(path)
    text = read_sweep_text(path)
    try:
        data = yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}: not valid YAML{where}: {problem}. Nothing was submitted.") from None
    except RecursionError:
        raise UserError(f"{path}: the sweep file nests too deeply. Nothing was submitted.") from None
    if not overrides:
        return parse_sweep(path, data)

    parsed = [ov.parse(text, path) for text in overrides]
    if isinstance(data, dict):
        data = ov.apply(data, parsed, path)
    try:
        return parse_sweep(path, data)
    except UserError as err:
        raise UserError(ov.blame(str(err), parsed)) from None
