"""The wall screen in a real browser: a down IOC on ``/`` and on its page, a phone-sized
window, and a log search over a real IOC's coloured prompt (issue 24).

Headless chromium against a real `consrv serve` (TLS) with two real EPICS soft IOCs
under procServ and a console whose procServ never ran. Policy as test_browser.py:
one consrv and one browser for the module, loopback only, every wait bounded and
named, every process stopped at the end, no CSP violation in the browser's log.
`CONSRV_WEB_SCREENSHOTS=docs/img` writes docs/web.md's screenshots.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import ssh_argv
from tests.waits import wait_until
from tests.web.browser import chromium, console_log, csp_violations
from tests.web.test_browser import SCREENSHOTS, text_of
from tests.web.tls import self_signed
from tests.witness import Witness

pytestmark = pytest.mark.integration

UP, FLIPS, NEVER = "wall-ioc1", "wall-ioc2", "wall-ioc3"  # NEVER: its procServ never runs
# How long the page may take to show a change: the console sees procServ go at once
# (inotify); the header asks every second, the list every two.
SHOWN_WITHIN = 15
PHONE = (390, 844)  # CSS pixels of a common phone, portrait
RED = "rgba(192, 24, 24, 1)"  # .badge.level-down in app.css


@dataclass
class Wall:
    root: Path
    consrv: Consrv
    iocs: dict[str, ProcServ]
    key: UserKey
    driver: webdriver.Chrome
    url: str = ""

    def sign_in(self) -> None:
        argv = ssh_argv(self.consrv.port, self.key.private, "console", "web", tty=False)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
        assert result.returncode == 0, result.stderr
        link = result.stdout.strip()
        self.driver.get(link)
        wait_until(lambda: self.driver.current_url.endswith("/"), "the sign-in redirect")
        self.url = link.split("/login/")[0]

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def screenshot(self, name: str) -> None:
        folder = Path(SCREENSHOTS) if SCREENSHOTS else self.root
        self.driver.save_screenshot(str(folder / name))

    def rows(self) -> list[tuple[str, str]]:
        """(name, badge) of each row of the list, top to bottom."""
        return [
            (str(r.get_attribute("data-name")), r.find_element(By.CSS_SELECTOR, ".badge").text)
            for r in self.driver.find_elements(By.CSS_SELECTOR, "#consoles tbody tr")
        ]

    def badge(self) -> str:
        return text_of(self.driver, "state")


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wall]:
    root = tmp_path_factory.mktemp("wall")
    key = make_key(root, "olga")
    self_signed(root)
    iocs = {name: ProcServ(name, root) for name in (UP, FLIPS)}
    config = {
        "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
        "log_dir": str(root / "logs"),  # log.timestamps and replay: the new defaults
        "users": {"olga": {"keys": [key.public]}},
        "defaults": {"ro": ["*"]},
        "consoles": {
            name: {"socket": str(ProcServ(name, root).socket)} for name in (UP, FLIPS, NEVER)
        },
        "web": {
            "listen": "127.0.0.1:0",
            "tls": {"cert": str(root / "web.crt"), "key": str(root / "web.key")},
        },
    }
    consrv = Consrv(write_config(root / "consrv.yaml", config), root)
    with chromium(root / "profile") as driver:
        consrv.start()  # before the IOCs: their boot and prompts are in the logs
        try:
            for ioc in iocs.values():
                ioc.start()
            for ioc in iocs.values():
                ioc.wait_ready()
            yield Wall(root, consrv, iocs, key, driver)
        finally:
            for ioc in iocs.values():
                ioc.stop()
            consrv.stop()


@pytest.fixture(autouse=True)
def no_csp_violations(wall: Wall) -> Iterator[None]:
    console_log(wall.driver)
    yield
    assert csp_violations(console_log(wall.driver)) == []


def test_a_down_ioc_is_first_on_the_wall_and_red_on_its_page_live(wall: Wall) -> None:
    wall.sign_in()
    wall.open(f"/c/{FLIPS}")
    wait_until(lambda: wall.badge() == "UP", f"{FLIPS}'s page to say UP", SHOWN_WITHIN)
    wall.iocs[FLIPS].stop()  # the IOC's procServ goes away while its page is open
    wait_until(
        lambda: wall.badge() == "DOWN", f"{FLIPS}'s page to say DOWN", SHOWN_WITHIN, seen=wall.badge
    )
    badge = wall.driver.find_element(By.ID, "state")
    assert badge.value_of_css_property("background-color") == RED
    assert re.fullmatch(r"down since \d\d:\d\d:\d\d UTC \(\d+s\)", text_of(wall.driver, "since"))
    wall.screenshot("web-console-down.png")

    wall.open("/")
    expected = [(FLIPS, "DOWN"), (NEVER, "DOWN"), (UP, "UP")]  # problems first, then by name
    wait_until(lambda: wall.rows() == expected, "the list: the down IOCs first", seen=wall.rows)
    assert text_of(wall.driver, "counts").split("\n") == ["2 down", "1 up"]
    wait_until(
        lambda: "Refreshed" in text_of(wall.driver, "refreshed"), "the list to refresh itself"
    )
    assert re.fullmatch(
        r"Times in UTC\. Refreshed \d\d:\d\d:\d\d UTC\.", text_of(wall.driver, "refreshed")
    )
    since = wall.driver.find_element(By.CSS_SELECTOR, f'tr[data-name="{FLIPS}"] td.since').text
    assert re.fullmatch(r"down since \d\d:\d\d:\d\d UTC \(\d+[sm]\)", since), since
    output = wall.driver.find_element(By.CSS_SELECTOR, f'tr[data-name="{UP}"] td.output')
    assert re.fullmatch(r"\d+[smhd]\S* ago", output.text), output.text
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(output.get_attribute("title")))
    wall.screenshot("web-wall-down.png")

    wall.open(f"/c/{FLIPS}")
    wall.iocs[FLIPS] = ProcServ(FLIPS, wall.root)  # started again: the page follows
    wall.iocs[FLIPS].start()
    wait_until(lambda: wall.badge() == "UP", f"{FLIPS}'s page to say UP again", SHOWN_WITHIN)


def test_the_wall_fits_a_phone_without_sideways_scrolling(wall: Wall) -> None:
    wall.sign_in()
    size = wall.driver.get_window_size()
    wall.driver.set_window_size(*PHONE)
    try:
        wall.open("/")
        wait_until(lambda: wall.rows(), "the list's rows")
        widths = wall.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in {widths[1]} px"
        assert wall.rows()[0][1] == "DOWN"  # the never-started console, first
        wall.screenshot("web-phone.png")
    finally:
        wall.driver.set_window_size(size["width"], size["height"])


def test_a_log_search_shows_the_prompt_without_escape_codes(wall: Wall) -> None:
    wall.sign_in()
    wall.iocs[UP].wait_ioc()  # the IOC reads its shell now
    with Witness(wall.iocs[UP].socket) as witness:  # a line after a coloured prompt
        witness.send(f"dbgf {UP}:name\r".encode())
    log_path = wall.root / "logs" / f"{UP}.log"
    prompted = re.compile(rb"\x1b\[[0-9;]*mepics> (\x1b\[0m)?dbgf")  # every byte is kept
    wait_until(lambda: prompted.search(log_path.read_bytes()), f"a prompted dbgf in {UP}'s log")
    wall.open(f"/logs/{UP}/?q=epics%3E+dbgf")
    wait_until(lambda: wall.driver.find_elements(By.ID, "results"), "the search results")
    texts = [r.text for r in wall.driver.find_elements(By.CSS_SELECTOR, "#results td.text")]
    assert texts
    assert all("epics> dbgf" in text for text in texts), texts
    assert not any("\\x1b" in text or "[32;1m" in text or "[0m" in text for text in texts), texts
    wall.screenshot("web-search.png")
