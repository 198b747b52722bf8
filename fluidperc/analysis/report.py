"""RUN_DIR/report/: report.md (each loss's mean ± std over seeds on every metric, best per column in bold, SOL's
improvement over the source sim) and PNG figures (error over rollout steps, sample vorticity frames, time cost)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from fluidperc.analysis import load  # noqa: E402
from fluidperc.analysis.bundle import cell_configs, cell_results, has_store  # noqa: E402
from fluidperc.analysis.animation import write_gif  # noqa: E402
from fluidperc.analysis.cost import cost_lines, plot_error_against_time  # noqa: E402
from fluidperc.analysis.curves import validation_lines  # noqa: E402
from fluidperc.analysis.fields import sample_field  # noqa: E402
from fluidperc.analysis.figures import save_png  # noqa: E402
from fluidperc.analysis.selection import selection_lines  # noqa: E402
from fluidperc.analysis.stats import DRAWS, EXACT_LIMIT, METHOD, ratios_per_test_sim, ratios_to_mse  # noqa: E402
from fluidperc.analysis.tables import markdown_table  # noqa: E402
from fluidperc.analysis.tuning import report_lines
from fluidperc.errors import UserError  # noqa: E402
from fluidperc.evaluation.collect import pseudo_names  # noqa: E402  (baselines, never "best")
from fluidperc.metrics import perceptual_metric_specs
from fluidperc.datasets.names import grid_name
from fluidperc.evaluation.pipelines import shown_as
from fluidperc.tasks.cell import CellConfig  # noqa: E402

PIXEL_ORDER = ("rel_l2", "mse", "mae", "vorticity_rmse", "spectrum_error", "nrmse", "pooled_rel_l2", "frmse_low",
               "frmse_mid", "frmse_high", "vorticity_correlation", "high_correlation_time")
HIGHER_IS_BETTER = frozenset({"vorticity_correlation", "high_correlation_time"})


def _metrics(ds: xr.Dataset) -> list[str]:
    """Pixel metrics first, then the registered perceptual ones, then anything else the results hold."""
    order = (*PIXEL_ORDER, *perceptual_metric_specs())
    present = [m for m in order if m in ds.data_vars]
    # not the ladder's variables (fluidperc.analysis.cost) nor the validation curves (over val_step)
    return present + sorted(v for v in ds.data_vars if v not in present and v != "seconds_per_frame"
                            and {"loss", "test_sim"} <= set(ds[v].dims))


def is_rollout(task: str) -> bool:
    """Results over rollout steps (a task or pipeline with ``rollout``): they get the error-vs-step figure and the
    unroll column."""
    return shown_as(task).rollout


def summary_table(ds: xr.Dataset, task: str, resolution: str) -> tuple[list[str], list[list[str]]]:
    sub = ds.sel(task=task, resolution=resolution)
    metrics = [m for m in _metrics(ds) if bool(np.isfinite(sub[m]).any())]
    if not metrics:  # a task this grid's dataset does not train (SOL on the plume)
        return [], []
    per_seed = sub[metrics].mean(["test_sim", "step"])  # loss, seed (a metric of whole trajectories has no step)
    mean, std = per_seed.mean("seed"), per_seed.std("seed", ddof=1)  # the sample SD: n is small
    n_seeds = np.isfinite(per_seed[metrics[0]]).sum("seed")
    losses = [str(loss) for loss in sub.loss.values if bool(np.isfinite(per_seed[metrics[0]].sel(loss=loss)).any())]
    pseudo = pseudo_names()
    trained = [loss for loss in losses if loss not in pseudo]
    best = {m: (max if m in HIGHER_IS_BETTER else min)(trained, key=lambda loss: float(mean[m].sel(loss=loss)))
            for m in metrics} if trained else {}
    improvement = "source" in losses and "rel_l2" in metrics  # a task with a source baseline (SOL, combined)
    timed = shown_as(task).display.timed
    rows = []
    for loss in losses:
        row = [loss]
        n = int(n_seeds.sel(loss=loss))
        for m in metrics:
            sd = float(std[m].sel(loss=loss))
            cell = f"{float(mean[m].sel(loss=loss)):.4g}" + (f" ± {sd:.2g}" if n > 1 else "")
            row.append(f"**{cell}**" if best.get(m) == loss else cell)
        if improvement:
            denominator = float(mean["rel_l2"].sel(loss=loss))
            factor = float(mean["rel_l2"].sel(loss="source")) / denominator if denominator > 0 else np.inf
            row.append("1x" if loss == "source" else "-" if loss in pseudo else f"{factor:.2f}x")
        if timed:
            row.append(f"{float(sub.seconds_per_frame.sel(loss=loss).mean('seed')) * 1e3:.3g}")
        rows.append([*row[:1], str(n), *row[1:]])
    headers = ["loss", "n"] + metrics + (["SOL improvement (rel_l2 source / loss)"] if improvement else [])
    headers += ["wall time per frame [ms]"] if timed else []
    return headers, rows


def paired_table(ds: xr.Dataset, task: str, resolution: str) -> tuple[list[str], list[list[str]]] | None:
    """Every trained loss against MSE on every metric (fluidperc.analysis.stats); None without MSE or a rival."""
    sub = ds.sel(task=task, resolution=resolution)
    metrics = [m for m in _metrics(ds) if m != "seconds_per_frame" and bool(np.isfinite(sub[m]).any())]
    per_metric = {m: ratios_to_mse(ds, task, resolution, m) for m in metrics}
    pseudo = pseudo_names()
    losses = [str(loss) for loss in ds.loss.values if str(loss) not in pseudo and str(loss) != "mse"
              and any(str(loss) in r for r in per_metric.values())]
    if not losses or not any(per_metric.values()):
        return None
    rows = [[loss, *(str(per_metric[m].get(loss, "-")) for m in metrics)] for loss in losses]
    return ["loss / mse", *metrics], rows


def plot_error_vs_step(ds: xr.Dataset, resolution: str, path: Path, metric: str = "rel_l2", task: str = "sol") -> bool:
    if task not in ds.task.values or metric not in ds:
        return False
    sub = ds[metric].sel(task=task, resolution=resolution)
    fig, ax = plt.subplots(figsize=(6, 4))
    plotted = False
    pseudo = pseudo_names()
    for loss in sub.loss.values:
        curve = sub.sel(loss=loss).mean(["seed", "test_sim"])
        if bool((np.isfinite(curve) & (curve > 0)).any()):
            ax.plot(sub.step.values, curve.values, label=str(loss), ls="--" if loss in pseudo else "-")
            plotted = True
    if not plotted:
        plt.close(fig)
        return False
    what = shown_as(task).display.what
    ax.set(xlabel="rollout step", ylabel=f"{metric} {what}", title=f"{task.upper()} {resolution}: error over the rollout")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    return True


def absent_eval_stores(ds: xr.Dataset, task: str, resolution: str) -> list[str]:
    """The evaluation stores of a task and grid that results.zarr names but that are gone (a committed results.zarr
    travels without them), so that the report says why it has no sample frames instead of silently omitting them."""
    paths = [p for label, p in ds.attrs.get("cells", {}).items() if label.startswith(f"{task}-{resolution}-")]
    return [p for p in paths if not Path(p).exists()] if paths and not any(Path(p).exists() for p in paths) else []


def plot_samples(ds: xr.Dataset, task: str, resolution: str, path: Path) -> bool:
    """Vorticity (the marker, for the combined pipeline) of reference, baselines and each loss's result, seed 0,
    first test sim, shared colour scale."""
    cells = ds.attrs.get("cells", {})
    rows: dict[str, np.ndarray] = {}
    seed = int(ds.seed.values[0])
    for label, eval_path in cells.items():
        if not label.startswith(f"{task}-{resolution}-") or not label.endswith(f"-s{seed}") or not Path(eval_path).exists():
            continue
        ev = xr.open_zarr(eval_path)
        channels = ev.sizes.get("channel")
        if channels not in (1, 2):
            return False
        steps = ev.sample_step.values
        field = sample_field(ev)
        rows.setdefault("reference", field(ev.sample_reference.values))
        for name, var in (("high-res sim", "sample_highres"), ("source", "sample_source")):
            if var in ev:
                rows.setdefault(name, field(ev[var].values))
        rows[ev.attrs["loss"]] = field(ev.sample_prediction.values)
    if len(rows) < 2:
        return False
    scalar = channels == 1
    limit = float(np.percentile(np.abs(rows["reference"]), 99)) or 1.0
    n = rows["reference"].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 2.6 * len(rows)), squeeze=False)
    for i, (name, frames) in enumerate(rows.items()):
        for j in range(n):
            ax = axes[i, j]
            im = ax.imshow(frames[j], origin="lower", cmap="viridis" if scalar else "RdBu_r",
                           vmin=0 if scalar else -limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
            if i == 0:
                ax.set_title(f"step {int(steps[j])}")
    what = "marker density" if scalar else "vorticity"
    fig.colorbar(im, ax=axes, shrink=0.6, label=what)
    fig.suptitle(f"{task} {resolution}: {what}, shared colour scale")
    save_png(fig, path, dpi=110)
    return True


def plot_time_cost(ds: xr.Dataset, path: Path) -> bool:
    t = ds.seconds_per_frame.mean("seed")
    bars = [(f"{task} {res} {loss}", float(t.sel(task=task, resolution=res, loss=loss)))
            for task in t.task.values for res in t.resolution.values for loss in t.loss.values
            if np.isfinite(t.sel(task=task, resolution=res, loss=loss))]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(bars) + 1.5))
    ax.barh([b[0] for b in bars], [b[1] * 1e3 for b in bars])
    ax.set(xlabel="wall time per frame [ms] (same evaluation job)", title="time cost per frame")
    fig.tight_layout()
    save_png(fig, path, dpi=120)
    return True


def write_report(run_dir: str | Path, out: str | Path | None = None, animations: bool = True) -> Path:
    """The evaluation's tables and figures (results.zarr) and the tuning section (tune.zarr), whichever exist, into
    ``out`` (default RUN_DIR/report). ``animations=False`` leaves the GIFs out (a folder to publish stays small)."""
    run = Path(run_dir)
    has_results, has_tune = has_store(run, "results.zarr"), has_store(run, "tune.zarr")
    if not (has_results or has_tune):  # before anything is created: a mistyped RUN_DIR leaves no empty folder
        raise UserError(f"{run} holds neither results.zarr nor tune.zarr; expected the run directory of a sweep whose "
                        "evaluate or tune stage has finished (python -m hpc.launch SWEEP --out RUN_DIR)")
    out = Path(out) if out is not None else run / "report"
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Results of {run.name}", ""]
    if has_tune:
        lines += report_lines(run, out)
    if has_results:
        lines += _evaluation_lines(run, out, animations)
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def _evaluation_lines(run: Path, out: Path, animations: bool = True) -> list[str]:
    ds = load(run)
    lines = [f"Run directory: `{run}`. Values are the mean over test sims and steps (frames), then the mean ± "
             "the sample standard deviation (ddof = 1) over the n seeds; the best trained loss per column is in bold; "
             f"lower is better, except for {', '.join(sorted(HIGHER_IS_BETTER))}.", ""]
    missing = ds.attrs.get("missing_cells", {})
    if missing:
        lines += ["## Cells without results", ""] + [f"- `{k}`: {v}" for k, v in missing.items()] + [""]
    skipped = {k: json.loads(v) if isinstance(v, str) else v for k, v in ds.attrs.get("skipped_metrics", {}).items()}
    notes = sorted({f"{m}: {why}" for per in skipped.values() for m, why in per.items()})
    if notes:
        lines += ["Metrics not computed: " + "; ".join(notes), ""]
    for task in ds.task.values:
        for res in ds.resolution.values:
            headers, rows = summary_table(ds, str(task), str(res))
            if not rows:
                continue
            note = shown_as(str(task)).display.note
            note = [note, ""] if note else []
            lines += [f"## {task} on {res}", "", *note, markdown_table(headers, rows), ""]
            paired = paired_table(ds, str(task), str(res))
            if paired:
                lines += [f"Ratio to MSE, with its 95% intervals. {METHOD.format(draws=DRAWS, exact=EXACT_LIMIT)}",
                          "", markdown_table(*paired), ""]
            name = f"error_vs_step_{res}.png" if task == "sol" else f"error_vs_step_{task}_{res}.png"
            if is_rollout(str(task)) and plot_error_vs_step(ds, str(res), out / name, task=str(task)):
                lines += [f"![error over rollout steps]({name})", ""]
            if plot_samples(ds, str(task), str(res), out / f"samples_{task}_{res}.png"):
                lines += [f"![sample frames](samples_{task}_{res}.png)", ""]
            elif gone := absent_eval_stores(ds, str(task), str(res)):
                lines += [f"Sample frames: not drawn, because the evaluation stores they come from are not on this "
                          f"machine (e.g. `{gone[0]}`); results.zarr holds only their metrics.", ""]
            lines += validation_lines(ds, str(task), str(res), out)
            ladder = cost_lines(ds, str(task), str(res), out)
            lines += ladder
            if not ladder and plot_error_against_time(ds, str(task), str(res), out / f"error_vs_time_{task}_{res}.png"):
                lines += [f"![error against wall time per frame](error_vs_time_{task}_{res}.png)", ""]
            if animations and write_gif(ds, str(task), str(res), out / f"rollout_{task}_{res}.gif"):
                lines += [f"![reference, source and each loss's result, first test sim](rollout_{task}_{res}.gif)", ""]
    if plot_time_cost(ds, out / "time_cost.png"):
        lines += ["## Time cost", "", "![time cost per frame](time_cost.png)", ""]
    return lines + settings_lines(run) + selection_lines(run) + appendix_lines(ds)


def appendix_lines(ds: xr.Dataset) -> list[str]:
    """Every ratio to MSE broken down per test sim (the geometric mean of the seeds' ratios on that sim, with
    the t-interval over seeds): whether a conclusion rests on one test sim."""
    lines = []
    for task in ds.task.values:
        for res in ds.resolution.values:
            sub = ds.sel(task=task, resolution=res)
            metrics = [m for m in _metrics(ds) if bool(np.isfinite(sub[m]).any())]
            per = {m: ratios_per_test_sim(ds, str(task), str(res), m) for m in metrics}
            keys = sorted({k for r in per.values() for k in r}, key=lambda k: (str(k[0]), k[1]))
            if not keys:
                continue
            reynolds = ds.test_reynolds.sel(resolution=res).values if "test_reynolds" in ds else None
            rows = []
            for loss, i in keys:
                sim = f"{i}" + (f" (Re {reynolds[i]:.3g})" if reynolds is not None and np.isfinite(reynolds[i]) else "")
                rows.append([loss, sim, *(str(per[m].get((loss, i), "-")) for m in metrics)])
            lines += [f"### {task} on {res}, per test sim", "", markdown_table(["loss / mse", "test sim", *metrics], rows), ""]
    if not lines:
        return []
    return ["## Appendix: ratios to MSE per test sim", "",
            "The geometric mean over seeds of each seed's ratio on one test sim, with the 95% t-interval over seeds.",
            "", *lines]


def settings_lines(run: Path) -> list[str]:
    """Each trained (task, loss)'s settings and where they came from (train.settings, a tune run's best trial,
    settings written by hand): a comparison of losses is only fair if each had its own best settings."""
    seen: dict[tuple[str, str], list[str]] = {}
    kept: dict[tuple[str, str], list[str]] = {}
    results = cell_results(run)
    for cfg in cell_configs(run):
        cell = CellConfig.model_validate(cfg)  # imports the cell's plugins (their losses) first
        label, st = cell.loss_row, cfg["settings"]
        schedule = st.get("schedule", "constant") + (f", warm-up {st['warmup_steps']}" if st.get("warmup_steps") else "")
        grid = grid_name(cell.scene, cell.resolution)
        seen.setdefault((cfg["task"], grid, label), [cfg["task"], grid, label, f"{st['lr']:.3g}", schedule,
                                                     str(st["batch_size"]),
                                               str(st["unroll"]) if is_rollout(cfg["task"]) else "-", str(st["steps"]),
                                               cfg.get("settings_source", "train.settings")])
        result = results.get(cell.label)
        if result is not None:
            how = result.get("kept", "last")
            kept.setdefault((cfg["task"], grid, label), []).append(
                f"s{cell.seed}: {how} ({result.get('select_on', '')} at {result.get('kept_step', result['steps'])})"
                if how == "best" else f"s{cell.seed}: last ({result['steps']})")
    if not seen:
        return []
    rows = [[*row, "; ".join(kept.get(key, ["-"]))] for key, row in seen.items()]
    headers = ["task", "grid", "loss", "lr", "schedule", "batch_size", "unroll (m)", "steps", "settings from",
               "weights kept (step)"]
    return ["## Training settings per loss", "", markdown_table(headers, rows), ""]


def main_table(run_dir: str | Path) -> str:
    """The first table of the report (SOL when present), for the demo's closing output; "" for a run without
    results.zarr (a tune run)."""
    if not has_store(run_dir, "results.zarr"):
        return ""
    ds = load(run_dir)
    task = next((str(t) for t in ds.task.values if not shown_as(str(t)).pipeline and is_rollout(str(t))),
                str(ds.task.values[0]))
    for res in ds.resolution.values:
        headers, rows = summary_table(ds, task, str(res))
        if rows:
            return f"{task} on {res}\n" + markdown_table(headers, rows)
    return "(no results)"
