"""The console's screenshots for docs/screenshots, at 1400×900 in headless Chromium.

    python screenshots.py BASE USER PASSWORD_FILE OUT_DIR [--dashboard] [--act]

Logs in, then takes: the Overview with the last hour's charts (overview.png), the
Clusters page with its pager and prices (clusters.png), the Clusters page sorted by
price, highest first (clusters-by-price.png), and the page of the cluster that changed
status most (cluster.png), the Services page (services.png), the Autostop page
(autostop.png) and the audit log (audit.png); with --dashboard also SkyPilot's own
dashboard's Clusters page through the gateway (dashboard-clusters.png), to set them side
by side; with --act, the result of stopping that cluster from its page (action.png).
"""
import json
import sys
import urllib.request

from playwright.sync_api import sync_playwright

from sso_flow import launch


def main():
    base, user, password_file, out = sys.argv[1:5]
    with open(password_file, encoding="utf-8") as f:
        password = f.read().strip()
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/console/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        page.goto(f"{base}/console/?window=1h")
        page.screenshot(path=f"{out}/overview.png")
        page.goto(f"{base}/console/clusters")
        page.screenshot(path=f"{out}/clusters.png")
        page.goto(f"{base}/console/clusters?sort=hourly_cost&desc=1&status=UP")
        page.screenshot(path=f"{out}/clusters-by-price.png")
        # The cluster with the most transitions: read through the JSON API with the
        # browser's session.
        fleet = page.evaluate(
            "async () => (await (await fetch('/api/v1/clusters?status=UP&per_page=200')).json())")
        best, most = None, -1
        for c in fleet["clusters"]:
            d = page.evaluate(
                "async (n) => (await (await fetch('/api/v1/clusters/' + encodeURIComponent(n))).json())",
                c["name"])
            if len(d["cluster"]["transitions"]) > most:
                best, most = c["name"], len(d["cluster"]["transitions"])
        page.goto(f"{base}/console/clusters/{urllib.request.quote(best)}")
        page.screenshot(path=f"{out}/cluster.png")
        for name in ["services", "autostop", "audit"]:
            page.goto(f"{base}/console/{name}")
            page.screenshot(path=f"{out}/{name}.png")
        if "--act" in sys.argv[5:]:
            page.goto(f"{base}/console/clusters/{urllib.request.quote(best)}")
            page.click(f"a[href$='/{urllib.request.quote(best)}/actions/stop']")
            page.wait_for_load_state()
            page.click("button.danger")
            page.wait_for_load_state()
            page.locator("#action-result").wait_for()
            page.screenshot(path=f"{out}/action.png")
        if "--dashboard" in sys.argv[5:]:
            page.goto(f"{base}/dashboard/clusters")
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(3000)
            page.screenshot(path=f"{out}/dashboard-clusters.png")
        browser.close()
    print(json.dumps({"screenshots": out, "cluster": best, "transitions": most}))


if __name__ == "__main__":
    main()
