"""The model card of a real-table run (the wine table shipped with
scikit-learn, default explanation settings), as people meet it: answered by
the served model, rendered by a real browser, and shown by a real MLflow
server as the registered version's description."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from lockgate.serving.model_card import CARD_HTML, CARD_MARKDOWN
from tests.browser import rendered_text, screenshot
from tests.integration.stack import Program, clean_env, free_port, wait_until
from tests.services.conftest import in_process

SECTIONS = ["Model details", "Intended use", "Training data", "Evaluation", "Gate decision", "Exports and parity",
            "Explanations", "Changes against the champion", "Limitations and caveats"]


def test_the_card_of_a_real_table_run_is_served_rendered_and_the_versions_description(wine_champion, tmp_path):
    result = wine_champion.result
    assert result.status == "promoted" and result.card
    markdown = (Path(result.card) / CARD_MARKDOWN).read_text()
    assert markdown.startswith(f"# Model card: {result.registered.name} v{result.registered.version}")
    assert [line[3:] for line in markdown.splitlines() if line.startswith("## ")] == SECTIONS
    assert "| alcohol | numeric |" in markdown and "No-skill baseline" in markdown and "| onnx | passed |" in markdown
    assert result.explanation is not None and result.explanation.permutation  # a table: permutation importance

    with in_process(result.package.model_tag) as client:
        page = client.get("/model_card")
        text = client.get("/model_card", params={"format": "markdown"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text[:500]
    assert text.status_code == 200 and text.text == markdown
    assert page.text == (Path(result.card) / CARD_HTML).read_text()
    assert "data:image/png;base64," in page.text  # the importance chart, inline

    served = tmp_path / "served_card.html"
    served.write_text(page.text)
    picture = screenshot(served, tmp_path / "model_card.png")
    print(f"\nmodel card rendered by a browser: {picture}")
    seen = rendered_text(served)
    for title in SECTIONS:
        assert title in seen, f"{title!r} not shown by the browser"

    # A real MLflow server over the workspace's store: the version's description is the card.
    settings = wine_champion.settings
    port = free_port()
    server = Program("mlflow ui", [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
                                   "--port", str(port), "--backend-store-uri", settings.tracking_uri,
                                   "--workers", "1"],
                     clean_env(), tmp_path / "mlflow.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200, 120, "the MLflow server", server)
        version = httpx.get(f"{url}/api/2.0/mlflow/model-versions/get",
                            params={"name": result.registered.name, "version": result.registered.version}, timeout=30)
        assert version.status_code == 200, version.text
        assert version.json()["model_version"]["description"] == markdown
        ui = f"{url}/#/models/{result.registered.name}/versions/{result.registered.version}"
        shown = rendered_text(ui, wait_ms=15000)
        assert f"Model card: {result.registered.name} v{result.registered.version}" in shown, shown[:2000]
        assert "Limitations and caveats" in shown
        print(f"MLflow UI page of the version: {screenshot(ui, tmp_path / 'mlflow_version.png', wait_ms=15000)}")
    finally:
        server.stop()
