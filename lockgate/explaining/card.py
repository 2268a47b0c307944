"""The model card of a registered version: one page a reviewer can read,
generated from what the run knows (Mitchell et al., "Model Cards for Model
Reporting", 2019). Every section is filled, or says why it does not apply.
Markdown is the version's description in MLflow; the HTML (pictures inline)
is what the service answers at GET /model_card."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lockgate.core.locks import atomic_write_text
from lockgate.core.records import (
    DatasetMeta,
    EvaluationReport,
    Explanation,
    ExportReport,
    GateDecision,
    TrainingResult,
    ValidationSummary,
)
from lockgate.core.settings import ExplainSettings
from lockgate.explaining.importance import ranked
from lockgate.scoring.stats import rmse_interval, wilson_interval
from lockgate.serving.model_card import CARD_FOLDER, CARD_HTML, CARD_MARKDOWN

SMALL_HOLDOUT = 200  # rows: below this, intervals are wide
FEW_EXAMPLES = 20  # a class's holdout rows: below this, its recall is a guess
TOP_SHOWN = 10
MAX_SLICES = 8


@dataclass(frozen=True)
class SliceScore:
    """A holdout slice by one important feature, and the model's score on it."""

    feature: str
    value: str
    rows: int
    score: float
    interval: tuple[float, float]


@dataclass(frozen=True)
class ChampionFacts:
    """What the card compares a challenger with."""

    version: str
    metrics: dict[str, float]
    meta: DatasetMeta


@dataclass(frozen=True)
class CardFacts:
    """Everything the card says, from the run's own records."""

    model_name: str
    version: str
    run_id: str
    code_version: str
    training: TrainingResult
    summary: ValidationSummary
    meta: DatasetMeta
    evaluation: EvaluationReport
    gate: GateDecision
    exports: ExportReport | None
    explanation: Explanation | None
    champion: ChampionFacts | None
    y_true: np.ndarray  # holdout labels (class indices) or values
    predicted: np.ndarray  # holdout predicted labels or values
    slices: list[SliceScore] = field(default_factory=list)
    confidence: float = 0.95


def holdout_slices(feature: str, values: np.ndarray, y_true: np.ndarray, predicted: np.ndarray,
                   regression: bool, confidence: float = 0.95) -> list[SliceScore]:
    """The holdout split by `feature`: by category (the most common first),
    or by quartile of a number; accuracy (or RMSE) on each slice."""
    values = np.asarray(values, dtype=object)
    numbers = _as_numbers(values)
    if numbers is not None and len(np.unique(numbers[~np.isnan(numbers)])) > MAX_SLICES:
        edges = np.nanquantile(numbers, [0.25, 0.5, 0.75])
        bins = np.digitize(numbers, edges)
        labels = [f"<= {edges[0]:.4g}", f"{edges[0]:.4g} to {edges[1]:.4g}", f"{edges[1]:.4g} to {edges[2]:.4g}",
                  f"> {edges[2]:.4g}"]
        groups = [(labels[b], (bins == b) & ~np.isnan(numbers)) for b in range(4)]
        groups.append(("missing", np.isnan(numbers)))
    else:
        keys = np.array(["missing" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values])
        shown, counts = np.unique(keys, return_counts=True)
        groups = [(value, keys == value) for value in shown[np.argsort(-counts)][:MAX_SLICES]]
    slices = []
    for value, chosen in groups:
        rows = int(chosen.sum())
        if rows == 0:
            continue
        if regression:
            squared = (predicted[chosen].astype("float64") - y_true[chosen].astype("float64")) ** 2
            score, interval = float(np.sqrt(squared.mean())), rmse_interval(squared, confidence)
        else:
            right = int((predicted[chosen] == y_true[chosen]).sum())
            score, interval = right / rows, wilson_interval(right, rows, confidence)
        slices.append(SliceScore(feature, value, rows, score, interval))
    return slices


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype="float64")
    except (TypeError, ValueError):
        return None


def _interval(low: float, high: float) -> str:
    return "n/a" if not (np.isfinite(low) and np.isfinite(high)) else f"{low:.3f} to {high:.3f}"


class _Card:
    """Sections in order; each either has lines or says why it does not apply."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str, body: list[str], not_applicable: str = "") -> None:
        self.lines += [f"## {title}", ""]
        self.lines += body if body else [f"*Not applicable: {not_applicable}*"]
        self.lines.append("")


def card_markdown(facts: CardFacts, settings: ExplainSettings) -> str:
    meta, report, training = facts.meta, facts.evaluation, facts.training
    regression = report.regression
    card = _Card()
    card.lines += [f"# Model card: {facts.model_name} v{facts.version}", ""]
    card.section("Model details", [
        f"- **Model**: {facts.model_name}, version {facts.version} in the MLflow registry (run `{facts.run_id}`)",
        f"- **Family**: {meta.family} ({meta.task}); architecture **{training.architecture or 'default'}**"
        + (f": {training.choice}" if training.choice else ""),
        f"- **Size**: {_size_words(training)}; trained in {training.seconds:.1f} s on {training.device}"
        + (f" by {training.processes} processes" if training.processes > 1 else ""),
        f"- **Input**: {_input_words(meta)}",
        "- **Output**: " + (f"the value of `{meta.target}`" if regression else
                            f"probabilities of {len(meta.class_names)} classes of `{meta.target}`: "
                            + ", ".join(f"`{c}`" for c in meta.class_names[:20]) + (" ..." if len(meta.class_names) > 20 else "")),
        f"- **Code**: {facts.code_version}",
    ])
    card.section("Intended use", [f"- **Intended**: {settings.intended_use}", f"- **Out of scope**: {settings.out_of_scope}"])
    card.section("Training data", _data_lines(facts))
    card.section("Evaluation", _evaluation_lines(facts))
    card.section("Gate decision", _gate_lines(facts.gate))
    card.section("Exports and parity", _export_lines(facts.exports),
                 "no export was made (the gate rejected the model before exporting)")
    explained, why_not = _explanation_lines(facts.explanation)
    card.section("Explanations", explained, why_not)
    changes, no_champion = _change_lines(facts)
    card.section("Changes against the champion", changes, no_champion)
    card.section("Limitations and caveats", _limitations(facts))
    return "\n".join(card.lines).rstrip() + "\n"


def _size_words(training: TrainingResult) -> str:
    if training.architecture == "forest":
        return f"a forest of {training.epochs_run} boosting iterations"
    if "forest" in training.architecture:
        return f"{training.architecture}: the average of a network and a forest"
    return f"{training.parameters:,} parameters, {training.epochs_run} epochs"


def _input_words(meta: DatasetMeta) -> str:
    if meta.contract:
        return f"a table row of {len(meta.table_contract().used)} columns (records as in the training table)"
    if meta.inputs == "texts":
        return f"text (column `{meta.text_column}`)"
    return f"an array of shape {tuple(meta.input_shape)}" + (f", pixel values up to {meta.pixel_scale:g}"
                                                              if meta.inputs == "images" else "")


def _data_lines(facts: CardFacts) -> list[str]:
    meta, summary = facts.meta, facts.summary
    lines = [
        f"- **Data set**: {summary.dataset}, {summary.rows:,} rows; content hash `{summary.data_hash or meta.data_hash}`",
        f"- **Validation**: {summary.verdict()}",
        f"- **Split**: training, validation (model choice and early stopping) and holdout "
        f"({len(facts.y_true):,} rows, used only for the numbers below)",
    ]
    if summary.warnings:
        lines.append("- **Validation warnings**: " + "; ".join(f"{c.name}: {c.message}" for c in summary.warnings[:5]))
    contract = meta.table_contract()
    if contract is not None:
        lines += ["", "| column | role | profile |", "|---|---|---|"]
        for spec, described in zip(contract.columns, contract.describe()):
            lines.append(f"| {spec.name} | {spec.role if spec.used else 'excluded: ' + spec.role} | "
                         f"{described.split(': ', 1)[-1].replace('|', '/')} |")
    if meta.class_names and not facts.evaluation.regression:
        counts = np.bincount(facts.y_true.astype(int), minlength=len(meta.class_names))
        lines += ["", "- **Holdout classes**: " + ", ".join(f"`{n}` {c}" for n, c in zip(meta.class_names[:20], counts))]
    return lines


def _evaluation_lines(facts: CardFacts) -> list[str]:
    report, confidence = facts.evaluation, facts.confidence
    metrics, y, predicted = report.metrics, facts.y_true, facts.predicted
    lines = [f"Holdout of {len(y):,} rows; intervals are {confidence:.0%}.", "", "| metric | value | interval |", "|---|---|---|"]
    if report.regression:
        squared = (predicted.astype("float64") - y.astype("float64")) ** 2
        lines.append(f"| RMSE | {metrics.get('rmse', float('nan')):.4g} | {_interval(*rmse_interval(squared, confidence))} |")
        for key in ("mae", "r2", "mean_predictor_rmse"):
            if key in metrics:
                lines.append(f"| {key} | {metrics[key]:.4g} | |")
    else:
        right = int((predicted == y).sum())
        lines.append(f"| accuracy | {metrics.get('accuracy', float('nan')):.4f} | "
                     f"{_interval(*wilson_interval(right, len(y), confidence))} |")
        for key in ("balanced_accuracy", "macro_f1", "log_loss", "brier_score", "majority_class_rate"):
            if key in metrics:
                lines.append(f"| {key} | {metrics[key]:.4f} | |")
    baseline = metrics.get("no_skill_mse", metrics.get("no_skill_brier_score"))
    if baseline is not None:
        lines += ["", f"No-skill baseline ({report.baseline}): {'MSE' if report.regression else 'Brier score'} {baseline:.4g}."]
    if report.per_class:
        lines += ["", "| class | holdout rows | precision | recall | recall interval |", "|---|---|---|---|---|"]
        for index, (name, row) in enumerate(report.per_class.items()):
            support = int(row.get("support", 0))
            right = int(((predicted == index) & (y == index)).sum())
            lines.append(f"| {name} | {support} | {row.get('precision', 0):.3f} | {row.get('recall', 0):.3f} | "
                         f"{_interval(*wilson_interval(right, support, confidence))} |")
    if facts.slices:
        what = "RMSE" if report.regression else "accuracy"
        lines += ["", f"By `{facts.slices[0].feature}`, the most important feature:", "",
                  f"| slice | rows | {what} | interval |", "|---|---|---|---|"]
        lines += [f"| {s.value} | {s.rows} | {s.score:.4g} | {_interval(*s.interval)} |" for s in facts.slices]
    return lines


def _gate_lines(gate: GateDecision) -> list[str]:
    lines = [f"**{'PROMOTED' if gate.promote else 'REJECTED'}** on {gate.metric}: {gate.challenger:.4g}"
             + (f" against the champion's {gate.champion:.4g}" if gate.champion is not None else "")]
    lines += [f"- {reason}" for reason in gate.reasons]
    if gate.margin is not None and gate.detectable is not None:
        lines.append(f"- Power: the holdout detects a difference of {gate.detectable:.4g} at the stated power; "
                     f"the allowed margin is {gate.margin:.4g} ({'resolved' if gate.resolved else 'not resolved'})")
    if gate.no_skill is not None:
        n = gate.no_skill
        lines.append(f"- Against no skill ({n.baseline}): {n.score} {n.model_score:.4g} vs {n.baseline_score:.4g}; "
                     f"improvement at least {n.improvement_low:.4g}, detectable {n.detectable:.4g}")
    lines += [f"- Warning: {w}" for w in gate.warnings]
    return lines


def _export_lines(exports: ExportReport | None) -> list[str]:
    if exports is None or not exports.results:
        return []
    lines = [f"Each export was compared with the Keras model on {exports.examples} holdout examples.", "",
             "| format | status | label agreement | max difference | latency (ms) | size |", "|---|---|---|---|---|---|"]
    for r in exports.results:
        status = r.status if r.shipped else f"{r.status}: {r.reason[:120]}".replace("|", "/")
        lines.append(f"| {r.format} | {status} | {_maybe(r.agreement, '.4f')} | {_maybe(r.max_abs_difference, '.2e')} | "
                     f"{_maybe(r.latency_ms_p50, '.3f')} | {_maybe(r.size_bytes and r.size_bytes / 1024, ',.0f')} KiB |")
    return lines


def _maybe(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _explanation_lines(explanation: Explanation | None) -> tuple[list[str], str]:
    if explanation is None:
        return [], "explanations are turned off (explain.enabled)"
    lines = [f"Method: {explanation.method}."]
    if explanation.steps is not None:
        lines.append(f"Integrated gradients on {explanation.examples} holdout examples from {explanation.baseline}, "
                     f"up to {explanation.steps} steps (doubled per example until it passed): attributions sum to f(x) - f(baseline) within "
                     f"{explanation.tolerance:.0%} on {explanation.complete_share:.1%} of examples "
                     f"(largest error {explanation.max_relative_error:.2%}).")
    elif explanation.integrated_gradients:
        lines.append(f"Integrated gradients: not applicable, {explanation.integrated_gradients}.")
    if explanation.agreement_ndcg is not None:
        lines.append(f"Agreement of the two rankings: nDCG {explanation.agreement_ndcg:.3f}, Spearman "
                     f"{explanation.agreement_spearman if explanation.agreement_spearman is not None else float('nan'):.3f}.")
    ranking = explanation.ranking()
    if ranking:
        kind = "holdout loss rise when shuffled" if explanation.permutation else "mean absolute attribution"
        lines += ["", f"| rank | feature | {kind} |", "|---|---|---|"]
        lines += [f"| {i} | {name} | {ranking[name]:.4g} |" for i, name in enumerate(ranked(ranking)[:TOP_SHOWN], 1)]
    if explanation.pictures:
        lines += ["", "Pictures (in the run's `explanation/` artifacts): "
                  + ", ".join(f"`{Path(p).name}`" for p in explanation.pictures)]
    if explanation.method == "none":
        return [], explanation.integrated_gradients or "no explanation method applies to this model"
    return lines, ""


def _change_lines(facts: CardFacts) -> tuple[list[str], str]:
    champion = facts.champion
    if champion is None:
        return [], "a first model: there is no champion to compare with"
    lines = [f"Against champion v{champion.version}, on this run's holdout:", "", "| metric | champion | this version | change |",
             "|---|---|---|---|"]
    mine = facts.evaluation.metrics
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "brier_score", "rmse", "mae", "r2"):
        if key in mine and key in champion.metrics:
            lines.append(f"| {key} | {champion.metrics[key]:.4g} | {mine[key]:.4g} | {mine[key] - champion.metrics[key]:+.4g} |")
    lines += ["", "Data contract: " + _contract_changes(champion.meta, facts.meta)]
    explanation = facts.explanation
    if explanation is not None:
        lines.append(f"Attributions: {explanation.champion_note or 'not compared'}.")
        if explanation.champion_top:
            ours = ranked(explanation.ranking())[: len(explanation.champion_top)]
            lines.append(f"Top features: champion {', '.join(explanation.champion_top)}; this version {', '.join(ours) or '-'}.")
    return lines, ""


def _contract_changes(before: DatasetMeta, after: DatasetMeta) -> str:
    old, new = before.table_contract(), after.table_contract()
    if old is None or new is None:
        same = before.input_shape == after.input_shape and before.class_names == after.class_names
        return "same input shape and classes" if same else (
            f"input shape {before.input_shape} -> {after.input_shape}, classes {len(before.class_names)} -> {len(after.class_names)}")
    roles_before = {c.name: (c.role if c.used else f"excluded {c.role}") for c in old.columns}
    roles_after = {c.name: (c.role if c.used else f"excluded {c.role}") for c in new.columns}
    changes = [f"`{n}` added ({roles_after[n]})" for n in roles_after if n not in roles_before]
    changes += [f"`{n}` removed" for n in roles_before if n not in roles_after]
    changes += [f"`{n}` {roles_before[n]} -> {roles_after[n]}" for n in roles_after
                if n in roles_before and roles_before[n] != roles_after[n]]
    return "; ".join(changes) if changes else "the same columns with the same roles"


def _limitations(facts: CardFacts) -> list[str]:
    lines = []
    holdout = len(facts.y_true)
    if holdout < SMALL_HOLDOUT:
        lines.append(f"- Small holdout ({holdout} rows): the intervals above are wide.")
    rare = [name for name, row in facts.evaluation.per_class.items() if row.get("support", 0) < FEW_EXAMPLES]
    if rare:
        lines.append(f"- Classes with fewer than {FEW_EXAMPLES} holdout rows, whose figures are rough: "
                     + ", ".join(f"`{n}`" for n in rare[:20]))
    contract = facts.meta.table_contract()
    if contract is not None and contract.excluded:
        lines.append("- Columns the model does not read: " + ", ".join(f"`{c.name}` ({c.role})" for c in contract.excluded))
    if facts.gate.resolved is False:
        lines.append("- The gate's comparison was not resolved: the holdout cannot detect a difference as small as the margin.")
    explanation = facts.explanation
    if explanation is not None and explanation.complete_share is not None and explanation.complete_share < 0.99:
        lines.append(f"- Attributions passed the completeness check on only {explanation.complete_share:.1%} of examples.")
    if facts.summary.warnings:
        lines.append(f"- Validation raised {len(facts.summary.warnings)} warnings (under Training data).")
    lines.append("- Numbers describe data drawn like the training data; the monitor reports when served data moves away.")
    return lines


def card_html(markdown_text: str, pictures: list[str]) -> str:
    """The card as one self-contained page: the Markdown rendered, pictures inline."""
    import markdown  # deferred: only writing a card renders Markdown

    body = markdown.markdown(markdown_text, extensions=["tables"])
    images = []
    for picture in pictures:
        path = Path(picture)
        if path.suffix == ".png" and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode()
            images.append(f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
                          f"<figcaption>{html.escape(path.name)}</figcaption></figure>")
        elif path.suffix == ".html" and path.is_file():
            images.append(f"<section class='tokens'>{_page_body(path.read_text(encoding='utf-8'))}</section>")
    title = markdown_text.splitlines()[0].lstrip("# ").strip() if markdown_text else "Model card"
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}"
            + ("<h2>Pictures</h2>" + "".join(images) if images else "") + "</body></html>")


def _page_body(page: str) -> str:
    """What follows a small page's <title>, to nest it in the card."""
    return page.split("</title>", 1)[-1]


_STYLE = ("body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4;color:#222}"
          "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
          "th{background:#f2f2f2}h1{border-bottom:2px solid #333}h2{margin-top:1.6rem;border-bottom:1px solid #ddd}"
          "img{max-width:100%}figure{margin:1rem 0}figcaption{font-size:.8rem;color:#666}")


def write_card(facts: CardFacts, settings: ExplainSettings, run_folder: Path) -> Path:
    """The card's Markdown and HTML under `run_folder/card/`; the folder."""
    folder = run_folder / CARD_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    text = card_markdown(facts, settings)
    atomic_write_text(folder / CARD_MARKDOWN, text)
    atomic_write_text(folder / CARD_HTML, card_html(text, facts.explanation.pictures if facts.explanation else []))
    return folder
