"""The console in a real headless browser (Debian's chromium through chromedriver, Selenium)
against the real app served by a real server on 127.0.0.1.

``DIALWHOM_SCREENSHOTS=1 pytest tests/test_console_browser.py`` also writes the PNGs that
docs/console.md shows (docs/console/*.png).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import pytest
import requests
from sample import ASHA, ASHA_CUSTOMER, sample_config
from werkzeug.serving import make_server

from dialwhom.app import create_app
from dialwhom.routing.redact import mask

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CONSOLE_TOKEN = "browser-console-0123456789abcdef"
SHOTS = ROOT / "docs" / "console" if os.environ.get("DIALWHOM_SCREENSHOTS") else None

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server():
    """The real app on a real WSGI server in a thread (werkzeug's, threaded)."""
    config = sample_config(console_token=CONSOLE_TOKEN, connectors=[{"id": "accounts", "type": "directory", "path": str(ROOT / "examples" / "accounts.csv")}],
                           timezone="Asia/Kolkata", schedules={"office": {"mon-sat": "09:30-18:30"}})
    # the south team keeps office hours and Meera is on leave (the Now page shows both); north,
    # whose calls the tests make, is always open
    config["teams"]["south"]["hours"] = "office"
    meera = next(r for r in config["reps"] if r["owner"] == "meera@example.com")
    meera["away"] = [{"from": "2026-01-01", "to": "2030-12-31", "delegate": "rahul@example.com"}]
    app = create_app(config)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}", config
    srv.shutdown()
    srv.server_close()
    app.extensions["dialwhom"].close()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,900", "--hide-scrollbars"):
        opts.add_argument(arg)
    # the service path given explicitly: Selenium Manager never tries to download a driver
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, cond, timeout=5.0):
    # the live list is re-rendered every 2 s: an element read mid-render is stale, so try again
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)).until(cond)


def entries(driver) -> list[tuple[str, str]]:
    """(text, link) of each live entry, read in one script (no stale elements)."""
    return driver.execute_script("return Array.from(document.querySelectorAll('#decisions .entry a')).map(a => [a.innerText, a.href])")


def sign_in(driver, base, token=CONSOLE_TOKEN):
    driver.delete_all_cookies()
    driver.get(base + "/console/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button").click()
    if token == CONSOLE_TOKEN:  # wait for the signed-in page, so the cookie is set before the next get
        wait(driver, lambda d: d.current_url.endswith("/console/live"))


def shoot(driver, name):
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = driver.execute_script("return document.documentElement.scrollHeight")
        width = driver.execute_script("return window.innerWidth")
        driver.set_window_rect(width=max(width, 390), height=min(max(height + 100, 600), 2400))
        driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_wrong_token_is_refused(browser, server):
    base, _ = server
    sign_in(browser, base, "not-the-console-token-at-all")
    error = wait(browser, lambda d: d.find_element(By.ID, "login-error"))
    assert "wrong token" in error.text
    assert browser.current_url.endswith("/console/login")
    assert browser.get_cookie("dialwhom_console") is None
    shoot(browser, "login")


def test_a_call_appears_in_the_live_list_without_reloading(browser, server):
    base, _ = server
    sign_in(browser, base)
    wait(browser, lambda d: d.current_url.endswith("/console/live"))
    cookie = browser.get_cookie("dialwhom_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert CONSOLE_TOKEN not in browser.current_url
    browser.execute_script("window.notReloaded = true")
    sid = f"browser-{os.getpid()}"
    answer = requests.get(base + "/exotel/dial-whom", params={"CallSid": sid, "CallFrom": ASHA_CUSTOMER}, timeout=5)
    assert answer.text.startswith(ASHA)
    requests.get(base + "/exotel/dial-whom", params={"CallSid": sid + "-u", "CallFrom": "09000000001"}, timeout=5)
    text, link = wait(browser, lambda d: [e for e in entries(d) if mask("+919876543210") in e[0]], timeout=4)[0]
    assert browser.execute_script("return window.notReloaded") is True  # the same page, updated by polling
    assert "fresh" in text and f"{mask(ASHA)} (owner)" in text
    shoot(browser, "live")
    Select(browser.find_element(By.NAME, "path")).select_by_value("not-found")  # filtered in place
    wait(browser, lambda d: entries(d) and all("not-found" in t for t, _ in entries(d)))
    assert "path=not-found" in browser.current_url and browser.execute_script("return window.notReloaded") is True
    browser.get(link)
    plan = wait(browser, lambda d: d.find_element(By.ID, "plan"))
    assert mask(ASHA) in plan.text and "answer path: fresh" in browser.page_source
    shoot(browser, "decision")
    for page in ("now", "charts"):
        browser.get(f"{base}/console/{page}")
        assert browser.find_element(By.TAG_NAME, "h1").text.startswith(page.capitalize())
        shoot(browser, page)


def test_try_a_number_shows_the_same_plan_as_the_cli(browser, server, tmp_path, capsys):
    import yaml

    from dialwhom.cli import main

    base, config = server
    sign_in(browser, base)
    browser.get(base + "/console/try")
    browser.find_element(By.ID, "number").send_keys(ASHA_CUSTOMER)
    browser.find_element(By.CSS_SELECTOR, "#try button").click()
    shown = wait(browser, lambda d: d.find_element(By.ID, "explain")).text
    (tmp_path / "dialwhom.yaml").write_text(yaml.safe_dump(config))
    assert main(["lookup", ASHA_CUSTOMER, "--explain", "--config", str(tmp_path / "dialwhom.yaml")]) == 0
    cli = re.sub(r"\+\d{8,15}", lambda m: mask(m.group()), capsys.readouterr().out)
    untimed = lambda text: [re.sub(r"\d+(\.\d+)? ms", "N ms", line).rstrip() for line in text.strip().splitlines()]  # noqa: E731
    assert untimed(shown) == untimed(cli)
    assert ASHA_CUSTOMER not in browser.page_source  # the number typed is shown back masked
    shoot(browser, "try")


@pytest.mark.parametrize("page", ["live", "try", "now", "charts"])
def test_every_page_fits_a_390px_phone(browser, server, page):
    base, _ = server
    browser.set_window_rect(width=390, height=844)
    try:
        sign_in(browser, base)
        wait(browser, lambda d: d.current_url.endswith("/console/live"))
        browser.get(f"{base}/console/{page}")
        viewport = browser.execute_script("return document.documentElement.clientWidth")
        assert viewport <= 390
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390
        if page == "live":
            shoot(browser, "phone-live")
    finally:
        browser.set_window_rect(width=1100, height=900)
