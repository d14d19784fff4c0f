"""A viewer in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright), in
front of the real SkyPilot: the console offers no action, and SkyPilot's dashboard
behind the gateway refuses what its buttons send.

Run by the `browser_a_viewer_gets_no_action_in_the_console_or_the_dashboard` integration
test (cargo features `browser` and `real-server`):

    python viewer_flow.py BASE_URL USER PASSWORD CLUSTER SCREENSHOT_DIR

The dashboard's buttons (stop, down, autostop) post JSON to same-origin
`/internal/dashboard/<endpoint>` with the browser's session cookie; this script sends
those requests from inside the dashboard's page, as the buttons do. The last line is
`browser: N passed, N failed`; the exit status is 1 when a check failed.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

from checks import Checks

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def main():
    base, user, password, cluster, shots = sys.argv[1:6]
    os.makedirs(shots, exist_ok=True)
    check = Checks()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{base}/console/login")
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_load_state()
        check("the viewer is logged in", "/console/login" not in page.url, page.url)

        page.goto(f"{base}/console/clusters")
        html = page.content()
        check("the cluster is listed", cluster in html, "not on the Clusters page")
        check("no action is offered on the Clusters page", "/actions/" not in html)
        page.goto(f"{base}/console/clusters/{cluster}")
        html = page.content()
        check("no action is offered on the cluster's page", "/actions/" not in html)
        page.screenshot(path=f"{shots}/viewer-cluster.png", full_page=True)

        resp = page.goto(f"{base}/dashboard/clusters")
        check("SkyPilot's dashboard loads for the viewer", resp is not None and resp.status == 200,
              str(resp and resp.status))
        page.wait_for_load_state("networkidle")
        page.screenshot(path=f"{shots}/viewer-dashboard.png", full_page=True)

        for endpoint, body in [
            ("stop", {"cluster_name": cluster}),
            ("down", {"cluster_name": cluster}),
            ("autostop", {"cluster_name": cluster, "idle_minutes": 5, "down": False}),
        ]:
            answer = page.evaluate(
                """async ([endpoint, body]) => {
                    const r = await fetch('/internal/dashboard/' + endpoint, {
                        method: 'POST',
                        headers: {'Content-Type': 'application/json'},
                        body: JSON.stringify(body),
                    });
                    return {status: r.status, text: await r.text()};
                }""",
                [endpoint, body])
            check(f"the dashboard's {endpoint} is refused for a viewer",
                  answer["status"] == 403 and "viewer" in answer["text"],
                  json.dumps(answer))
        # A read the dashboard makes still works.
        answer = page.evaluate(
            """async () => {
                const r = await fetch('/internal/dashboard/users/role');
                return {status: r.status, text: await r.text()};
            }""")
        role = json.loads(answer["text"]).get("role") if answer["status"] == 200 else None
        check("the dashboard's reads work and SkyPilot says viewer", role == "viewer",
              json.dumps(answer))
        browser.close()

    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
