#!/usr/bin/env python3
"""The web client in a real browser (Debian's Chromium, driven by Selenium),
against the real binary, through the project's fault proxy.

Two people in two browsers: ana signs up and posts a multi-megabyte photo over
a throttled connection that drops silently mid-upload (the fault proxy leaves
the server's side of each dropped connection open and quiet, as a phone losing
coverage does) and sees it finish, with its alt text; ben sees it in the feed,
opens it and comments; ana gets the live notification; ben deletes his comment;
ana edits the caption and deletes the post. Then reporting and blocking from the
UI, and the moderation queue as a moderator. Every page is checked with axe-core
(no serious or critical violation) and photographed at 390x844 and 1280x800.

Run by scripts/test-browser (which builds the binaries and installs the tools).
"""

import json
import os
import pathlib
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = os.environ.get("IMAGEGRAM_BIN", str(TARGET / "debug" / "imagegram"))
PROXY = os.environ.get("FAULT_PROXY_BIN", str(TARGET / "debug" / "fault-proxy"))
AXE = (ROOT / ".tools" / "axe-core-4.10.3" / "axe.min.js").read_text()
SHOTS = pathlib.Path(os.environ.get("SCREENSHOT_DIR", TARGET / "browser-screenshots"))
SIZES = [(390, 844), (1280, 800)]
WAIT = 60

ALT = "An orange sun sinking into calm water behind two sailing boats"
report = {"pages": {}, "first_load_bytes": None}


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------- fixtures

def noise_png(path, width, height, seed):
    """A PNG of random pixels: incompressible, so it is as large as a photo."""
    rng = random.Random(seed)
    raw = bytearray()
    for _ in range(height):
        raw.append(0)
        raw.extend(rng.randbytes(width * 3))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 1)) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


def start(cmd, prefix):
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith(prefix):
        proc.kill()
        raise SystemExit(f"{cmd[0]} did not start: {line!r}")
    return proc, line[len(prefix):]


def browser():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=390,844", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_script_timeout(30)
    return driver


# ---------------------------------------------------------------- page helpers

def wait(driver, condition, what, timeout=WAIT):
    try:
        # An element found a moment ago may be gone: the app re-renders a page
        # after each change. The condition is then asked again.
        return WebDriverWait(driver, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException, NoSuchElementException)
                             ).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what} at {driver.current_url}") from None


def by_label(driver, label):
    """The control labelled exactly `label`, and it has that accessible name."""
    def find(d):
        for el in d.find_elements(By.XPATH, f"//label[normalize-space()='{label}']"):
            target = d.find_elements(By.ID, el.get_attribute("for"))
            if target and target[0].is_displayed():
                return target[0]
        return None
    control = wait(driver, find, f"the field {label!r}")
    assert control.accessible_name == label, (label, control.accessible_name)
    return control


def button(driver, name, within=None):
    """The visible button whose accessible name is exactly `name`."""
    def find(d):
        scope = within or d
        for b in scope.find_elements(By.XPATH, ".//button" if within else "//button"):
            if b.is_displayed() and b.is_enabled() and b.accessible_name == name:
                return b
        return None
    return wait(driver, find, f"the button {name!r}")


def type_into(driver, label, text):
    el = by_label(driver, label)
    el.clear()
    el.send_keys(text)
    return el


def signed_up(driver, base, name):
    driver.get(f"{base}/signup")
    type_into(driver, "Username", name)
    type_into(driver, "Password", "correct horse battery")
    button(driver, "Sign up").click()
    button(driver, "Log out")
    wait(driver, lambda d: d.current_url.rstrip("/") == base, "the feed after signing up")


def failed_login_keeps_the_form(driver, base):
    """A refused log-in shows the problem's detail and loses nothing typed."""
    driver.get(f"{base}/login")
    type_into(driver, "Username", "nobody_here")
    type_into(driver, "Password", "not the password")
    button(driver, "Log in").click()
    wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "p.error").text, "the error")
    error = driver.find_element(By.CSS_SELECTOR, "p.error").text
    assert "wrong username or password" in error, error
    assert by_label(driver, "Username").get_attribute("value") == "nobody_here"
    assert by_label(driver, "Password").get_attribute("value") == "not the password"


def logged_in_by_keyboard(driver, base, name):
    """Log in with the keyboard alone: type, Tab to the next field, Enter."""
    from selenium.webdriver.common.keys import Keys
    driver.get(f"{base}/login")
    field = by_label(driver, "Username")
    wait(driver, lambda d: d.switch_to.active_element == field, "the username field focused")
    field.send_keys(name)
    driver.switch_to.active_element.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.accessible_name == "Password"
    driver.switch_to.active_element.send_keys("correct horse battery", Keys.ENTER)
    button(driver, "Log out")


def layout_shift(driver):
    """The page's cumulative layout shift so far (0 when nothing moved)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; let total = 0;"
        "const po = new PerformanceObserver(list => { for (const e of list.getEntries()) if (!e.hadRecentInput) total += e.value; });"
        "po.observe({type: 'layout-shift', buffered: true});"
        "setTimeout(() => { po.disconnect(); done(total); }, 300);")


def accept_confirm(driver):
    alert = wait(driver, lambda d: _alert(d), "a confirmation")
    alert.accept()


def _alert(driver):
    try:
        return driver.switch_to.alert
    except Exception:
        return None


def check_page(driver, name):
    """axe-core on the page as it is, at both sizes, with a screenshot of each."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    found = []
    for width, height in SIZES:
        driver.set_window_size(width, height)
        time.sleep(0.3)  # layout settles after the resize
        driver.execute_script(AXE)
        result = json.loads(driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']})"
            ".then(r => done(JSON.stringify(r.violations)))"
            ".catch(e => done(JSON.stringify([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}])));"))
        for v in result:
            found.append({"size": f"{width}x{height}", "id": v["id"], "impact": v["impact"],
                          "help": v["help"], "nodes": [n.get("target") for n in v.get("nodes", [])][:3]})
        path = SHOTS / f"{name}-{width}x{height}.png"
        driver.save_screenshot(str(path))
    driver.set_window_size(*SIZES[0])
    serious = [v for v in found if v["impact"] in ("serious", "critical")]
    report["pages"][name] = {"violations": found}
    log(f"  axe {name}: {len(found)} violation(s), {len(serious)} serious or critical")
    assert not serious, f"axe on {name}: {json.dumps(serious, indent=1)}"


def csp_violations(driver):
    return [e["message"] for e in driver.get_log("browser")
            if "Content Security Policy" in e["message"] or "Refused to" in e["message"]]


# ---------------------------------------------------------------- the stories

def first_load_size(driver, base):
    driver.get(base + "/")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "main h1"), "the feed")
    sizes = driver.execute_script(
        "const nav = performance.getEntriesByType('navigation')[0];"
        "const res = performance.getEntriesByType('resource')"
        "  .filter(r => r.initiatorType === 'script' || r.initiatorType === 'link' || r.name.endsWith('.js') || r.name.endsWith('.css'));"
        "return {page: nav.encodedBodySize, assets: res.map(r => [r.name, r.encodedBodySize])};")
    total = sizes["page"] + sum(size for _, size in sizes["assets"])
    report["first_load_bytes"] = {"total": total, "page": sizes["page"], "assets": sizes["assets"]}
    log(f"  first screen's HTML + JS + CSS, compressed: {total} bytes {sizes['assets']}")
    assert total <= 100 * 1024, f"first load is {total} bytes"


def upload_over_a_bad_network(ana, photo):
    button(ana, "New post").click()
    by_label(ana, "Image").send_keys(str(photo))
    wait(ana, lambda d: d.find_element(By.CSS_SELECTOR, "img.preview").get_attribute("naturalWidth") not in (None, "0"),
         "the preview")
    type_into(ana, "Caption", "Sunset over the bay")
    type_into(ana, "Alt text", ALT)
    check_page(ana, "new-post")
    button(ana, "Post").click()
    # The progress bar moves while the bytes go (and may fall back when a
    # dropped connection resumes from the server's offset).
    seen = []
    deadline = time.time() + 180
    while "/p/" not in ana.current_url:
        assert time.time() < deadline, f"the upload never finished: {seen[-5:]}"
        try:
            bar = ana.find_element(By.CSS_SELECTOR, "progress")
            assert bar.aria_role == "progressbar", bar.aria_role
            seen.append((float(bar.get_attribute("value")), float(bar.get_attribute("max"))))
            message = ana.find_elements(By.CSS_SELECTOR, "p.error")
            assert not (message and message[0].text), f"the upload failed: {message[0].text}"
        except (NoSuchElementException, StaleElementReferenceException):
            pass  # the post page replaced the form under us
        time.sleep(0.1)
    partial = [v for v, m in seen if 0 < v < m]
    log(f"  upload finished; {len(seen)} progress samples, {len(partial)} part-way")
    assert len(partial) >= 3, f"the progress bar did not move: {seen[:10]}"
    # The post page shows the processed image with its alt text.
    wait(ana, lambda d: d.find_elements(By.CSS_SELECTOR, f"article img[alt='{ALT}']"), "the processed image")
    return ana.current_url.rsplit("/", 1)[1]


def main():
    for tool in (BIN, PROXY):
        assert os.path.exists(tool), f"{tool} is missing: run scripts/test-browser"
    data = tempfile.mkdtemp(prefix="imagegram-browser-")
    server, base_direct = start([BIN, "serve", "--data-dir", data, "--listen", "127.0.0.1:0",
                                 "--rate-limit", "off"], "imagegram listening on ")
    upstream = base_direct.removeprefix("http://")
    # 2 MB/s up, and every connection that has carried 3 MB goes silent.
    proxy, base = start([PROXY, "--upstream", upstream, "--upload-bytes-per-sec", "2000000",
                         "--max-piece", "65536", "--silent-drop-after", "3000000"],
                        "fault-proxy listening on ")
    drivers = []
    try:
        ana = browser()
        drivers.append(ana)
        ben = browser()
        drivers.append(ben)
        photo = noise_png(pathlib.Path(data) / "sunset.png", 2000, 1700, seed=7)
        log(f"server {base_direct}, proxy {base}, photo {photo.stat().st_size} bytes")

        first_load_size(ana, base)
        failed_login_keeps_the_form(ana, base)
        check_page(ana, "login")
        signed_up(ana, base, "ana")
        post_id = upload_over_a_bad_network(ana, photo)
        check_page(ana, "post")

        # ben finds it in the feed, opens it, comments.
        ben.get(f"{base}/signup")
        by_label(ben, "Username")
        check_page(ben, "signup")
        signed_up(ben, base, "ben")
        article = wait(ben, lambda d: [a for a in d.find_elements(By.TAG_NAME, "article")
                                       if a.find_elements(By.CSS_SELECTOR, f"img[alt='{ALT}']")],
                       "ana's post in the feed")[0]
        img = article.find_element(By.TAG_NAME, "img")
        assert img.get_attribute("width") and img.get_attribute("height"), "sized before it loads"
        wait(ben, lambda d: d.execute_script("return arguments[0].complete", img), "the image loaded")
        shift = layout_shift(ben)
        report["feed_layout_shift"] = shift
        assert shift < 0.01, f"the feed moved as images arrived: CLS {shift}"
        check_page(ben, "feed")
        article.find_element(By.LINK_TEXT, "0 comments").click()
        wait(ben, lambda d: f"/p/{post_id}" in d.current_url, "the post page")
        type_into(ben, "Write a comment", "Lovely colours!")
        button(ben, "Comment").click()
        comment = wait(ben, lambda d: [li for li in d.find_elements(By.CSS_SELECTOR, "ul[aria-label=Comments] li")
                                       if "Lovely colours!" in li.text], "ben's comment")[0]

        # ana is told at once, without reloading.
        wait(ana, lambda d: "ben commented" in d.find_element(By.ID, "toasts").text, "the live notification")
        wait(ana, lambda d: d.find_elements(By.CSS_SELECTOR, "a[aria-label$=' unread']"), "the badge")
        log("  ana got the live notification")

        # ben deletes his comment.
        button(ben, "Delete", within=comment).click()
        accept_confirm(ben)
        wait(ben, lambda d: "Lovely colours!" not in d.find_element(By.TAG_NAME, "main").text, "the comment gone")

        # ana edits the caption, then deletes the post.
        ana.get(f"{base}/p/{post_id}")
        button(ana, "Edit").click()
        type_into(ana, "Caption", "Sunset over the bay, edited")
        button(ana, "Save").click()
        wait(ana, lambda d: "Sunset over the bay, edited" in d.find_element(By.CSS_SELECTOR, "article").text, "the edit")
        ana.find_element(By.CSS_SELECTOR, "a[href='/notifications']").click()
        wait(ana, lambda d: "ben commented" in d.find_element(By.TAG_NAME, "main").text, "the notifications page")
        check_page(ana, "notifications")
        ana.get(f"{base}/p/{post_id}")
        button(ana, "Delete").click()
        accept_confirm(ana)
        wait(ana, lambda d: d.current_url.rstrip("/") == base, "the feed after deleting")
        ben.get(f"{base}/p/{post_id}")
        wait(ben, lambda d: d.find_elements(By.CSS_SELECTOR, "p.error"), "the post gone")
        log("  edit and delete done")

        # Reporting and blocking from the UI.
        small = noise_png(pathlib.Path(data) / "small.png", 200, 160, seed=8)
        ana.get(f"{base}/new")
        by_label(ana, "Image").send_keys(str(small))
        type_into(ana, "Caption", "A second post")
        type_into(ana, "Alt text", "Coloured static")
        button(ana, "Post").click()
        wait(ana, lambda d: "/p/" in d.current_url, "the second post", timeout=120)
        second = ana.current_url.rsplit("/", 1)[1]
        wait(ana, lambda d: d.find_elements(By.CSS_SELECTOR, "article img[alt='Coloured static']"), "it ready")
        ben.get(f"{base}/p/{second}")
        button(ben, "Report").click()
        wait(ben, lambda d: d.find_elements(By.CSS_SELECTOR, "form.report"), "the report form")
        check_page(ben, "report")
        button(ben, "Send report").click()
        wait(ben, lambda d: "A moderator will look at it" in d.find_element(By.TAG_NAME, "main").text, "the thanks")
        ben.get(f"{base}/u/ana")
        wait(ben, lambda d: d.find_elements(By.TAG_NAME, "article"), "ana's page")
        check_page(ben, "user")
        button(ben, "Block").click()
        accept_confirm(ben)
        wait(ben, lambda d: d.current_url.rstrip("/") == base, "the feed after blocking")
        time.sleep(0.5)
        assert not ben.find_elements(By.CSS_SELECTOR, "article img[alt='Coloured static']"), "a blocked user's post"
        ben.get(f"{base}/settings")
        wait(ben, lambda d: "ana" in d.find_element(By.CSS_SELECTOR, "ul[aria-label='Blocked users']").text, "the block list")
        check_page(ben, "settings")
        log("  reported and blocked")

        # A moderator takes the reported post down from the queue.
        button(ben, "Log out").click()
        signed_up(ben, base, "mia")
        out = subprocess.run([BIN, "admin", "--data-dir", data, "set-role", "mia", "moderator"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        # The role reaches the live session within the session cache's bound.
        deadline = time.time() + 15
        while True:
            ben.get(f"{base}/moderation")
            time.sleep(0.5)
            cards = ben.find_elements(By.CSS_SELECTOR, "section.card")
            if cards or time.time() > deadline:
                break
        card = wait(ben, lambda d: d.find_elements(By.CSS_SELECTOR, "section.card"), "the queue")[0]
        assert "1 report" in card.text and "A second post" in card.text, card.text
        check_page(ben, "moderation")
        button(ben, "Remove", within=card).click()
        wait(ben, lambda d: "Done: remove" in d.find_element(By.TAG_NAME, "main").text, "the removal")
        wait(ana, lambda d: "moderator removed" in d.find_element(By.ID, "toasts").text, "ana told of the removal")
        log("  moderation done")

        # Account settings: password change, export, deletion; log-in by keyboard.
        button(ben, "Log out").click()
        logged_in_by_keyboard(ben, base, "mia")
        ben.get(f"{base}/settings")
        type_into(ben, "Current password", "correct horse battery")
        type_into(ben, "New password", "a brand new horse")
        button(ben, "Change password").click()
        wait(ben, lambda d: "Password changed" in d.find_element(By.ID, "toasts").text, "the password changed")
        button(ben, "Request export").click()
        button(ben, "Download export")
        type_into(ben, "Password", "a brand new horse")
        button(ben, "Delete account").click()
        accept_confirm(ben)
        wait(ben, lambda d: "Your account was deleted" in d.find_element(By.ID, "toasts").text, "the deletion")
        ben.get(f"{base}/login")
        type_into(ben, "Username", "mia")
        type_into(ben, "Password", "a brand new horse")
        button(ben, "Log in").click()
        wait(ben, lambda d: "wrong username or password" in d.find_element(By.CSS_SELECTOR, "p.error").text,
             "the deleted account refused")
        log("  settings done")

        for d in drivers:
            bad = csp_violations(d)
            assert not bad, f"the page broke its Content-Security-Policy: {bad}"
    finally:
        for d in drivers:
            d.quit()
        proxy.stdin.close()
        proxy_report = proxy.stdout.read().strip()
        proxy.wait(timeout=10)
        server.terminate()
        server.wait(timeout=30)
        log(proxy_report)
    drops = int(proxy_report.split(", ")[1].split()[0])
    assert drops >= 1, "the upload was never dropped: the test tested nothing"
    report["silent_drops"] = drops
    (SHOTS / "report.json").write_text(json.dumps(report, indent=1))
    log(f"browser suite passed; screenshots and report.json in {SHOTS}")
    # Counted with cargo's results by .ci/run.
    log("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out (browser suite)")


if __name__ == "__main__":
    main()
