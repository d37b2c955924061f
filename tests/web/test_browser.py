"""The browser view in a real browser: Debian's headless chromium against a real
`consrv serve` (TLS), with procServ running a real EPICS soft IOC and a console that
prints hostile output.

Policy: one consrv, two procServ and one browser for the module (each test signs in
for itself, so the order does not matter); loopback only; every wait is bounded and
named; every process is stopped at the end. Every test fails on a CSP violation in
the browser's console log.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import ssh_argv
from tests.waits import wait_until
from tests.web.browser import (
    chromium,
    console_log,
    csp_violations,
    screen,
    status,
    wait_for_screen,
)
from tests.web.tls import self_signed
from tests.witness import Witness

pytestmark = pytest.mark.integration

IOC = "web-ioc"
HOSTILE = "hostile"
# What the hostile console prints each time it reads a line: markup, OSC 52 (set the
# clipboard), an OSC 8 link to javascript:, title changes, 24-bit colour.
PAYLOAD = (
    "<script>document.title='pwned'</script><img src=x onerror=alert(1)>\r\n"
    "\x1b]52;c;cHduZWQ=\x07"
    "\x1b]8;;javascript:alert(1)\x1b\\click-me\x1b]8;;\x1b\\\r\n"
    "\x1b]0;pwned-title\x07\x1b]2;pwned-title\x07"
    "\x1b[38;2;255;0;0mtruecolor\x1b[0m\r\n"
    "HOSTILE-END\r\n"
)
# Then "é€" with both characters split across writes (so across reads and frames).
SPLIT_UTF8 = (b"UTF8:\xc3", b"\xa9\xe2\x82", b"\xac-END\r\n")
HOSTILE_CHILD = [
    sys.executable,
    "-c",
    "import sys, time\n"
    "for _ in sys.stdin:\n"
    f"    sys.stdout.write({PAYLOAD!r}); sys.stdout.flush()\n"
    f"    for part in {SPLIT_UTF8!r}:\n"
    "        sys.stdout.buffer.write(part); sys.stdout.flush(); time.sleep(0.2)\n",
]
SCREENSHOTS = os.environ.get("CONSRV_WEB_SCREENSHOTS")  # a folder (docs/img) or unset


@dataclass
class Site:
    root: Path
    consrv: Consrv
    ioc: ProcServ
    hostile: ProcServ
    keys: dict[str, UserKey]
    driver: webdriver.Chrome

    def config(self, without: str = "") -> dict[str, Any]:
        """consrv's config: alice writes, everyone watches; `without`: a user left out."""
        return {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(self.root / "host_key")},
            "log_dir": str(self.root / "logs"),
            "log": {"timestamps": True},
            "users": {
                k.name: {"keys": [k.public]} for k in self.keys.values() if k.name != without
            },
            "defaults": {"rw": ["alice"], "ro": ["*"], "viewer_buffer": "64K"},
            "consoles": {
                IOC: {"socket": str(self.ioc.socket)},
                HOSTILE: {"socket": str(self.hostile.socket)},
            },
            "web": {
                "listen": "127.0.0.1:0",
                "tls": {"cert": str(self.root / "web.crt"), "key": str(self.root / "web.key")},
            },
        }

    def ssh(self, user: str, *command: str) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(self.consrv.port, self.keys[user].private, "console", *command, tty=False)
        return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)

    def sign_in(self, user: str) -> None:
        """``ssh console@127.0.0.1 web``, then open the link it printed."""
        result = self.ssh(user, "web")
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert re.fullmatch(r"https://127\.0\.0\.1:\d+/login/[A-Za-z0-9_-]{43}", url), url
        self.driver.get(url)
        wait_until(
            lambda: self.driver.current_url.endswith("/"), "the sign-in redirect to the list"
        )
        self.url = url.split("/login/")[0]

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def reloads(self) -> int:
        return len(re.findall(rb"reloaded \S+consrv\.yaml", self.consrv.stderr_path.read_bytes()))

    def reload(self) -> None:
        """SIGHUP, and wait until consrv says it reloaded (once more than before)."""
        process = self.consrv.process
        assert process is not None
        done = len(re.findall(rb"reloaded \S+consrv\.yaml", self.consrv.stderr_path.read_bytes()))
        process.send_signal(signal.SIGHUP)
        wait_until(
            lambda: (
                len(re.findall(rb"reloaded \S+consrv\.yaml", self.consrv.stderr_path.read_bytes()))
                > done
            ),
            "consrv to reload its config",
            seen=self.consrv.stderr,
        )

    def screenshot(self, name: str) -> None:
        folder = Path(SCREENSHOTS) if SCREENSHOTS else self.root
        self.driver.save_screenshot(str(folder / name))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("web")
    keys = {name: make_key(root, name) for name in ("alice", "olga", "carol")}
    self_signed(root)
    with (
        ProcServ(IOC, root) as ioc,
        ProcServ(HOSTILE, root, HOSTILE_CHILD) as hostile,
        chromium(root / "profile") as driver,
    ):
        ioc.wait_ioc()
        site = Site(root, Consrv(root / "consrv.yaml", root), ioc, hostile, keys, driver)
        write_config(root / "consrv.yaml", site.config())
        site.consrv.start()
        try:
            yield site
        finally:
            site.consrv.stop()


@pytest.fixture(autouse=True)
def no_csp_violations(site: Site) -> Iterator[None]:
    console_log(site.driver)  # what earlier tests left
    yield
    assert csp_violations(console_log(site.driver)) == []


def text_of(driver: webdriver.Chrome, element_id: str) -> str:
    """The element's text, or "" while the page (re)loads without it."""
    try:
        found = driver.find_elements(By.ID, element_id)
        return found[0].text if found else ""
    except StaleElementReferenceException:  # the page went away as we looked
        return ""


def live(site: Site) -> None:
    wait_until(lambda: status(site.driver).startswith("live"), "the console page to go live")


def test_sign_in_with_a_link_minted_over_ssh_and_see_the_list(site: Site) -> None:
    site.sign_in("olga")
    rows = site.driver.find_elements(By.CSS_SELECTOR, "#consoles tbody tr")
    names = [row.get_attribute("data-name") for row in rows]
    assert names == [HOSTILE, IOC]
    wait_until(
        lambda: "Refreshed" in site.driver.find_element(By.ID, "refreshed").text,
        "the list to refresh itself",
    )
    site.screenshot("web-list.png")
    again = site.ssh("olga", "web").stdout.strip()
    site.driver.delete_all_cookies()
    site.driver.get(again)
    site.driver.get(again)  # the same link a second time
    assert "used or expired" in site.driver.find_element(By.ID, "message").text


class PtyWriter:
    """``ssh -tt console@127.0.0.1 NAME`` on a pty: a person typing into a console."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        self.output = bytearray()

    def read(self) -> bytes:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return bytes(self.output)

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self.type(b"\x05c.")  # ^Ec. detaches
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def ask_the_ioc(site: Site, question: str, answer: bytes) -> None:
    """Alice types `question` over SSH and waits for `answer` on her terminal."""
    argv = ssh_argv(site.consrv.port, site.keys["alice"].private, "console", IOC)
    writer = PtyWriter(argv)
    try:
        wait_until(lambda: b"you write" in writer.read(), "alice to write", seen=writer.read)
        writer.type(question.encode() + b"\r")
        wait_until(lambda: answer in writer.read(), f"{answer!r} for alice", seen=writer.read)
    finally:
        writer.close()


def test_the_page_shows_what_an_ssh_writer_types(site: Site) -> None:
    site.sign_in("olga")
    site.open(f"/c/{IOC}")
    live(site)
    ask_the_ioc(site, "dbl", f"{IOC}:counter".encode())
    wait_for_screen(site.driver, f"{IOC}:temperature")
    wait_for_screen(site.driver, f"{IOC}:counter")
    assert re.search(r"^(epics> )?dbl$", screen(site.driver), re.MULTILINE)
    site.screenshot("web-console.png")


def test_typing_into_the_page_reaches_nobody(site: Site) -> None:
    site.sign_in("olga")
    site.open(f"/c/{IOC}")
    live(site)
    with Witness(site.ioc.socket) as witness:
        terminal = site.driver.find_element(By.ID, "terminal")
        terminal.click()
        site.driver.switch_to.active_element.send_keys("PAGETYPED\n\x18\x14")
        site.driver.execute_script(
            "document.querySelector('.xterm-helper-textarea')?.dispatchEvent("
            "new InputEvent('input', {data: 'PAGEINPUT', inputType: 'insertText'}))"
        )
        # An answer to a question asked after the typing: anything the page had sent
        # would have reached the IOC (and been echoed) before it.
        ask_the_ioc(site, f"dbgf {IOC}:name", b"DBF_STRING")
        wait_until(
            lambda: re.search(rb'DBF_STRING:\s+"' + IOC.encode(), witness.read()),
            "the IOC's answer to alice, seen by the witness",
            seen=witness.read,
        )
        seen = witness.read()
    assert b"PAGETYPED" not in seen
    assert b"PAGEINPUT" not in seen
    assert "PAGETYPED" not in screen(site.driver)
    assert status(site.driver).startswith("live")  # the page sent no frame


def test_hostile_output_changes_nothing_in_the_page(site: Site) -> None:
    site.sign_in("olga")
    site.open(f"/c/{HOSTILE}")
    live(site)
    title = site.driver.title
    scripts = len(site.driver.find_elements(By.TAG_NAME, "script"))
    with Witness(site.hostile.socket) as trigger:
        trigger.send(b"go\r")
        wait_for_screen(site.driver, "HOSTILE-END")
        wait_for_screen(site.driver, "UTF8:é€-END")  # split UTF-8 rendered whole
    text = screen(site.driver)
    assert "<script>document.title='pwned'</script><img src=x onerror=alert(1)>" in text
    assert "click-me" in text
    assert "truecolor" in text
    assert site.driver.title == title == f"consrv: {HOSTILE}"
    assert len(site.driver.find_elements(By.TAG_NAME, "script")) == scripts
    assert site.driver.find_elements(By.TAG_NAME, "img") == []
    assert (
        site.driver.execute_script(
            "return [...document.querySelectorAll('a')].filter(a => /^javascript:/i.test(a.href))"
            ".length"
        )
        == 0
    )
    with pytest.raises(NoAlertPresentException):
        site.driver.switch_to.alert.text  # noqa: B018 (raises when there is no alert)
    links = site.driver.find_elements(By.CSS_SELECTOR, "#terminal a")
    assert links == []


def test_log_search_in_the_page_and_over_ssh(site: Site) -> None:
    site.sign_in("olga")
    ask_the_ioc(site, f"dbgf {IOC}:temperature", b"DBF_DOUBLE")
    over_ssh = site.ssh("olga", "log", IOC, "--grep", "DBF_DOUBLE", "--since", "1h")
    assert over_ssh.returncode == 0, over_ssh.stderr
    lines = over_ssh.stdout.splitlines()
    assert lines
    assert all("DBF_DOUBLE" in line for line in lines)
    assert all(re.match(r"\d{4}-\d\d-\d\dT", line) for line in lines)  # stamped lines
    site.open(f"/logs/{IOC}/")
    site.driver.find_element(By.NAME, "q").send_keys("DBF_DOUBLE")
    site.driver.find_element(By.CSS_SELECTOR, "#search button").click()
    wait_until(
        lambda: site.driver.find_elements(By.ID, "results"), "the search results on the page"
    )
    rows = site.driver.find_elements(By.CSS_SELECTOR, "#results tr")
    assert rows
    assert all("DBF_DOUBLE" in row.text for row in rows)
    first = rows[0].find_element(By.CSS_SELECTOR, "td.where a")
    first.click()
    wait_until(
        lambda: site.driver.find_elements(By.CSS_SELECTOR, "#lines tr.hit"),
        "the log line the result links to",
    )
    assert "DBF_DOUBLE" in site.driver.find_element(By.CSS_SELECTOR, "#lines tr.hit").text


def test_a_reload_that_removes_the_user_closes_their_stream(site: Site) -> None:
    site.sign_in("carol")
    site.open(f"/c/{IOC}")
    live(site)
    write_config(site.root / "consrv.yaml", site.config(without="carol"))
    try:
        assert site.consrv.process is not None
        site.reload()
        reloaded = time.monotonic()
        wait_until(  # closed, and (1 s later) the page reloaded to say why
            lambda: (
                status(site.driver).startswith("closed")
                or "Not signed in" in text_of(site.driver, "message")
            ),
            "carol's console page to lose its stream",
            timeout=5,
            seen=lambda: status(site.driver),
        )
        assert time.monotonic() - reloaded < 2.0
        wait_until(  # the page reloads itself: now it says why
            lambda: "Not signed in" in text_of(site.driver, "message"),
            "carol's console page to say she is not signed in",
            timeout=5,
        )
    finally:
        write_config(site.root / "consrv.yaml", site.config())
        site.reload()
