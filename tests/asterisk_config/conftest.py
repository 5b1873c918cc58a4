"""Fixtures for checking asterisk_conf/: the shipped folder, and a broken copy of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from asterisk_config.astconf import CONF_DIR, BreakConf


@pytest.fixture
def conf_dir() -> Path:
    assert (CONF_DIR / "extensions.conf").is_file(), f"no Asterisk configuration in {CONF_DIR}"
    return CONF_DIR


@pytest.fixture
def broken_conf(tmp_path: Path) -> BreakConf:
    """Copy asterisk_conf/ and replace the first ``old`` in ``file`` by ``new``.

    Fails loudly when ``old`` is not in the file, so a mutation that no longer
    applies cannot turn into a test that passes for the wrong reason. (A mutation
    that only hits a comment makes its test fail, which is the safe direction.)
    """
    copy = tmp_path / "asterisk_conf"
    shutil.copytree(CONF_DIR, copy)

    def apply(file: str, old: str, new: str) -> Path:
        path = copy / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not found in {file}: update this mutation"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
        return copy

    return apply
