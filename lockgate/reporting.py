"""Human-readable reports: Markdown for Prefect artifacts, text for the terminal."""

from __future__ import annotations

from lockgate.records import EvaluationReport, GateDecision, PipelineResult, ValidationSummary

SHOWN_METRICS = ("accuracy", "macro_f1", "log_loss", "rmse", "mae", "r2", "mean_predictor_rmse", "latency_ms_p50")


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
    lines = [
        f"# Gate: {'PROMOTE' if decision.promote else 'REJECT'}",
        "",
        metrics_table_markdown(report),
        "",
        "## Reasons",
        *[f"- {reason}" for reason in decision.reasons],
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


def pipeline_markdown(result: PipelineResult) -> str:
    parts = [f"# Lockgate run: {result.status}", ""]
    if result.model:
        parts += [result.model.sentence(), ""]
    parts.append(validation_markdown(result.validation))
    if result.evaluation and result.gate:
        parts += ["", gate_markdown(result.gate, result.evaluation)]
    if result.registered:
        parts += ["", f"Registered **{result.registered.name}** version **{result.registered.version}** "
                      f"(run `{result.registered.run_id}`)."]
    if result.exports:
        shipped = [r.format for r in result.exports.passed()]
        held = [f"{r.format} ({r.status})" for r in result.exports.results if not r.shipped]
        parts.append(f"Exports shipped: {', '.join(shipped) or 'none'}; not shipped: {', '.join(held) or 'none'}.")
    if result.package:
        parts.append(f"Bento **{result.package.bento_tag}**, verified on {result.package.verified_examples} "
                     f"holdout examples (max |Δp| {result.package.max_abs_difference:.2e}).")
    return "\n".join(parts)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    """Attach a Markdown artifact to the current Prefect run, if there is one."""
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(markdown=markdown, key=key, description=description)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]
