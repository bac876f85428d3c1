import json
from pathlib import Path

from click.testing import CliRunner

from soar.cli.alert import alert

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOTABLE = str(FIXTURES / "splunk" / "notable_with_fields.json")
GENERIC = '{"title": "Disk wiper", "severity": "crit", "time": 1700000000123}'


def test_normalize_prints_a_human_summary_by_default() -> None:
    result = CliRunner().invoke(alert, ["normalize", NOTABLE])
    assert result.exit_code == 0
    assert "title:     Root user use" in result.output
    assert "severity:  informational" in result.output
    assert "users:     root, xxx" in result.output


def test_normalize_reads_stdin_and_prints_one_json_alert() -> None:
    result = CliRunner().invoke(alert, ["normalize", "-", "--json"], input=GENERIC)
    assert result.exit_code == 0
    document = json.loads(result.output)
    assert document["title"] == "Disk wiper"
    assert document["severity"] == "critical"
    assert document["time"] == "2023-11-14T22:13:20.123000Z"


def test_a_batch_prints_a_json_list() -> None:
    batch = str(FIXTURES / "splunk" / "notable_batch.json")
    result = CliRunner().invoke(alert, ["normalize", batch, "--json"])
    assert result.exit_code == 0
    assert [a["severity"] for a in json.loads(result.output)] == ["low", "low"]


def test_a_forced_format_is_used() -> None:
    result = CliRunner().invoke(alert, ["normalize", "-", "--format", "ocsf"], input=GENERIC)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: missing_field: class_uid is required"


def test_a_rejection_exits_2_with_a_json_error() -> None:
    runner = CliRunner()
    result = runner.invoke(alert, ["normalize", "-", "--json"], input='[{"title": 1}]')
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "unknown_format"
    assert error["index"] == 0
    assert set(error) == {"code", "message", "field", "index"}


def test_max_bytes_is_applied() -> None:
    result = CliRunner().invoke(alert, ["normalize", "-", "--max-bytes", "10"], input=GENERIC)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: too_large: ")
