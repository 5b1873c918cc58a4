"""``pbx-router evaluate`` as an admin runs it: a report on a corpus, thresholds for CI, clear
errors for a malformed corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pbx_router.cli import main

ROOT = Path(__file__).resolve().parents[2]
CLINIC = ROOT / "examples" / "clinic.yaml"

CORPUS = """id\ttext\tintent\talso\ttags
t-1\tcan you refill my blood pressure pills\tprescription_refill\t\t
t-2\tI'd like to book a physical\tappointment_new\t\t
t-3\twhat are your hours on saturday\toffice_hours\t\t
t-4\tmy husband is on the floor and won't wake up\temergency\t\temergency_no_keyword
t-5\tI need a refill and I also want to make an appointment\tprescription_refill\tappointment_new\ttwo_requests
t-6\tqwerty zxcv\tbilling\t\t
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "corpus.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_report_counts_what_an_admin_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write(tmp_path, CORPUS)
    assert main(["evaluate", "-r", str(CLINIC), str(corpus), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 6
    assert summary["emergencies"] == 1 and summary["emergency_recall"] == 1.0
    assert summary["emergencies_routed_to_a_person"] == 1
    assert summary["two_requests"] == 1 and summary["both_requests_recognised"] == 1
    # The nonsense row is the one failure: 5 of 6.
    assert summary["accuracy"] == pytest.approx(5 / 6, abs=1e-3)
    assert summary["confusions"] == [{"expected": "billing", "got": "(not understood)", "count": 1}]


def test_human_report_lists_the_failed_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write(tmp_path, CORPUS)
    assert main(["evaluate", "-r", str(CLINIC), str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "accuracy: 83.3%" in out
    assert "t-6: expected billing, got (not understood)" in out
    assert "prescription_refill" in out  # the per-intent table


def test_thresholds_fail_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = write(tmp_path, CORPUS)
    assert main(["evaluate", "-r", str(CLINIC), str(corpus), "--min-accuracy", "0.9"]) == 1
    assert "FAILED: accuracy 0.833 < 0.9" in capsys.readouterr().err
    assert main(["evaluate", "-r", str(CLINIC), str(corpus), "--min-accuracy", "0.8",
                 "--min-emergency-recall", "1.0", "--max-false-emergency", "0"]) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id\ttext\tintent\nx\t\tbilling\n", "corpus.tsv:2: id, text and intent are required"),
        ("id\ttext\tintent\nx\thi\tbilling\nx\tho\tbilling\n", "corpus.tsv:3: duplicate id 'x'"),
        ("text\tintent\nhi\tbilling\n", "corpus.tsv:1: header must start with id, text, intent"),
        ("id\ttext\tintent\nx\thi\tno_such_intent\n", "intents the rules do not define: no_such_intent"),
    ],
)
def test_a_malformed_corpus_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    corpus = write(tmp_path, text)
    assert main(["evaluate", "-r", str(CLINIC), str(corpus)]) == 2
    assert message in capsys.readouterr().err
