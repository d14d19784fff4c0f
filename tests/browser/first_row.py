"""Time to the first cluster row, as a person sees it: headless Chromium loads the
console's Clusters page and SkyPilot's own dashboard Clusters page, alternating, and
each page records in its own clock the moment the first cluster row is painted.

    python first_row.py --console URL --user U --password-file F --dashboard URL \
        [--reps 5] [--label L] [--clusters N]

How it is measured: a script added to every page before the page's own (through the
browser, so no page's Content-Security-Policy blocks it) watches the document with a
MutationObserver; when the first element matching the page's row selector exists, the
next animation frame's time (performance.now(), from the navigation's start) is the
first row's paint. The console's row is `#clusters tbody tr`, the dashboard's a link to
one cluster's page (`a[href^="/dashboard/clusters/"]`). Each load is a fresh navigation
either with the pages' assets cached (warm, a person coming back) or with the browser's
cache cleared first (cold, a first visit), alternating; the console keeps its login
session.

Prints one JSON line per page with every load and the median, then a Markdown row.
"""

import argparse
import json
import os
import statistics
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

WATCH = """
(() => {
  const sel = %s;
  const seen = () => {
    if (window.__firstRow !== undefined || !document.querySelector(sel)) return false;
    requestAnimationFrame(() => {
      if (window.__firstRow === undefined) window.__firstRow = performance.now();
    });
    return true;
  };
  const obs = new MutationObserver(() => { if (seen()) obs.disconnect(); });
  obs.observe(document, { childList: true, subtree: true });
})();
"""

PAGES = {
    "console": "#clusters tbody tr",
    "dashboard": 'a[href^="/dashboard/clusters/"]',
}


def first_row_ms(page, url, timeout_s, cold):
    if cold:
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.clearBrowserCache")
        cdp.detach()
    page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    # Asked from here (the dashboard's CSP forbids the string evaluation of
    # wait_for_function); the time itself is the page's own record.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        t = page.evaluate("() => window.__firstRow")
        if t is not None:
            return t
        time.sleep(0.025)
    raise SystemExit(f"first_row: no cluster row on {url} within {timeout_s} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--console", required=True, help="the console's Clusters page URL")
    ap.add_argument("--login", required=True, help="the console's login page URL")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--dashboard", required=True, help="SkyPilot's dashboard Clusters page URL")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--label", default="")
    ap.add_argument("--clusters", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=600)
    a = ap.parse_args()
    with open(a.password_file, encoding="utf-8") as f:
        password = f.read().strip()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        login = ctx.new_page()
        login.goto(a.login)
        login.fill("input[name=username]", a.user)
        login.fill("input[name=password]", password)
        login.click("button[type=submit]")
        login.wait_for_load_state()
        if "/console/login" in login.url:
            sys.exit(f"first_row: the console refused the login of {a.user}")
        login.close()
        pages = {}
        for name, sel in PAGES.items():
            page = ctx.new_page()
            page.add_init_script(WATCH % json.dumps(sel))
            pages[name] = page
        urls = {"console": a.console, "dashboard": a.dashboard}
        # One untimed load of each first (the server's and the browser's first use).
        for name in PAGES:
            first_row_ms(pages[name], urls[name], a.timeout, cold=False)
        # Warm: the pages' scripts and styles cached, as for a person coming back; cold:
        # the browser's cache cleared before each load, as for a first visit.
        times = {(m, name): [] for m in ("warm", "cold") for name in PAGES}
        for _ in range(a.reps):
            for mode in ("warm", "cold"):
                for name in PAGES:
                    times[(mode, name)].append(
                        first_row_ms(pages[name], urls[name], a.timeout, mode == "cold"))
        # The console's pager says how many rows it paged.
        shown = pages["console"].evaluate(
            "() => document.querySelectorAll('#clusters tbody tr').length")
        browser.close()
    for (mode, name), v in times.items():
        print(json.dumps({"label": a.label, "clusters": a.clusters, "cache": mode,
                          "page": name, "first_row_ms": [round(x, 1) for x in v],
                          "median_ms": round(statistics.median(v), 1),
                          **({"rows_on_page": shown} if name == "console" else {})}))
    for mode in ("warm", "cold"):
        con, dash = times[(mode, "console")], times[(mode, "dashboard")]
        mc, md = statistics.median(con), statistics.median(dash)
        ratio = md / mc if mc > 0 else float("inf")
        print(f"| {a.clusters:,} | {a.label} | {mode} | {mc:.0f} ms "
              f"({min(con):.0f}–{max(con):.0f}) | {md:.0f} ms ({min(dash):.0f}–"
              f"{max(dash):.0f}) | {ratio:.1f}× |")


if __name__ == "__main__":
    main()
