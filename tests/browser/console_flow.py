"""The console in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Run by the `browser_console_flow` integration test (cargo feature `browser`), which
starts the simulator, the cluster manager and the web UI, then runs:

    python console_flow.py BASE_URL USER PASSWORD SCREENSHOT_DIR

Each step is one check; the last line is `browser: N passed, N failed`; the exit status
is 1 when a check failed. No browser is downloaded: Chromium comes from Debian.
"""

import os
import sys

from playwright.sync_api import sync_playwright

from checks import Checks

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def main():
    base, user, password, shots = sys.argv[1:5]
    os.makedirs(shots, exist_ok=True)
    check = Checks()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

        page.goto(f"{base}/console/clusters")
        check("a stranger is sent to the login page", "/console/login" in page.url, page.url)
        page.screenshot(path=f"{shots}/login.png")

        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        check("login returns to the page asked for", page.url.endswith("/console/clusters"),
              page.url)
        rows = page.locator("table#clusters tbody tr")
        check("the clusters are listed", rows.count() >= 2, f"{rows.count()} rows")
        check("web-a is UP", "UP" in page.locator("tr", has_text="web-a").first.inner_text())
        page.screenshot(path=f"{shots}/clusters.png", full_page=True)

        page.select_option("select[name=status]", "STOPPED")
        page.click("form.filters button[type=submit]")
        page.wait_for_load_state()
        names = page.locator("table#clusters tbody tr td:first-child").all_inner_texts()
        check("the status filter works", names == ["web-c"], str(names))

        for name, path in [("overview", "/console/"), ("cluster", "/console/clusters/web-a"),
                           ("autostop", "/console/autostop"), ("services", "/console/services"),
                           ("config", "/console/config")]:
            resp = page.goto(f"{base}{path}")
            check(f"the {name} page loads", resp is not None and resp.status == 200,
                  str(resp and resp.status))
            page.screenshot(path=f"{shots}/{name}.png", full_page=True)

        page.goto(f"{base}/console/clusters/web-a")
        page.click("a[href$='/web-a/actions/stop']")
        page.wait_for_load_state()
        check("stop asks for confirmation", "/actions/stop" in page.url, page.url)
        page.screenshot(path=f"{shots}/confirm.png", full_page=True)
        page.click("button.danger")
        page.wait_for_load_state()
        result = page.locator("#action-result").inner_text()
        check("the stop is carried out", result.startswith("Done"), result)

        page.goto(f"{base}/console/audit")
        row = page.locator("tr", has_text="web-a").filter(has_text="stop").first
        text = row.inner_text() if row.count() else ""
        check("the audit log shows who stopped it", f"web-ui:{user}" in text and "ok" in text,
              text)
        page.screenshot(path=f"{shots}/audit.png", full_page=True)

        check("no script error or CSP violation", problems == [], "; ".join(problems))

        page.click("text=Log out")
        page.wait_for_load_state()
        page.goto(f"{base}/console/")
        check("after logout the console asks for a login again", "/console/login" in page.url,
              page.url)
        browser.close()

    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
