"""Debian's chromium, headless, driven by selenium through Debian's chromedriver.

Nothing is downloaded: selenium's driver manager is off (SE_OFFLINE=true) and both
programs are the packaged ones. Every page's console log is kept: a test fails on
any Content-Security-Policy violation in it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.waits import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--window-size=1100,700",
    # The tests' web server has a self-signed certificate for 127.0.0.1.
    "--ignore-certificate-errors",
)


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless chromium with its own profile directory; quit on exit."""
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()


def console_log(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """The browser console's entries since the last call."""
    return list(driver.get_log("browser"))  # type: ignore[no-untyped-call]


def csp_violations(entries: list[dict[str, Any]]) -> list[str]:
    return [
        str(entry["message"])
        for entry in entries
        if "Content Security Policy" in str(entry.get("message", ""))
        or "Content-Security-Policy" in str(entry.get("message", ""))
    ]


def screen(driver: webdriver.Chrome) -> str:
    """The terminal's screen and scrollback as text (through xterm.js's buffer)."""
    return str(
        driver.execute_script(
            "const t = window.consrvTerminal; if (!t) return '';"
            "const b = t.buffer.active; const out = [];"
            "for (let i = 0; i < b.length; i++) {"
            "  const line = b.getLine(i); out.push(line ? line.translateToString(true) : ''); }"
            "return out.join('\\n');"
        )
    )


def wait_for_screen(driver: webdriver.Chrome, text: str, timeout: float = 15) -> None:
    wait_until(
        lambda: text in screen(driver),
        f"{text!r} on the terminal in the page",
        timeout,
        seen=lambda: screen(driver)[-600:],
    )


def status(driver: webdriver.Chrome) -> str:
    return str(
        driver.execute_script(
            "const e = document.getElementById('status'); return e ? e.textContent : ''"
        )
    )
