"""The `lockgate` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markdown import Markdown

from lockgate.core.settings import apply_environment, get_settings, reset_settings
from lockgate.families import FAMILIES
from lockgate.orchestration.console import print_result, print_validation_failure
from lockgate.orchestration.prefect_server import ServerStartFailed, ensure_server, running_server, stop_server
from lockgate.orchestration.reporting import monitor_markdown, pipeline_markdown, validation_markdown
from lockgate.registry.tracking import champion_version

# The choices in --help, from the family registry.
FAMILY_NAMES = ", ".join(FAMILIES)
ARCHITECTURE_NAMES = ", ".join(dict.fromkeys(a for f in FAMILIES.values() for a in f.architectures))

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Lockgate: a model rises gate by gate, from data validation to a served Bento.",
)

RUN_EXAMPLES = """
Examples:

  lockgate run                                   # the shipped handwritten digits

  lockgate run --data wine.csv --target target   # your table, label column 'target'

  lockgate run --data photos/ --epochs 30        # one sub-folder of images per class

  lockgate run --data arrays.npz                 # arrays 'x' and 'y'

  lockgate run --data reviews.csv --target sentiment        # a text column: text classification

  lockgate run --data aclImdb/train --family text            # one folder of .txt files per class

  lockgate run --data houses.csv --target price              # a numeric target: regression

  lockgate run --data photos/ --architecture cifar --augment

  lockgate run --workers 2                       # one model trained by 2 processes together

  lockgate run --distil                          # a smaller student of the digits champion

  lockgate run --force                           # retrain even if nothing changed

Settings come from LOCKGATE_* variables or a YAML file (--config), e.g.
LOCKGATE_GATE__MIN_ACCURACY=0.9. Exit status: 0 when the run completed
(promoted or rejected by the gate), 2 when validation failed, 1 when a step failed.
"""


def _prepare(home: Optional[Path], config: Optional[Path], overrides: dict[str, str]):
    if home is not None:
        os.environ["LOCKGATE_HOME"] = str(home)
    if config is not None:
        os.environ["LOCKGATE_CONFIG"] = str(config)
    for key, value in overrides.items():
        os.environ[key] = value
    reset_settings()
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"Invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None
    apply_environment(settings)
    return settings


@app.command(help="Run the gated training pipeline on a data set." + RUN_EXAMPLES)
def run(
    data: str = typer.Option(
        "digits", help="digits, mnist, cifar10, imdb, or a .csv/.parquet/.npz file, or a folder of images or .txt files"
    ),
    target: Optional[str] = typer.Option(None, help="label (or value, for regression) column of a table"),
    epochs: Optional[int] = typer.Option(None, min=1, help="maximum training epochs (early stopping may end sooner)"),
    family: Optional[str] = typer.Option(None, help=f"{FAMILY_NAMES} (default: decided from the data)"),
    architecture: Optional[str] = typer.Option(
        None, help=f"{ARCHITECTURE_NAMES} (default: the family's; "
        "a table trains mlp and forest and keeps the better on the validation split)"
    ),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="augment training images"),
    workers: Optional[int] = typer.Option(
        None, min=1, help="processes that train the model together (data parallelism; --epochs and the batch are unchanged)"
    ),
    distil: bool = typer.Option(
        False, "--distil", help="train a narrower student of the current champion on its predictions (same gates)"
    ),
    model_name: Optional[str] = typer.Option(None, help="registered model name (default lockgate-<data set>)"),
    home: Optional[Path] = typer.Option(None, help="workspace folder (default ./.lockgate or LOCKGATE_HOME)"),
    config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="YAML settings file"),
    report: Optional[Path] = typer.Option(None, dir_okay=False, help="also write the run's Markdown report here (e.g. a CI job summary)"),
    force: bool = typer.Option(
        False, "--force", help="train even when the champion was trained on exactly this data, settings and code"
    ),
) -> None:
    chosen = {"EPOCHS": epochs, "FAMILY": family, "ARCHITECTURE": architecture, "AUGMENT": augment, "WORKERS": workers}
    overrides = {f"LOCKGATE_TRAINING__{key}": str(value).lower() if isinstance(value, bool) else str(value)
                 for key, value in chosen.items() if value is not None}
    settings = _prepare(home, config, overrides)
    console = Console()
    console.rule(f"[bold]Lockgate[/]  data={data}  workspace={settings.home}")
    _use_local_prefect_server(settings, console)
    # deferred: the flows import Prefect, seconds that the other commands do not need
    from flows.training import ValidationFailed, training_pipeline
    try:
        result = training_pipeline(
            data=data, target=target, model_name=model_name, settings=settings, distil=distil, force=force
        )
    except ValidationFailed as failure:
        print_validation_failure(console, failure.summary)
        if report is not None:
                    report.write_text(validation_markdown(failure.summary) + "\n")
        raise typer.Exit(2)
    except Exception as exc:  # a step failed after its retries
        console.print(f"\n[bold red]Run failed:[/] {type(exc).__name__}: {exc}")
        console.print("Nothing was promoted; the champion is unchanged.")
        raise typer.Exit(1)
    if report is not None:
            report.write_text(pipeline_markdown(result) + "\n")
    print_result(console, result, settings)


def _use_local_prefect_server(settings, console) -> None:
    """Report to the workspace's long-lived Prefect server (started now if
    none is up), unless PREFECT_API_URL names one or settings ask for the
    temporary server; if it cannot start, fall back to the temporary one."""
    if os.environ.get("PREFECT_API_URL") or settings.prefect_server != "local":
        return
    fresh = running_server(settings) is None
    if fresh:
        console.print("Starting the workspace's Prefect server (once; `lockgate server stop` ends it) ...")
    try:
        server = ensure_server(settings)
    except ServerStartFailed as exc:
        console.print(f"[yellow]{exc}[/]: this run uses Prefect's temporary server instead")
        return
    os.environ["PREFECT_API_URL"] = server.url
    console.print(f"Prefect server: {server.url.removesuffix('/api')}")


@app.command(help="Check the served champions' traffic for drift now, and print the report."
             "\n\nExample:\n\n  lockgate monitor --model-name lockgate-penguins")
def monitor(
    model_name: Optional[str] = typer.Option(None, help="the model to check (default: every model whose service logged traffic)"),
    home: Optional[Path] = typer.Option(None, help="workspace folder (default ./.lockgate or LOCKGATE_HOME)"),
    config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="YAML settings file"),
) -> None:
    settings = _prepare(home, config, {})
    console = Console()
    _use_local_prefect_server(settings, console)
    # deferred: the flows import Prefect, seconds that the other commands do not need
    from flows.monitor import monitor as monitor_flow

    try:
        reports = monitor_flow(model_name=model_name)
    except Exception as exc:  # a step failed after its retries
        console.print(f"[bold red]Monitor failed:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(1)
    for report in reports:
        console.print(Markdown(monitor_markdown(report)))


server_app = typer.Typer(help="The workspace's long-lived local Prefect server, which `lockgate run` reports to.")
app.add_typer(server_app, name="server")


@server_app.command("start", help="Start the workspace's Prefect server (or show the running one).")
def server_start(home: Optional[Path] = typer.Option(None, help="workspace folder")) -> None:
    settings = _prepare(home, None, {})
    try:
        server = ensure_server(settings)
    except ServerStartFailed as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Prefect server for {settings.home}: {server.url.removesuffix('/api')} (pid {server.pid}, log {server.log})")
    typer.echo(f"  PREFECT_API_URL={server.url}")


@server_app.command("stop", help="Stop the workspace's Prefect server.")
def server_stop(home: Optional[Path] = typer.Option(None, help="workspace folder")) -> None:
    settings = _prepare(home, None, {})
    typer.echo("stopped" if stop_server(settings) else "no Prefect server was running for this workspace")


@server_app.command("status", help="Say whether the workspace's Prefect server is up; exit 1 if not.")
def server_status(home: Optional[Path] = typer.Option(None, help="workspace folder")) -> None:
    settings = _prepare(home, None, {})
    server = running_server(settings)
    if server is None:
        typer.echo("no Prefect server is running for this workspace")
        raise typer.Exit(1)
    typer.echo(f"up: {server.url.removesuffix('/api')} (pid {server.pid})")


DEPLOY_EXAMPLES = """
Examples:

  PREFECT_API_URL=http://127.0.0.1:4200/api lockgate deploy

  lockgate deploy --pool lockgate-k8s             # a Kubernetes work pool (set LOCKGATE_DEPLOY__IMAGE)

  LOCKGATE_DEPLOY__SCHEDULE_CRON='30 2 * * *' lockgate deploy

Registers 'lockgate-retrain/scheduled' (cron from settings) and
'lockgate-retrain/on-demand'. A process work pool of that name is created when
missing. Then start a worker: prefect worker start --pool lockgate
"""


@app.command(help="Register the retraining deployments with the Prefect server." + DEPLOY_EXAMPLES)
def deploy(
    pool: Optional[str] = typer.Option(None, help="work pool (default: settings' deploy.work_pool, 'lockgate')"),
    home: Optional[Path] = typer.Option(None, help="workspace folder"),
    config: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="YAML settings file"),
) -> None:
    settings = _prepare(home, config, {})
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        typer.echo("Deployments live on a Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api).")
        raise typer.Exit(2)
    # deferred: the flows import Prefect, seconds that the other commands do not need
    from flows.deployments import FLOW_NAME, register_deployments

    pool_name = pool or settings.deploy.work_pool
    if _ensure_process_pool(pool_name):
        typer.echo(f"created process work pool '{pool_name}'")
    for name, deployment_id in register_deployments(settings, pool_name).items():
        typer.echo(f"deployment {FLOW_NAME}/{name}: {deployment_id} (work pool '{pool_name}')")
    typer.echo(f"schedule of {FLOW_NAME}/scheduled: '{settings.deploy.schedule_cron}' ({settings.deploy.schedule_timezone})")
    typer.echo(f"server: {api_url}")


def _ensure_process_pool(name: str) -> bool:
    """Create a process work pool unless one of that name exists; True if created."""
    # deferred: Prefect takes seconds to import; code that does not orchestrate skips it
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=name, type="process", base_job_template=template))
            return True


@app.command(help="Serve the champion's Bento (or a Bento tag) with `bentoml serve`.")
def serve(
    bento: Optional[str] = typer.Option(None, help="a built Bento tag, e.g. lockgate:v3-1a2b3c4d; default: the champion's"),
    port: int = typer.Option(3000),
    host: str = typer.Option("127.0.0.1"),
    home: Optional[Path] = typer.Option(None, help="workspace folder"),
) -> None:
    settings = _prepare(home, None, {})
    target = bento or _champion_bento(settings.home)
    command = [str(Path(sys.executable).with_name("bentoml")), "serve", target, "--host", host, "--port", str(port)]
    cwd = Path(__file__).resolve().parent.parent
    # The service logs traffic under the workspace; bentoml runs it from the checkout.
    os.environ["LOCKGATE_HOME"] = str(settings.home.resolve())
    typer.echo(f"serving {target} from workspace {settings.home} on http://{host}:{port}")
    os.chdir(cwd)
    os.execv(command[0], command)


def _champion_bento(home: Path) -> str:
    """The Bento the last promotion built, as recorded beside the alias."""
    pointer = home / "champion.json"
    if not pointer.is_file():
        typer.echo(f"no champion in {home}: run `lockgate run` first, or pass --bento TAG")
        raise typer.Exit(1)
    recorded = json.loads(pointer.read_text())
    if "bento" not in recorded:
        typer.echo(f"{pointer} names no Bento; pass --bento TAG")
        raise typer.Exit(1)
    return recorded["bento"]


@app.command(help="Show the current champion of a model.")
def champion(
    model_name: str = typer.Argument("lockgate-digits"),
    home: Optional[Path] = typer.Option(None, help="workspace folder"),
) -> None:
    settings = _prepare(home, None, {})
    version = champion_version(settings, model_name)
    if version is None:
        typer.echo(f"{model_name} has no champion yet")
        raise typer.Exit(1)
    typer.echo(f"{model_name} champion: version {version.version} (run {version.run_id})")
    for key, value in sorted(version.tags.items()):
        typer.echo(f"  {key}: {value}")


if __name__ == "__main__":
    app()
