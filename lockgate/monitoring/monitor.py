"""One check of a served champion: its newest logged traffic against the
held-out rows it carries, and its answers against the labels that came back.

`check` reads what the service wrote (lockgate/serving/traffic.py) and the
reference kept with the model (lockgate/training/reference.py), runs the
drift tests (lockgate/monitoring/drift.py) and measures the live accuracy
(or error); it computes a `MonitorReport` and a figure, and records nothing:
the monitor flow's tasks log, publish and emit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lockgate.core.records import FeatureFinding, LiveQuality, MonitorReport, ServedMeta
from lockgate.core.settings import MonitorSettings
from lockgate.monitoring.drift import DriftResult, drift_tests
from lockgate.scoring.plots import distribution_panels
from lockgate.scoring.stats import rmse_interval, wilson_interval
from lockgate.serving.traffic import MonitoredFeature, input_features, output_features, summarise_outputs

SHOWN_FEATURES = 6  # panels in the figure: the drifted features first, then the lowest p-values


@dataclass(frozen=True)
class ServedWindow:
    """The newest logged rows of one model version: per row its request id
    and row number, its input summary and the model's outputs."""

    ids: list[tuple[str, int]]
    features: np.ndarray
    outputs: np.ndarray
    other_versions: int  # logged rows of other versions, left out


@dataclass(frozen=True)
class Reference:
    """The held-out rows kept with a model, summarised as served rows are."""

    features: np.ndarray
    outputs: np.ndarray
    y: np.ndarray
    holdout: np.ndarray  # True for holdout rows (the rest are validation rows)


def load_reference(model_folder: Path) -> Reference | None:
    """The reference in a Bento model's folder; None for a model packaged
    before references were kept."""
    arrays = Path(model_folder) / "monitoring" / "reference.npz"
    if not arrays.is_file():
        return None
    with np.load(arrays) as saved:
        return Reference(features=saved["features"], outputs=saved["outputs"], y=saved["y"], holdout=saved["holdout"])


def _newest_first(folder: Path, prefix: str) -> list[Path]:
    """A service's files, newest first: named `<prefix>-<pid>-<start ns>.jsonl`."""
    files = list(Path(folder).glob(f"{prefix}-*.jsonl"))
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)


def _records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut short by a worker that died while writing
            continue
    return records


def served_window(folder: Path, version: str, max_rows: int, features: int, outputs: int) -> ServedWindow:
    """The newest `max_rows` served rows of `version`, newest last."""
    records: list[dict[str, Any]] = []
    kept = 0
    for path in _newest_first(folder, "traffic"):
        lines = _records(path)
        records.extend(reversed(lines))  # each file's newest line first
        kept += sum(len(r.get("features", [])) for r in lines if str(r.get("version")) == version)
        if kept >= max_rows:
            break
    records.sort(key=lambda r: r.get("at", 0.0), reverse=True)  # stable: a file's order among equal times
    chosen, others, kept = [], 0, 0
    for record in records:
        if str(record.get("version")) != version:
            others += len(record.get("features", []))
        elif kept < max_rows:
            chosen.append(record)
            kept += len(record["features"])
    ids: list[tuple[str, int]] = []
    feature_rows: list[list[float | None]] = []
    output_rows: list[list[float]] = []
    for record in reversed(chosen):  # oldest first
        for row, (summary, output) in enumerate(zip(record["features"], record["outputs"])):
            ids.append((record["id"], row))
            feature_rows.append(summary)
            output_rows.append(output)
    ids, feature_rows, output_rows = ids[-max_rows:], feature_rows[-max_rows:], output_rows[-max_rows:]
    return ServedWindow(
        ids=ids,
        features=np.array(feature_rows, dtype="float64").reshape(len(feature_rows), features),
        outputs=np.array(output_rows, dtype="float64").reshape(len(output_rows), outputs),
        other_versions=others,
    )


def served_labels(folder: Path) -> dict[tuple[str, int], Any]:
    """Every label sent to /feedback, by (request id, row); a later label wins."""
    labels: dict[tuple[str, int], Any] = {}
    for path in reversed(_newest_first(folder, "labels")):  # oldest first, so a later label wins
        for record in _records(path):
            for item in record.get("labels", []):
                labels[(item["request_id"], int(item.get("row", 0)))] = item["label"]
    return labels


def live_quality(meta: ServedMeta, window: ServedWindow, labels: dict[tuple[str, int], Any],
                 reference: Reference) -> LiveQuality:
    """Accuracy (or RMSE) on the served rows that have a label, beside the
    holdout's, each with a 95% interval."""
    rows = [i for i, key in enumerate(window.ids) if key in labels]
    unmatched = len(set(labels) - set(window.ids))
    holdout_out, holdout_y = reference.outputs[reference.holdout], reference.y[reference.holdout]
    if meta.class_names:
        index = {name: i for i, name in enumerate(meta.class_names)}
        correct = int((holdout_out.argmax(axis=1) == holdout_y).sum())
        quality = LiveQuality(metric="accuracy", labelled=len(rows), unmatched=unmatched,
                              holdout=correct / max(len(holdout_y), 1), holdout_rows=len(holdout_y))
        quality.holdout_low, quality.holdout_high = wilson_interval(correct, len(holdout_y))
        if rows:
            truth = np.array([index.get(str(labels[window.ids[i]]), -1) for i in rows])
            right = int((window.outputs[rows].argmax(axis=1) == truth).sum())
            quality.live = right / len(rows)
            quality.live_low, quality.live_high = wilson_interval(right, len(rows))
        return quality
    squared = (holdout_out.reshape(-1) - holdout_y.reshape(-1)) ** 2
    quality = LiveQuality(metric="rmse", labelled=len(rows), unmatched=unmatched,
                          holdout=float(np.sqrt(squared.mean())) if len(squared) else None, holdout_rows=len(squared))
    quality.holdout_low, quality.holdout_high = rmse_interval(squared)
    if rows:
        truth = np.array([float(labels[window.ids[i]]) for i in rows])
        live_squared = (window.outputs[rows, 0] - truth) ** 2
        quality.live = float(np.sqrt(live_squared.mean()))
        quality.live_low, quality.live_high = rmse_interval(live_squared)
    return quality


def check(model_folder: Path, traffic: Path, settings: MonitorSettings, figure_folder: Path | None = None,
          now: datetime | None = None) -> tuple[MonitorReport, Path | None]:
    """Compare the newest served rows of the model in `model_folder` with
    its reference; the report and, when rows were tested, a figure."""
    meta = ServedMeta.read(model_folder)
    checked_at = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    inputs, outputs = input_features(meta), output_features(meta)
    reference = load_reference(model_folder)
    base = dict(model_name=meta.model_name, version=str(meta.model_version), checked_at=checked_at,
                false_alarm_rate=settings.false_alarm_rate)
    if reference is None:
        return MonitorReport(**base, tested=False, drifted=False, window_rows=0, reference_rows=0,
                             headline="not checked: this model was packaged without held-out rows to compare with; "
                                      "retrain it to monitor it"), None
    window = served_window(traffic, str(meta.model_version), settings.window_rows, len(inputs), reference.outputs.shape[1])
    features = inputs + outputs
    reference_rows = np.concatenate([reference.features, summarise_outputs(reference.outputs, meta)], axis=1)
    window_rows = np.concatenate([window.features, summarise_outputs(window.outputs, meta)], axis=1)
    result = drift_tests(features, reference_rows, window_rows, settings.false_alarm_rate, settings.min_rows)
    report = MonitorReport(
        **base, tested=result.tested, drifted=result.drifted, headline=_headline(result),
        window_rows=len(window.ids), reference_rows=len(reference.y),
        findings=[FeatureFinding(feature=f.feature, source=f.source, test=f.test, statistic=f.statistic,
                                 p_value=f.p_value, drifted=f.drifted, reference=f.reference_summary,
                                 window=f.window_summary) for f in result.features],
        skipped=[f"{name}: {why}" for name, why in result.skipped],
        live=live_quality(meta, window, served_labels(traffic), reference),
    )
    figure = None
    if result.tested and figure_folder is not None:
        figure = drift_figure(report, features, reference_rows, window_rows, Path(figure_folder) / "drift.png")
    return report, figure


def _headline(result: DriftResult) -> str:
    if not result.tested:
        return f"not checked: {result.reason}"
    return result.headline()


def drift_figure(report: MonitorReport, features: list[MonitoredFeature], reference: np.ndarray,
                 window: np.ndarray, path: Path) -> Path:
    """The drifted features (then the closest calls), served against held out."""
    order = sorted(report.findings, key=lambda f: (not f.drifted, f.p_value))
    names, panels = [], []
    for finding in order:
        if finding.feature in names:
            continue
        names.append(finding.feature)
        if len(names) > SHOWN_FEATURES:
            break
        position = next(i for i, f in enumerate(features) if f.name == finding.feature)
        feature = features[position]
        title = f"{feature.name} (p={finding.p_value:.2g}{', drifted' if finding.drifted else ''})"
        labels = list(feature.labels) if feature.role == "categorical" else None
        panels.append((title, reference[:, position], window[:, position], labels))
    path.parent.mkdir(parents=True, exist_ok=True)
    return distribution_panels(panels, path, f"{report.model_name} v{report.version}: served against held out")
