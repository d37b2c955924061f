"""The shipped systemd units and polkit rule, checked by the tools that will read them.

``systemd-analyze verify`` on every unit (system and user scope), the sandbox's
exposure score by ``systemd-analyze security``, and the polkit rule evaluated by a
JavaScript engine (node) against a stand-in for polkitd's ``polkit`` object. The units
running for real (procServ, a soft IOC, the sandbox) are in
tests/integration/test_systemd.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from consrv.ioc import unit_name
from tests.systemd_user import CONSRV_UNIT, IOC_UNIT, REPO

POLKIT_RULE = REPO / "systemd" / "50-consrv-ioc.rules"
# The installed consrv (pip puts it in /usr/local/bin); here: the one next to this Python.
VENV_CONSRV = Path(sys.executable).parent / "consrv"
# The highest `systemd-analyze security` exposure consrv.service may have, in tenths
# (the tool prints 1.4 "OK" for it; --threshold takes 0-100).
EXPOSURE_LIMIT = 14


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload, no-any-return]


def consrv_unit_here(directory: Path) -> Path:
    """consrv.service with its Exec lines pointing at this venv's consrv.

    verify checks that every Exec binary exists and is executable; /usr/local/bin/consrv
    exists only once consrv is installed on the host, which tests do not do.
    """
    assert VENV_CONSRV.exists()
    lines = CONSRV_UNIT.read_text().splitlines(keepends=True)
    execs = [i for i, line in enumerate(lines) if line.startswith("ExecStart")]
    assert len(execs) == 2  # ExecStartPre and ExecStart
    for i in execs:
        assert "=/usr/local/bin/consrv " in lines[i]
        lines[i] = lines[i].replace("=/usr/local/bin/consrv ", f"={VENV_CONSRV} ")
    path = directory / "consrv.service"
    path.write_text("".join(lines))
    return path


def assert_verified(result: subprocess.CompletedProcess[str]) -> None:
    # verify exits 0 on mere warnings (unknown keys, bad values): any output is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_ioc_template_verifies_as_a_system_unit() -> None:
    assert_verified(run(["systemd-analyze", "verify", str(IOC_UNIT)]))


def test_ioc_template_verifies_as_a_user_unit(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime)}
    assert_verified(run(["systemd-analyze", "--user", "verify", str(IOC_UNIT)], env=env))


def test_ioc_instance_verifies(tmp_path: Path) -> None:
    instance = tmp_path / "ioc@demo-ioc1.service"
    shutil.copy(IOC_UNIT, instance)
    assert_verified(run(["systemd-analyze", "verify", str(instance)]))


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a typo'd key and a missing binary are reported."""
    broken = tmp_path / "ioc@x.service"
    text = IOC_UNIT.read_text().replace("\nUMask=", "\nUMaks=").replace("/procServ ", "/procSrv ")
    broken.write_text(text)
    result = run(["systemd-analyze", "verify", str(broken)])
    assert "Unknown key 'UMaks'" in result.stderr
    assert "/usr/bin/procSrv is not executable" in result.stderr


def test_consrv_unit_verifies(tmp_path: Path) -> None:
    assert_verified(run(["systemd-analyze", "verify", str(consrv_unit_here(tmp_path))]))


def test_consrv_unit_sandbox_exposure_stays_low(tmp_path: Path) -> None:
    unit = consrv_unit_here(tmp_path)
    argv = ["systemd-analyze", "security", "--offline=true", "--no-pager"]
    result = run([*argv, f"--threshold={EXPOSURE_LIMIT}", str(unit)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_consrv_unit_has_what_the_issue_asks() -> None:
    lines = set(CONSRV_UNIT.read_text().splitlines())
    required = {
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=consrv",
        "SupplementaryGroups=ioc",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=consrv",
        "LogsDirectory=consrv",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    }
    assert required - lines == set()


# ---------------------------------------------------------------- the polkit rule

# polkitd's own definitions (from its built-in init.js): rules get an Action whose
# lookup() reads "_detail_" properties, a Subject with .user, and polkit.Result.
POLKIT_HARNESS = r"""
const fs = require("fs");
const polkit = {
    _rules: [],
    addRule: function (rule) { this._rules.push(rule); },
    Result: { NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
              AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep", NOT_HANDLED: null },
};
function Action(id, details) {
    this.id = id;
    for (const key in details) { this["_detail_" + key] = details[key]; }
    this.lookup = function (name) { return this["_detail_" + name]; };
}
new Function("polkit", fs.readFileSync(process.argv[1], "utf8"))(polkit);
const cases = JSON.parse(fs.readFileSync(0, "utf8"));
const answers = cases.map(function (c) {
    const action = new Action(c.action, c.details);
    const subject = { user: c.user, groups: [] };
    for (const rule of polkit._rules) {
        const result = rule(action, subject);
        if (result) { return result; }
    }
    return null;
});
process.stdout.write(JSON.stringify(answers));
"""

MANAGE = "org.freedesktop.systemd1.manage-units"


def polkit_answers(cases: list[dict[str, object]]) -> list[str | None]:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node is not None, "node is needed to evaluate the polkit rule (apt-get install nodejs)"
    result = run([node, "-e", POLKIT_HARNESS, str(POLKIT_RULE)], input=json.dumps(cases))
    assert result.returncode == 0, result.stderr
    answers: list[str | None] = json.loads(result.stdout)
    return answers


def case(
    unit: object, verb: str = "start", user: str = "consrv", action: str = MANAGE
) -> dict[str, object]:
    details = {"verb": verb} if unit is None else {"unit": unit, "verb": verb}
    return {"action": action, "user": user, "details": details}


ALLOWED = [
    case("ioc@t1.service"),
    case("ioc@t1.service", "stop"),
    case("ioc@t1.service", "restart"),
    case("ioc@LLRF:crate.1_a-b.service"),
    case("ioc@" + "x" * 64 + ".service"),
]

REFUSED = [
    case("ioc@t1.service", "reload"),
    case("ioc@t1.service", "try-restart"),
    case("ioc@t1.service", "reload-or-restart"),
    case("ioc@t1.service", "kill"),
    case("ioc@t1.service", "enable"),
    case("ioc@t1.service", user="alice"),
    case("ioc@t1.service", action="org.freedesktop.systemd1.manage-unit-files"),
    case("sshd.service"),
    case("consrv.service", "stop"),
    case("ioc@.service"),
    case("ioc@-x.service"),
    case("ioc@.x.service"),
    case("ioc@a\\x20b.service"),
    case("ioc@a/b.service"),
    case("ioc@t1.service\n"),
    case("ioc@t1.service.d"),
    case("ioc@t1.socket"),
    case("xioc@t1.service"),
    case("other@t1.service"),
    case("ioc@" + "x" * 65 + ".service"),
    case(None),
    case(["ioc@t1.service"]),
]


def test_polkit_rule_allows_consrv_to_start_stop_restart_ioc_units() -> None:
    assert polkit_answers(ALLOWED) == ["yes"] * len(ALLOWED)


def test_polkit_rule_allows_nothing_else() -> None:
    answers = polkit_answers(REFUSED)
    allowed = [c for c, answer in zip(REFUSED, answers, strict=True) if answer is not None]
    assert allowed == []


def test_polkit_rule_allows_every_unit_consrv_can_name() -> None:
    names = ["t1", "LLRF:crate.1_a-b", "9lives", "A.b_c-d:e", "x" * 64]
    cases = [case(unit_name("ioc@{name}.service", name)) for name in names]
    assert polkit_answers(cases) == ["yes"] * len(names)
