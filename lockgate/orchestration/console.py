"""The end-of-run summary printed by `lockgate run`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lockgate.core.records import PipelineResult, ValidationSummary
from lockgate.core.settings import LockgateSettings
from lockgate.orchestration.reporting import SHOWN_METRICS, explanation_sentence, recall_line, training_sentence


def print_validation_failure(console: Console, summary: ValidationSummary) -> None:
    console.print(f"\n[bold red]Validation failed[/] for {summary.dataset}: {summary.verdict()}")
    table = Table("check", "severity", "problem")
    for check in summary.checks:
        if not check.success:
            table.add_row(check.name, check.severity, check.message)
    console.print(table)
    if summary.data_docs:
        console.print(f"Data Docs: {summary.data_docs}")
    console.print("Nothing was trained or registered; the champion is unchanged.")


def print_result(console: Console, result: PipelineResult, settings: LockgateSettings) -> None:
    summary = result.validation
    console.rule("[bold]Summary")
    if result.model:
        console.print(result.model.sentence())
    seen = " (data seen before)" if summary.seen_before else ""
    console.print(f"Validation: {summary.verdict()} on {summary.rows} rows{seen}")
    if summary.contract:
        console.print("Columns:")
        for line in summary.contract[:30]:
            console.print(f"  {line}", markup=False)
        if len(summary.contract) > 30:
            console.print(f"  ... {len(summary.contract) - 30} more (see the validation report)")
    for check in summary.warnings:
        console.print(f"  [yellow]warning[/] {check.name}: {check.message}")
    if summary.data_docs:
        console.print(f"Data Docs:  {summary.data_docs}")
    if result.training:
        console.print(training_sentence(result.training), markup=False)
    if result.evaluation:
        report = result.evaluation
        champion = report.champion_metrics or {}
        table = Table("holdout metric", "challenger", f"champion v{report.champion_version}" if report.champion_version else "champion")
        for key in SHOWN_METRICS:
            if key in report.metrics:
                table.add_row(key, f"{report.metrics[key]:.4f}", f"{champion[key]:.4f}" if key in champion else "-")
        console.print(table)
        recall = recall_line(report)
        if recall:
            console.print(recall, markup=False)
    if result.distillation:
        d = result.distillation
        table = Table("distillation", f"teacher v{d.teacher_version}", "student")
        table.add_row(f"holdout {d.metric}", f"{d.teacher_metric:.4f}", f"{d.student_metric:.4f}")
        table.add_row("parameters", f"{d.teacher_parameters:,}", f"{d.student_parameters:,}")
        table.add_row("size", f"{d.teacher_size_bytes / 1e3:.1f} kB", f"{d.student_size_bytes / 1e3:.1f} kB")
        table.add_row("latency p50", f"{d.teacher_latency_ms_p50:.2f} ms", f"{d.student_latency_ms_p50:.2f} ms")
        console.print(table)
    if result.exports:
        for export in result.exports.results:
            status = "[green]shipped[/]" if export.shipped else f"[yellow]not shipped[/] ({export.status}: {export.reason})"
            console.print(f"Export {export.format}: {status}")
    if result.gate:
        colour = "green" if result.gate.promote else "red"
        console.print(f"Gate: [bold {colour}]{'PROMOTE' if result.gate.promote else 'REJECT'}[/]")
        for reason in result.gate.reasons:
            console.print(f"  - {reason}")
        for warning in result.gate.warnings:
            console.print(f"  [yellow]warning[/] {warning}", markup=True)
    if result.explanation:
        console.print(explanation_sentence(result.explanation).split(" Pictures:")[0], markup=False)
    if result.card:
        console.print(f"Model card: {result.card}/model_card.html", markup=False)
    if result.status == "unchanged":
        console.print(f"[bold]{(result.note or 'nothing changed').capitalize()}[/]")
        console.print("Nothing was trained or registered.")
    elif result.registered and result.package:
        replaced = f", replacing version {result.replaced}" if result.replaced else ""
        console.print(
            f"Champion: [bold]{result.registered.name}[/] version {result.registered.version} "
            f"(MLflow run {result.registered.run_id}){replaced}"
        )
        console.print(f"Bento:    {result.package.bento_tag} (answered {result.package.verified_examples} holdout examples)")
    elif result.withdrawn:
        current = result.evaluation.champion_version if result.evaluation else None
        console.print(
            f"Version {result.withdrawn.version} was registered, then rejected: it is marked withdrawn and its Bento "
            f"removed. The champion is version {current}, promoted by another run meanwhile."
        )
    elif result.status == "rejected":
        console.print("Nothing registered; the champion is unchanged.")
    console.print("\nLook around:")
    console.print(f"  mlflow ui --backend-store-uri {result.tracking_uri}")
    console.print(f"  BENTOML_HOME={settings.bentoml_home} bentoml list")
    if result.package:
        console.print(
            f"  LOCKGATE_HOME={settings.home} LOCKGATE_API_KEYS=<key> lockgate serve --bento {result.package.bento_tag}"
        )
