"""The Dockerfile starts the real CLI as a non-root user and checks the admin API's /readyz.

Docker cannot run here, so this reads the Dockerfile's final stage and checks its contract
against the code it will run (the CLI parser, the admin defaults).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pbx_router.cli import build_parser
from pbx_router.config import AdminConfig

ROOT = Path(__file__).resolve().parents[2]


def final_stage() -> dict[str, list[str]]:
    """Instruction -> arguments (continuation lines joined) of the Dockerfile's last stage."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    stages: list[dict[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append({})
        stages[-1].setdefault(instruction.upper(), []).append(args.strip())
    return stages[-1]


def test_image_runs_the_daemon_with_the_documented_config_path() -> None:
    stage = final_stage()

    entrypoint = json.loads(stage["ENTRYPOINT"][-1])
    cmd = json.loads(stage["CMD"][-1])
    assert stage["FROM"] == ["python:3.11-slim"]
    assert entrypoint == ["pbx-router"]
    assert cmd == ["run", "-c", "/etc/pbx-router/pbx-router.yaml"]
    args = build_parser().parse_args(cmd)  # the real CLI accepts what the image passes
    assert args.command == "run" and callable(args.func)


def test_image_runs_as_an_unprivileged_user_with_a_data_volume() -> None:
    stage = final_stage()

    assert stage["USER"][-1] not in ("root", "0", "0:0")
    assert any("/var/lib/pbx-router" in v for v in stage["VOLUME"])


def test_healthcheck_asks_the_admin_api_on_its_default_address() -> None:
    stage = final_stage()
    healthcheck = stage["HEALTHCHECK"][-1]
    exec_form = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    admin = AdminConfig.model_validate({})  # the defaults pbx-router.yaml need not repeat

    assert exec_form[:2] == ["python", "-c"]
    compile(exec_form[2], "<healthcheck>", "exec")
    assert f"http://{admin.host}:{admin.port}/readyz" in exec_form[2]  # 503 (not ready) fails the check


@pytest.mark.parametrize("needed", ["pbx_router", "setup.cfg", "pyproject.toml"])
def test_dockerignore_keeps_what_the_wheel_build_needs(needed: str) -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert needed not in ignored
