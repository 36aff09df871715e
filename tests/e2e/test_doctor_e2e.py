"""``mxguard doctor`` against the private Postfix of these tests: good, then broken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mxguard_proc import MxguardProcess
from tests.support.postfix import PostfixInstance

pytestmark = pytest.mark.usefixtures("requires_mxguard")


def doctor(mxguard: MxguardProcess, postfix_config: Path) -> subprocess.CompletedProcess[str]:
    mxguard_cli = str(Path(sys.executable).with_name("mxguard"))
    return subprocess.run(
        [
            mxguard_cli,
            "doctor",
            "-c",
            str(mxguard.ini_path),
            "--postfix-config",
            str(postfix_config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_passes_the_running_test_instance(
    mta: PostfixInstance, mxguard: MxguardProcess
) -> None:
    result = doctor(mxguard, mta.conf_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok       smtpd_milters names mxguard's socket" in result.stdout
    assert "ok       milter_protocol = 6" in result.stdout
    assert "ok       milter_default_action = tempfail" in result.stdout
    assert "ok       worst-case DNS time per stage" in result.stdout


def test_doctor_finds_a_broken_configuration(e2e_dir: Path, mxguard: MxguardProcess) -> None:
    broken = PostfixInstance(
        base_dir=e2e_dir / "broken-postfix",
        milter="inet:127.0.0.1:1",  # not mxguard
        main_cf={
            "milter_protocol": "2",
            "milter_default_action": "accept",
            "milter_mail_macros": "i {mail_addr}",
            "milter_command_timeout": "2s",
        },
    )
    broken._write_config()  # the files are what postconf reads; nothing needs to run
    result = doctor(mxguard, broken.conf_dir)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "PROBLEM  smtpd_milters = 'inet:127.0.0.1:1' does not name" in out
    assert "PROBLEM  milter_protocol = 2" in out
    assert "PROBLEM  milter_default_action = accept" in out and "accepted unfiltered" in out
    assert "PROBLEM  milter_mail_macros lacks {auth_authen}" in out
    assert "PROBLEM  worst case at mail is" in out and "milter_command_timeout = 2s" in out
    assert out.count("fix: postconf -e") >= 5
