"""The results of `acula bench` and `acula finetune`: their columns, writing them (CSV, Markdown), reading them
back, and comparing two runs (`acula bench compare`). One module, so every writer and reader agrees on the files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .._io import write_text
from ..datasets.base import columns_of, read_table

RESULT_COLUMNS = ["task", "name", "dataset", "metric", "mean", "std", "n_seeds", "n_train", "n_val", "n_test",
                  "std_folds", "status", "error"]
SEED_COLUMNS = ["task", "metric", "seed", "value", "std_folds"]
HIGHER_IS_BETTER = {"AUROC": True, "MAE": False}


def fmt_mean_std(x, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def markdown(rows: list[dict], notes: dict[str, list[str]], title: str) -> str:
    lines = [f"# {title}", "", "| task | name | metric | mean ± std | seeds | train / val / test | status |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        arrow = {"AUROC": " ↑", "MAE": " ↓"}.get(r["metric"], "")
        score = f"{r['mean']} ± {r['std']}" if r["status"] == "ok" else ""
        sizes = f"{r['n_train']} / {r['n_val']} / {r['n_test']}" if r["status"] == "ok" else ""
        status = r["status"] if r["status"] == "ok" else f"**error**: {r['error']}"
        status = status.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['task']} | {r['name']} | {r['metric']}{arrow} | {score} | {r['n_seeds']} | {sizes} | "
                     f"{status} |")
    if any(notes.values()):
        lines += ["", "## Notes", ""]
        for task, ns in notes.items():
            lines += [f"- {task}: {n}" for n in ns]
    return "\n".join(lines) + "\n"

def task_rows(task, seeds, values: list[float], fold_std: list[float], n_train, n_val,
              n_test) -> tuple[dict, list[dict]]:
    """A task's results row (mean and std over seeds) and its per-seed rows."""
    row = {"task": task.id, "name": task.name, "dataset": task.dataset, "metric": task.metric,
           "mean": fmt_mean_std(float(np.mean(values))), "std": fmt_mean_std(float(np.std(values))),
           "n_seeds": len(seeds), "n_train": n_train, "n_val": n_val, "n_test": n_test,
           "std_folds": fmt_mean_std(float(np.mean(fold_std))) if fold_std else "", "status": "ok", "error": ""}
    seed_rows = [{"task": task.id, "metric": task.metric, "seed": s, "value": fmt_mean_std(v),
                  "std_folds": fmt_mean_std(fold_std[i]) if fold_std else ""}
                 for i, (s, v) in enumerate(zip(seeds, values))]
    return row, seed_rows


def error_row(task, msg: str) -> dict:
    """The results row of a task that failed: the run goes on, the table says why."""
    return {"task": task.id, "name": task.name, "dataset": task.dataset, "metric": task.metric, "mean": "", "std": "",
            "n_seeds": 0, "n_train": "", "n_val": "", "n_test": "", "std_folds": "", "status": "error", "error": msg}


def write_results(out: Path, rows: list[dict], seed_rows: list[dict], notes: dict[str, list[str]], title: str) -> None:
    """results.csv, results_seeds.csv and results.md (rewritten after every task, so a killed run keeps its rows)."""
    write_text(out / "results.csv", csv_text(rows, RESULT_COLUMNS))
    write_text(out / "results_seeds.csv", csv_text(seed_rows, SEED_COLUMNS))
    write_text(out / "results.md", markdown(rows, notes, title))


def read_results(path: str | Path) -> dict[str, dict]:
    """{task: row} of a results.csv (bench or finetune), through the datasets' one table reader."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    missing = [c for c in ("task", "metric", "mean", "std", "status") if c not in columns_of(path)]
    if missing:
        raise ValueError(f"{path}: not an acula bench results.csv (missing {', '.join(missing)})")
    return {r["task"]: r for r in read_table(path, error=ValueError)}


def read_seed_values(results_path: str | Path) -> dict[str, dict[str, float]]:
    """{task: {seed: value}} from the results_seeds.csv beside a results.csv (empty if absent)."""
    path = Path(results_path).with_name("results_seeds.csv")
    if not path.is_file():
        return {}
    out: dict[str, dict[str, float]] = {}
    for r in read_table(path, error=ValueError):
        if r.get("value"):
            out.setdefault(r["task"], {})[r["seed"]] = float(r["value"])
    return out


def seed_test(a: dict[str, float], b: dict[str, float]) -> tuple[float, str]:
    """(p, test) of B vs A over seeds. Seed s of two runs shares its split and head initialisation, so
    runs with the same seeds are compared pairwise (paired t-test); otherwise Welch's t-test."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if len(common) > 1:
        diff = np.array([b[s] - a[s] for s in common])
        if np.all(diff == diff[0]):  # no spread: the t statistic is undefined
            return (1.0 if diff[0] == 0 else 0.0), "paired"
        return float(stats.ttest_rel([b[s] for s in common], [a[s] for s in common]).pvalue), "paired"
    if len(a) > 1 and len(b) > 1:
        return float(stats.ttest_ind(list(b.values()), list(a.values()), equal_var=False).pvalue), "Welch"
    return float("nan"), ""


def compare(a_path: str | Path, b_path: str | Path) -> tuple[str, dict]:
    """Side-by-side table of two runs plus paired tests -> (text, statistics)."""
    from scipy import stats

    a, b = read_results(a_path), read_results(b_path)
    sa, sb = read_seed_values(a_path), read_seed_values(b_path)
    lines = [f"A = {a_path}", f"B = {b_path}", "",
             f"{'task':<26} {'metric':<6} {'A':>17} {'B':>17} {'B-A':>9} {'better':>6} {'p':>8}"]
    diffs, details = [], {}
    for task in list(a) + [t for t in b if t not in a]:
        ra, rb = a.get(task), b.get(task)
        label = (ra or rb).get("name") or task
        name = (task if label == task else f"{task} {label}")[:26]
        if ra is None or rb is None:
            lines.append(f"{name:<26} only in {'A' if rb is None else 'B'}")
            continue
        if ra["status"] != "ok" or rb["status"] != "ok" or not ra["mean"] or not rb["mean"]:
            lines.append(f"{name:<26} skipped: {'A' if ra['status'] != 'ok' else 'B'} failed")
            continue
        if ra["metric"] != rb["metric"]:
            lines.append(f"{name:<26} skipped: metric {ra['metric']} vs {rb['metric']}")
            continue
        metric = ra["metric"]
        ma, mb = float(ra["mean"]), float(rb["mean"])
        higher = HIGHER_IS_BETTER.get(metric, True)
        # positive = B better. AUROC differences are on a common [0, 1] scale; MAE is in the task's units,
        # so its improvement enters the across-task test relative to A.
        if higher:
            d = mb - ma
        else:
            d = (ma - mb) / abs(ma) if ma else 0.0
        diffs.append(d)
        p, test = seed_test(sa.get(task, {}), sb.get(task, {}))
        better = "B" if d > 0 else "A" if d < 0 else "="
        details[task] = {"metric": metric, "a": ma, "b": mb, "diff": d, "p": p, "test": test}
        score_a = f"{ma:.4f}±{float(ra['std'] or 0):.4f}"
        score_b = f"{mb:.4f}±{float(rb['std'] or 0):.4f}"
        lines.append(f"{name:<26} {metric:<6} {score_a:>17} {score_b:>17} {mb - ma:>+9.4f} {better:>6} "
                     f"{fmt_mean_std(p, 4) or 'n/a':>8}")
    summary = {"tasks": len(diffs), "b_better": int(sum(d > 0 for d in diffs)), "wilcoxon_p": None,
               "wilcoxon_statistic": None, "per_task": details}
    lines.append("")
    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) >= 2:
        w = stats.wilcoxon(diffs)
        summary.update(wilcoxon_statistic=float(w.statistic), wilcoxon_p=float(w.pvalue))
        lines.append(f"Wilcoxon signed-rank over {len(diffs)} tasks (B vs A; AUROC: B-A, MAE: (A-B)/A): "
                     f"statistic {w.statistic:.1f}, p = {w.pvalue:.4g}; B better on {summary['b_better']}/{len(diffs)}")
    else:
        lines.append(f"Wilcoxon signed-rank: n/a (needs >= 2 tasks with a difference, have {len(nonzero)})")
    lines.append("p: per-task t-test over seeds (from results_seeds.csv beside each results.csv), paired by "
                 "seed when both runs used the same seeds, else Welch's.")
    return "\n".join(lines), summary

