"""The daemon's config: every error at once with file:line:col, secrets from the environment,
and a bad file at start is a clear message with exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pbx_router.cli import main
from pbx_router.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).parents[2] / "examples" / "pbx-router.yaml"
# What an admin exports before starting the daemon (the example config documents these).
SECRETS = {"PBX_ROUTER_ARI_PASSWORD": "5f0c2a9e8b7d41c3a6e2", "PBX_ROUTER_ADMIN_TOKEN": "9d3b7e1f0a4c4e8b9f6a2c5d"}
ARI = "ari: {password: 5f0c2a9e8b7d41c3a6e2}\n"

BAD = """\
ari:
  url: ftp://asterisk
  pasword: oops
calls:
  greeting: [hello-world]
  default_route: {type: endpoint, endpoint: agent1}
media:
  rtp_port_min: 5
"""


def test_example_config_is_valid_once_its_secrets_are_set_in_the_environment() -> None:
    cfg = load_config(EXAMPLE, env=SECRETS)
    assert cfg.ari.app == "pbx-router"
    assert Path(cfg.data_dir).is_absolute()
    # Copied as is, it says which secrets are missing and how to set them.
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, env={})
    assert sorted(e.split(": ", 2)[1] for e in info.value.errors) == ["admin.token", "ari.password"]
    assert all("PBX_ROUTER_" in e for e in info.value.errors)


def test_every_error_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_config(f, env={})
    errors = info.value.errors
    assert len(errors) == 5
    assert f"{f}:2:3: ari.url: must start with http:// or https://" in errors
    assert f"{f}:3:3: ari.pasword: unknown field (typo?)" in errors
    assert any(e.startswith(f"{f}:5:3: calls.greeting:") for e in errors)
    assert any(e.startswith(f"{f}:6:35: calls.default_route.endpoint:") for e in errors)
    assert any(e.startswith(f"{f}:8:3: media.rtp_port_min:") for e in errors)

    # Once those are fixed: the admin API is on by default and needs a token.
    fixed = "ari: {url: http://127.0.0.1:8088, password: 5f0c2a9e8b7d41c3a6e2}\n"
    with pytest.raises(ConfigError) as info2:
        parse_config(fixed, "x.yaml", env={})
    assert info2.value.errors == [
        "x.yaml:1:1: admin.token: required when the admin API is enabled (or set PBX_ROUTER_ADMIN_TOKEN; "
        "or admin: {enabled: false})"
    ]
    token = SECRETS["PBX_ROUTER_ADMIN_TOKEN"]
    assert parse_config(fixed, "x.yaml", env={"PBX_ROUTER_ADMIN_TOKEN": token}).admin.token == token


def test_yaml_syntax_error_points_at_the_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("ari:\n  url: [\n", "x.yaml", env={})
    assert info.value.errors[0].startswith("x.yaml:3:1: YAML syntax")


def test_secrets_come_from_the_environment() -> None:
    cfg = parse_config(
        "ari: {password: from-file-0123456789}\nadmin: {enabled: false}\n",
        env={"PBX_ROUTER_ARI_PASSWORD": "from-env-0123456789", "PBX_ROUTER_DATABASE_URL": "postgresql://db/x"},
    )
    assert cfg.ari.password == "from-env-0123456789"
    assert cfg.database.url == "postgresql://db/x"


def test_check_config_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    assert main(["check-config", str(EXAMPLE)]) == 0
    assert main(["check-config", str(bad)]) == 1
    assert f"{bad}:3:3: ari.pasword" in capsys.readouterr().err
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1


def test_run_with_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    proc = subprocess.run(
        [sys.executable, "-m", "pbx_router", "run", "-c", str(bad)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:2:3: ari.url" in proc.stderr


def test_check_config_also_checks_the_rules_file_it_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules: [{name: x, then: {target: nowhere}}]\n")
    cfg = tmp_path / "pbx-router.yaml"
    cfg.write_text(ARI + "rules: rules.yaml\nadmin: {enabled: false}\n")
    assert main(["check-config", str(cfg)]) == 1
    assert str(rules) in capsys.readouterr().err
    rules.write_text((Path(__file__).parents[2] / "examples" / "clinic.yaml").read_text())
    assert main(["check-config", str(cfg)]) == 0


PLACEHOLDERS = """\
ari:
  password: change-me
admin:
  token: change-me-too
database:
  url: postgresql://pbx:CHANGEME@db.clinic.lan/pbx
"""


def test_check_config_rejects_placeholder_secrets_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PBX_ROUTER_ARI_PASSWORD", "PBX_ROUTER_ADMIN_TOKEN", "PBX_ROUTER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    f = tmp_path / "pbx-router.yaml"
    f.write_text(PLACEHOLDERS)
    assert main(["check-config", str(f)]) == 1
    err = capsys.readouterr().err
    assert f"{f}:2:3: ari.password: is a placeholder" in err
    assert f"{f}:4:3: admin.token: is a placeholder" in err
    assert f"{f}:6:3: database.url: the password in it is a placeholder" in err
    assert "CHANGEME" not in err and "change-me" not in err  # the message never repeats a secret
    # The daemon refuses the same file at start.
    with pytest.raises(ConfigError):
        load_config(f, env={})


@pytest.mark.parametrize("value", [
    "changeme", "Change_Me", "CHANGE-ME-ari-password", "secret", "s3cret", "Passw0rd", "password",
    "xxxxxxxxxxxxxxxxxxxx", "your-token-here-please", "replace-me-with-a-real-token",
])
def test_common_placeholders_are_refused_as_ari_password_and_admin_token(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(f"ari: {{password: {value}}}\nadmin: {{token: {value}}}\n", "x.yaml", env={})
    assert [e.split(": ", 2)[1] for e in info.value.errors] == ["ari.password", "admin.token"]


def test_short_secrets_are_refused_and_from_the_environment_say_so() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("ari: {password: k7Qm2xZp9}\nadmin: {enabled: true}\n", "x.yaml",
                     env={"PBX_ROUTER_ADMIN_TOKEN": "Rt5wq8Lz"})
    how = "use a long random value, e.g. `openssl rand -hex 24`, preferably in "
    assert info.value.errors == [
        f"x.yaml:1:7: ari.password: is 9 characters long; at least 16 are required: {how}$PBX_ROUTER_ARI_PASSWORD",
        f"x.yaml:2:1: admin.token: is 8 characters long (from $PBX_ROUTER_ADMIN_TOKEN); at least 16 are required: "
        f"{how}$PBX_ROUTER_ADMIN_TOKEN",
    ]
    # Long random values pass; a disabled admin API needs no token at all.
    parse_config("ari: {password: 8c1e5b7a2f9d4e60}\nadmin: {token: 2b8f6d0a9c3e4f71a5}\n", "x.yaml", env={})
    parse_config("ari: {password: 8c1e5b7a2f9d4e60}\nadmin: {enabled: false, token: x}\n", "x.yaml", env={})


def test_the_staff_cli_reads_the_admin_address_without_the_daemons_ari_password(tmp_path: Path) -> None:
    f = tmp_path / "pbx-router.yaml"
    f.write_text("admin: {port: 9999, token: 2b8f6d0a9c3e4f71a5}\n")  # ARI password only in the daemon's env
    with pytest.raises(ConfigError):
        load_config(f, env={})
    assert load_config(f, env={}, check_secrets=False).admin.port == 9999


def test_retention_defaults_to_a_year_and_check_config_rejects_nonsense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = "ari: {password: 7f3c9a2e5b1d4e6f8a0c}\nadmin: {enabled: false}\n"
    assert parse_config(base, env={}).retention.days == 365
    cfg = parse_config(base + "retention: {days: 30, interval_hours: 6}\n", env={})
    assert (cfg.retention.days, cfg.retention.interval_hours) == (30, 6)
    bad = tmp_path / "retention.yaml"
    bad.write_text(base + "retention:\n  days: 0\n  interval_hours: 0\n  keep: forever\n")
    assert main(["check-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:3: retention.days: Input should be greater than or equal to 1" in err
    assert f"{bad}:5:3: retention.interval_hours:" in err and f"{bad}:6:3: retention.keep: unknown field" in err
