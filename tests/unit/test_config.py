"""Settings: a TOML file, then `SOAR_*` variables on top; bad settings are a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from soar.config import load_settings
from soar.errors import ConfigError
from soar.models import AlertFormat


def test_defaults_hold_without_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOAR_CONFIG", raising=False)
    settings = load_settings()
    assert settings.ingest.max_message_bytes == 1_048_576
    assert settings.playbooks == Path("playbooks")


def test_the_environment_wins_over_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "soar.toml"
    path.write_text(
        'playbooks = "/srv/playbooks"\n'
        "[ingest]\nmax_message_bytes = 4096\nmax_depth = 10\n"
        '[ingest.formats]\n"siem.notables" = "splunk"\n'
        '[directory]\nexecutives = ["ciso@example.com"]\n'
    )
    monkeypatch.setenv("SOAR_CONFIG", str(path))
    monkeypatch.setenv("SOAR_INGEST__MAX_MESSAGE_BYTES", "2048")
    settings = load_settings()
    assert settings.ingest.max_message_bytes == 2048
    assert settings.ingest.max_depth == 10
    assert settings.ingest.formats == {"siem.notables": AlertFormat.SPLUNK}
    assert settings.directory == {"executives": ["ciso@example.com"]}
    assert settings.playbooks == Path("/srv/playbooks")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("bogus = 1\n", "bogus", id="unknown-key"),
        pytest.param("[ingest]\nmax_depth = 1\n", "max_depth", id="out-of-range"),
        pytest.param('[ingest.formats]\nx = "csv"\n', "formats", id="unknown-format"),
        pytest.param("playbooks = [\n", "Invalid", id="not-toml"),
    ],
)
def test_bad_settings_are_a_config_error_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, fragment: str
) -> None:
    path = tmp_path / "soar.toml"
    path.write_text(content)
    monkeypatch.setenv("SOAR_CONFIG", str(path))
    with pytest.raises(ConfigError, match=fragment):
        load_settings()


def test_a_named_file_that_does_not_exist_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SOAR_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()
