"""The rest of asterisk_conf/: ARI only on loopback, phones that can register, the modules loaded.

Every rule is also run on a deliberately broken copy, so these tests fail when a file breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from asterisk_config.astconf import BreakConf
from asterisk_config.astconf_checks import (
    all_problems,
    ari_http_problems,
    modules_problems,
    pjsip_problems,
    syntax_problems,
)

Check = Callable[[Path], list[str]]


def test_every_file_reads_cleanly_and_explains_itself(conf_dir: Path) -> None:
    assert syntax_problems(conf_dir) == []


def test_ari_listens_on_loopback_only_for_the_pbx_router_user(conf_dir: Path) -> None:
    assert ari_http_problems(conf_dir) == []


def test_softphone_and_agents_can_register_and_land_in_their_contexts(conf_dir: Path) -> None:
    assert pjsip_problems(conf_dir) == []


def test_modules_pbx_router_needs_are_required_and_chan_sip_is_not_loaded(conf_dir: Path) -> None:
    assert modules_problems(conf_dir) == []


def test_the_whole_folder_has_no_problem(conf_dir: Path) -> None:
    assert all_problems(conf_dir) == []


@pytest.mark.parametrize(
    ("file", "check", "old", "new", "expected"),
    [
        ("pjsip.conf", syntax_problems, "; ======== templates", ";-------- templates", "block comment"),
        ("rtp.conf", syntax_problems, "What the admin must change", "Notes", "header must say"),
        ("queues.conf", syntax_problems, "\n[frontdesk](clinic-queue)", "\n[frontdesk(clinic-queue)", "bad section"),
        ("http.conf", ari_http_problems, "bindaddr = 127.0.0.1", "bindaddr = 0.0.0.0", "must bind 127.0.0.1:8088"),
        ("http.conf", ari_http_problems, "bindport = 8088", "bindport = 8080", "must bind 127.0.0.1:8088"),
        ("http.conf", ari_http_problems, "enabled = yes", "enabled = no", "enabled must be yes"),
        ("ari.conf", ari_http_problems, "\nenabled = yes", "\nenabled = no", "ARI is disabled"),
        ("ari.conf", ari_http_problems, "password_format = plain", "password_format = crypt", "must be plain"),
        ("ari.conf", ari_http_problems, "allowed_origins = http://127.0.0.1:8089,", "allowed_origins = *,",
         "allowed_origins must name local pages"),
        ("ari.conf", ari_http_problems, "\n[pbx-router]\n", "\n[router]\n", "no [pbx-router] user"),
        ("ari.conf", ari_http_problems, "read_only = no", "read_only = yes", "read-only"),
        ("manager.conf", ari_http_problems, "enabled = no", "enabled = yes", "AMI must stay disabled"),
        ("pjsip.conf", pjsip_problems, "bind = 0.0.0.0:5060", "bind = 127.0.0.1:5060", "0.0.0.0:5060"),
        ("pjsip.conf", pjsip_problems, "direct_media = no\n; NAT'd", "direct_media = yes\n; NAT'd",
         "direct_media must be no"),
        ("pjsip.conf", pjsip_problems, "rewrite_contact = yes", "rewrite_contact = no", "rewrite_contact"),
        ("pjsip.conf", pjsip_problems, "dtmf_mode = rfc4733\n; A phone", "dtmf_mode = inband\n; A phone",
         "dtmf_mode must be rfc4733"),
        ("pjsip.conf", pjsip_problems, "allow = ulaw,alaw,g722", "allow = ulaw,alaw", "codecs must be"),
        ("pjsip.conf", pjsip_problems, "max_contacts = 1", "max_contacts = 0", "max_contacts >= 1"),
        ("pjsip.conf", pjsip_problems, "username = agent2", "username = agent22", "username agent2"),
        ("pjsip.conf", pjsip_problems, "context = from-agents\nauth = agent3-auth",
         "context = from-phones\nauth = agent3-auth", "[agent3]: context must be from-agents"),
        ("pjsip.conf", pjsip_problems, "\n[softphone](phone-endpoint)", "\n[soft-phone](phone-endpoint)",
         "endpoint 'softphone' missing"),
        ("pjsip.conf", pjsip_problems, "context = from-pstn", "context = from-phones", "trunk template"),
        ("modules.conf", modules_problems, "require = app_stasis.so\n", "", "app_stasis.so must be"),
        ("modules.conf", modules_problems, "require = chan_rtp.so\n", "", "chan_rtp.so must be"),
        ("modules.conf", modules_problems, "noload = chan_sip.so\n", "", "chan_sip.so must be noload"),
        ("modules.conf", modules_problems, "autoload = yes", "autoload = no", "autoload must be yes"),
        ("modules.conf", modules_problems, "noload = res_hep.so", "noload = res_ari.so", "both required and noload"),
        ("queues.conf", all_problems, "member => PJSIP/agent2,0,Front desk 2\n\n[nurse]",
         "member => PJSIP/agent7,0,Front desk 2\n\n[nurse]", "member PJSIP/agent7 is not in pjsip.conf"),
        ("queues.conf", all_problems, "musicclass = default", "musicclass = jazz", "music class 'jazz'"),
        ("voicemail.conf", all_problems, "503 => ", "513 => ", "mailbox '503@clinic'"),
    ],
)
def test_each_rule_catches_its_breakage(
    broken_conf: BreakConf, file: str, check: Check, old: str, new: str, expected: str
) -> None:
    broken = broken_conf(file, old, new)

    problems = check(broken)

    assert any(expected in p for p in problems), problems
