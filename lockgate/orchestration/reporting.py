"""Human-readable reports: Markdown for Prefect artifacts, text for the terminal."""

from __future__ import annotations

from pathlib import Path

from lockgate.core.records import (
    DistillationReport,
    EvaluationReport,
    Explanation,
    ExportReport,
    GateDecision,
    MonitorReport,
    PipelineResult,
    TrainingResult,
    ValidationSummary,
)
from lockgate.explaining.importance import ranked

SHOWN_METRICS = (
    "accuracy", "balanced_accuracy", "majority_class_rate", "macro_f1", "log_loss", "brier_score", "no_skill_brier_score",
    "rmse", "mse", "no_skill_mse", "mae", "r2", "mean_predictor_rmse", "latency_ms_p50",
)


def validation_markdown(summary: ValidationSummary) -> str:
    lines = [
        f"# Data validation: {summary.dataset}",
        "",
        f"**Verdict:** {summary.verdict()}  ",
        f"Rows: {summary.rows}; family: {summary.family or 'unknown'}; data hash: `{(summary.data_hash or '-')[:16]}`"
        + (" (seen before)" if summary.seen_before else ""),
        "",
        "| check | severity | result | detail |",
        "|---|---|---|---|",
    ]
    failed_first = sorted(summary.checks, key=lambda c: (c.success, c.severity != "blocking"))
    shown = [c for c in failed_first if not c.success] or failed_first[:10]
    for check in shown:
        lines.append(f"| {check.name} | {check.severity} | {'pass' if check.success else 'FAIL'} | {_cell(check.message)} |")
    passed = sum(c.success for c in summary.checks)
    lines += ["", f"{passed} of {len(summary.checks)} checks passed."]
    if summary.contract:
        lines += ["", "## Data contract (column roles)", "", *[f"- {_cell(line)}" for line in summary.contract]]
    if summary.data_docs:
        lines.append(f"Data Docs: `{summary.data_docs}`")
    return "\n".join(lines)


def gate_markdown(decision: GateDecision, report: EvaluationReport) -> str:
    recall = recall_line(report)
    lines = [
        f"# Gate: {'PROMOTE' if decision.promote else 'REJECT'}",
        "",
        metrics_table_markdown(report),
        *(["", recall] if recall else []),
        "",
        "## Reasons",
        *[f"- {reason}" for reason in decision.reasons],
        *(["", "## Warnings", *[f"- {warning}" for warning in decision.warnings]] if decision.warnings else []),
    ]
    return "\n".join(lines)


def metrics_table_markdown(report: EvaluationReport) -> str:
    champion = report.champion_metrics or {}
    header = f"| metric | challenger | champion{' v' + report.champion_version if report.champion_version else ''} |"
    rows = [header, "|---|---|---|"]
    for key in SHOWN_METRICS:
        if key in report.metrics:
            other = f"{champion[key]:.4f}" if key in champion else "-"
            rows.append(f"| {key} | {report.metrics[key]:.4f} | {other} |")
    return "\n".join(rows)


def recall_line(report: EvaluationReport) -> str:
    """Each class's holdout recall and share, rarest first: where an
    imbalanced table's minority class is missed, accuracy alone hides it."""
    rows = [(name, row) for name, row in report.per_class.items() if "recall" in row and "support" in row]
    if not rows:
        return ""
    total = sum(row["support"] for _, row in rows) or 1.0
    rows.sort(key=lambda item: item[1]["support"])
    shown = ", ".join(f"'{name}' {row['recall']:.2f} ({row['support'] / total:.0%} of rows)" for name, row in rows[:12])
    more = f", +{len(rows) - 12} more classes" if len(rows) > 12 else ""
    return f"Recall per class, rarest first: {shown}{more}."


def pipeline_markdown(result: PipelineResult) -> str:
    parts = [f"# Lockgate run: {result.status}", ""]
    if result.model:
        parts += [result.model.sentence(), ""]
    parts.append(validation_markdown(result.validation))
    if result.training:
        parts += ["", training_sentence(result.training)]
    if result.evaluation and result.gate:
        parts += ["", gate_markdown(result.gate, result.evaluation)]
    if result.explanation:
        parts += ["", explanation_sentence(result.explanation)]
    if result.card:
        card = Path(result.card) / "model_card.html"
        parts += ["", f"Model card: [{card.name}]({card.as_uri()}) (and the version's description in MLflow)."]
    if result.note:
        parts += ["", result.note[:1].upper() + result.note[1:] + "."]
    if result.registered:
        replaced = f", replacing version **{result.replaced}** as champion" if result.replaced else " as the first champion"
        parts += ["", f"Registered **{result.registered.name}** version **{result.registered.version}** "
                      f"(run `{result.registered.run_id}`){replaced}."]
    if result.withdrawn:
        parts += ["", f"Version **{result.withdrawn.version}** was registered, then rejected against the champion "
                      "another run promoted meanwhile; it is marked withdrawn and its Bento removed."]
    if result.exports:
        shipped = [r.format for r in result.exports.passed()]
        held = [f"{r.format} ({r.status})" for r in result.exports.results if not r.shipped]
        parts.append(f"Exports shipped: {', '.join(shipped) or 'none'}; not shipped: {', '.join(held) or 'none'}.")
    if result.package:
        parts.append(f"Bento **{result.package.bento_tag}**, verified on {result.package.verified_examples} "
                     f"holdout examples (max |Δp| {result.package.max_abs_difference:.2e}).")
    return "\n".join(parts)


def explanation_sentence(explanation: Explanation) -> str:
    """How the model was explained, with links to its pictures."""
    sentence = f"Explained by {explanation.method}"
    if explanation.steps is not None:
        sentence += (f": up to {explanation.steps} steps, attributions complete within {explanation.tolerance:.0%} on "
                     f"{explanation.complete_share:.0%} of {explanation.examples} examples")
    top = ranked(explanation.ranking())[:5]
    if top:
        sentence += f"; most important: {', '.join(top)}"
    if explanation.champion_note:
        sentence += f"; {explanation.champion_note}"
    links = ", ".join(f"[{Path(p).name}]({Path(p).resolve().as_uri()})" for p in explanation.pictures)
    return sentence + "." + (f" Pictures: {links}." if links else "")


def training_sentence(training: TrainingResult) -> str:
    together = f" by {training.processes} processes together" if training.processes > 1 else ""
    batch = f", global batch {training.global_batch}" if training.global_batch else ""
    resumed = f", resumed after epoch {training.resumed_from_epoch}" if training.resumed_from_epoch else ""
    if training.architecture == "forest":
        length = f"a forest of {training.epochs_run} boosting iterations"
    else:
        length = f"for {training.epochs_run} epochs"
    sentence = f"Trained{together} {length} in {training.seconds:.1f} s{batch}{resumed}: {training.device}."
    if training.choice:
        sentence += f" Model: {training.choice}."
    return sentence + (f" {training.note[:1].upper()}{training.note[1:]}." if training.note else "")


def export_markdown(report: ExportReport) -> str:
    """The exports as a table, the Keras model they were checked against first."""
    passed = len(report.passed())
    lines = [
        "# Model exports",
        "",
        (
            f"Each export was run on {report.examples} holdout examples and compared with the Keras model; "
            f"{passed} of {len(report.results)} passed and are shipped."
        ),
        "",
        "| format | status | agreement | max abs diff | size | latency p50 | reason |",
        "|---|---|---|---|---|---|---|",
        f"| keras | reference | - | - | {_size(report.keras_size_bytes)} | {report.keras_latency_ms_p50:.2f} ms | |",
    ]
    for r in report.results:
        agreement = f"{r.agreement:.2%}" if r.agreement is not None else "-"
        difference = f"{r.max_abs_difference:.2e}" if r.max_abs_difference is not None else "-"
        latency = f"{r.latency_ms_p50:.2f} ms" if r.latency_ms_p50 is not None else "-"
        lines.append(
            f"| {r.format} | {r.status} | {agreement} | {difference} | {_size(r.size_bytes)} | {latency} "
            f"| {_cell(r.reason, 400)} |"
        )
    return "\n".join(lines)


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "-"
    if size_bytes < 1024:
        return f"{size_bytes} B"
    if size_bytes < 1024**2:
        return f"{size_bytes / 1024:.1f} KiB"
    return f"{size_bytes / 1024**2:.1f} MiB"


def distillation_markdown(report: DistillationReport) -> str:
    def ratio(student: float, teacher: float) -> str:
        return f"{student / teacher:.2f}x" if teacher else "-"

    rows = [
        ("holdout " + report.metric, f"{report.teacher_metric:.4f}", f"{report.student_metric:.4f}", ""),
        ("parameters", f"{report.teacher_parameters:,}", f"{report.student_parameters:,}",
         ratio(report.student_parameters, report.teacher_parameters)),
        ("size (.keras)", f"{report.teacher_size_bytes / 1e3:.1f} kB", f"{report.student_size_bytes / 1e3:.1f} kB",
         ratio(report.student_size_bytes, report.teacher_size_bytes)),
        ("latency p50, 1 example", f"{report.teacher_latency_ms_p50:.2f} ms", f"{report.student_latency_ms_p50:.2f} ms",
         ratio(report.student_latency_ms_p50, report.teacher_latency_ms_p50)),
    ]
    lines = [f"# Distillation of champion v{report.teacher_version}", "",
             "| | teacher | student | student / teacher |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {teacher} | {student} | {r} |" for name, teacher, student, r in rows]
    return "\n".join(lines)


def monitor_markdown(report: MonitorReport, figure_uri: str | None = None) -> str:
    """A monitor check: the verdict, each feature's test, the live quality."""
    lines = [f"# {report.model_name} v{report.version}: {'DRIFT' if report.drifted else 'no drift'}", "",
             report.headline, "",
             f"Served rows {report.window_rows} (newest) against {report.reference_rows} held-out rows; "
             f"family-wise false-alarm rate {report.false_alarm_rate:.1%} (Holm); checked {report.checked_at}.", ""]
    if report.live is not None:
        lines += [f"Labels: {report.live.sentence()}.", ""]
    if figure_uri:
        lines += [f"![served against held out]({figure_uri})", ""]
    if report.findings:
        lines += ["| feature | test | p-value | drifted | held out | served |", "|---|---|---|---|---|---|"]
        for f in sorted(report.findings, key=lambda f: (not f.drifted, f.p_value)):
            lines.append(f"| {_cell(f.feature)} | {f.test} | {f.p_value:.3g} | {'yes' if f.drifted else ''} "
                         f"| {_cell(f.reference)} | {_cell(f.window)} |")
    if report.skipped:
        lines += ["", "Not tested: " + "; ".join(report.skipped)]
    if report.run_id:
        lines += ["", f"MLflow run `{report.run_id}`" + (f"; Prefect event `{report.event_id}`" if report.event_id else "")]
    return "\n".join(lines)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """Attach a Markdown artifact to the current Prefect run, if there is one."""
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)


def _cell(text: str, limit: int = 300) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:limit]
