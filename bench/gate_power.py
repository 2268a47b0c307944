"""The promotion gate as a statistical test: how often it promotes a
challenger that is truly worse (false promotions) and one that is truly no
worse (true promotions), at holdout sizes from 36 to 3,000 rows, for the
proper-score rule (the default, and with a wider margin) and the earlier
accuracy rule beside it. "Truly worse" is judged on each rule's own score and
margin.

The models are constructed, so their true differences are known. Each row has
true class logits; its label is drawn from them. A model sees those logits
through its own noise (standard deviation `noise`) and a temperature (above
the right one: under-confident, like a network trained a few epochs). The
challenger's noise is correlated with the champion's (rho 0.8), as two
trainings of one architecture on one table are. True accuracy and Brier score
of each model are measured on a pool of 1,000,000 rows. Every repetition draws
a fresh holdout and applies Lockgate's own `decide_classification` to it.

    .venv/bin/python bench/gate_power.py                 # written to docs/benchmarks.md
    .venv/bin/python bench/gate_power.py --repeats 100   # quicker, printed only
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from report import write_section  # bench/ is the script's own folder

from lockgate.core.settings import GateSettings
from lockgate.scoring.gate import HoldoutScores, decide_classification
from lockgate.scoring.stats import brier_losses, macro_f1

CLASSES = 3
SIGNAL = 5.0  # spread of the true logits: the best possible accuracy is about 0.89
CORRELATION = 0.8
CHAMPION = (2.0, 3.0)  # (noise, temperature): noisy and under-confident
SIZES = (36, 100, 360, 3000)


@dataclass(frozen=True)
class Challenger:
    name: str
    noise: float
    temperature: float


CHALLENGERS = (
    Challenger("much worse", 3.0, 3.0),
    Challenger("worse, just beyond a Brier margin of 0.03", 2.47, 3.0),
    Challenger("worse, just beyond a Brier margin of 0.02", 2.34, 3.0),
    Challenger("worse, just beyond the accuracy margin only", 2.17, 3.0),
    Challenger("equal", 2.0, 3.0),
    Challenger("same accuracy, better calibrated", 2.0, 2.0),
    Challenger("slightly better", 1.8, 3.0),
    Challenger("better", 1.5, 2.0),
)


def draw(rng: np.random.Generator, rows: int, challenger: Challenger) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both models' probabilities on `rows` fresh rows."""
    logits = rng.normal(0.0, SIGNAL, (rows, CLASSES))
    truth = _softmax(logits)
    labels = (rng.random(rows)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
    champion_noise = rng.normal(size=(rows, CLASSES))
    own = rng.normal(size=(rows, CLASSES))
    challenger_noise = CORRELATION * champion_noise + np.sqrt(1 - CORRELATION**2) * own
    champion = _softmax((logits + CHAMPION[0] * champion_noise) / CHAMPION[1])
    return labels, _softmax((logits + challenger.noise * challenger_noise) / challenger.temperature), champion


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def true_differences(challenger: Challenger, rows: int = 1_000_000) -> tuple[float, float]:
    """Challenger minus champion, accuracy and Brier score, on a large pool."""
    labels, mine, theirs = draw(np.random.default_rng(12345), rows, challenger)
    accuracy = np.mean(mine.argmax(1) == labels) - np.mean(theirs.argmax(1) == labels)
    brier = brier_losses(labels, mine).mean() - brier_losses(labels, theirs).mean()
    return float(accuracy), float(brier)


def scores(labels: np.ndarray, mine: np.ndarray, theirs: np.ndarray) -> HoldoutScores:
    def metrics(proba: np.ndarray) -> dict[str, float]:
        predicted = proba.argmax(axis=1)
        return {
            "accuracy": float(np.mean(predicted == labels)),
            "macro_f1": macro_f1(labels, predicted, CLASSES),
            "brier_score": float(brier_losses(labels, proba).mean()),
        }

    return HoldoutScores(
        y_true=labels,
        challenger_pred=mine.argmax(axis=1),
        metrics=metrics(mine),
        champion_version="1",
        champion_pred=theirs.argmax(axis=1),
        champion_metrics=metrics(theirs),
        challenger_loss=brier_losses(labels, mine),
        champion_loss=brier_losses(labels, theirs),
    )


RULES = {  # absolute thresholds off: only the comparison with the champion decides
    "Brier, one-sided t, margin 0.03 (default)": GateSettings(min_accuracy=0, min_macro_f1=0, score_margin=0.03),
    "Brier, one-sided t, margin 0.02": GateSettings(min_accuracy=0, min_macro_f1=0, score_margin=0.02),
    "accuracy, bootstrap, margin 0.01 (earlier rule)": GateSettings(min_accuracy=0, min_macro_f1=0, comparison="metric"),
}


def promotion_rates(challenger: Challenger, rows: int, repeats: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    promoted = dict.fromkeys(RULES, 0)
    for _ in range(repeats):
        holdout = scores(*draw(rng, rows, challenger))
        for rule, gate in RULES.items():
            promoted[rule] += decide_classification(holdout, gate).promote
    return {rule: count / repeats for rule, count in promoted.items()}


WORSE, NO_WORSE = "worse beyond the margin", "no worse"


def category(gate: GateSettings, accuracy: float, brier: float) -> str:
    """Truly worse by more than the rule's margin on the rule's own score, or
    truly no worse on either score, or between the two."""
    if gate.comparison == "metric" and accuracy < -gate.regression_margin:
        return WORSE
    if gate.comparison == "proper_score" and brier > gate.score_margin:
        return WORSE
    if brier <= 0.001 and accuracy >= -0.001:  # equal up to the pool's own noise
        return NO_WORSE
    return "worse within the margin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1000, help="holdouts drawn per challenger and size")
    parser.add_argument("--print-only", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    lines = [
        "| challenger | true Δ accuracy | true Δ Brier | truly | rule | "
        + " | ".join(f"n={n}" for n in SIZES) + " |",
        "|---|---:|---:|---|---|" + "---:|" * len(SIZES),
    ]
    summary: dict[tuple[str, str, int], list[float]] = {}
    for index, challenger in enumerate(CHALLENGERS):
        accuracy, brier = true_differences(challenger)
        rates = {n: promotion_rates(challenger, n, args.repeats, seed=1000 * index + n) for n in SIZES}
        for rule, gate in RULES.items():
            truly = category(gate, accuracy, brier)
            cells = " | ".join(f"{rates[n][rule]:.1%}" for n in SIZES)
            lines.append(f"| {challenger.name} | {accuracy:+.4f} | {brier:+.4f} | {truly} | {rule} | {cells} |")
            print(lines[-1], flush=True)
            for n in SIZES:
                summary.setdefault((truly, rule, n), []).append(rates[n][rule])
    lines += ["", "Worst case of each kind (the highest false-promotion rate, the lowest true-promotion rate):", "",
              "| kind | rule | " + " | ".join(f"n={n}" for n in SIZES) + " |", "|---|---|" + "---:|" * len(SIZES)]
    for truly, worst, kind in ((WORSE, max, "false promotions (worse beyond the rule's margin)"),
                               (NO_WORSE, min, "true promotions (no worse)")):
        for rule in RULES:
            cells = " | ".join(f"{worst(summary[(truly, rule, n)]):.1%}" for n in SIZES)
            lines.append(f"| {kind} | {rule} | {cells} |")
    body = "\n".join(lines) + (
        f"\n\n{args.repeats} holdouts per challenger and size; {time.perf_counter() - started:.0f} s. "
        "Goals: false promotions at most 5% at every size; true promotions at least 80% from 360 rows, "
        "and above the accuracy rule's at 36 and 100."
    )
    print(body)
    if not args.print_only:
        write_section("gate_power", f".venv/bin/python bench/gate_power.py --repeats {args.repeats}", body)


if __name__ == "__main__":
    main()
