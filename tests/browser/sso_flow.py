"""Single sign-on and `sky api login` in headless Chromium, against a real OpenID Provider
(tests/oidc/provider.mjs) and the real SkyPilot behind the web UI's gateway.

Run by the `browser_single_sign_on_and_the_cli_login` integration test, in two phases
around a restart of the web UI:

    python sso_flow.py 1 BASE PROVIDER SKY_BIN CLI_HOME STATE_FILE SHOTS
    python sso_flow.py 2 BASE PROVIDER SKY_BIN CLI_HOME STATE_FILE SHOTS PROVIDER_PID ROOT_USER ROOT_PASSWORD

Phase 1: bob (group sky-users) signs in through the provider's own login form and is
shown as bob with the role user; 20 more sign-ins measure the console's first byte after the
provider's redirect; mallory (no mapped group) gets the no-access page; an expired and a
tampered ID token are refused; SkyPilot's CLI logs in (`sky api login -e BASE
--no-browser`, the polling flow) with bob authorizing it in the browser, and `sky
status` works. Bob's browser state is saved for phase 2.

Phase 2 (after the restart): bob's session and the CLI login still hold; bob revokes the
CLI login in the console and `sky status` is refused with SkyPilot's "sky api login"
advice; with the provider stopped, single sign-on shows our error page and password
login (the users file) still works.

The last line is `browser: N passed, N failed`; the exit status is 1 when a check failed.
"""

import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

from checks import Checks

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ANSI = re.compile(r"\x1b\[[0-9;]*m")



def who(name, role):
    """The console header's name and role badge, as the web UI renders them."""
    return f'<span class="name">{name}</span><span class="badge role" title="your role">{role}</span>'

def launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync"])


def provider_login(page, base, person):
    """From the console's login page through the provider's login and consent pages."""
    page.goto(f"{base}/console/login")
    page.click("a.sso")
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", person)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    # The provider asks for consent once per grant.
    if "/interaction/" in page.url:
        page.click("button[type=submit]")
    page.wait_for_load_state()


def set_mode(provider, mode):
    req = urllib.request.Request(f"{provider}/_test/mode/{mode}", method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def sky_env(home):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1", "SKYPILOT_DISABLE_USAGE_COLLECTION": "1",
           # Never a local API server of the CLI's own: a failed login must show.
           "SKYPILOT_DISABLE_LOCAL_API_SERVER": "1"}
    return env


def sky(sky_bin, home, *args, timeout=120):
    r = subprocess.run([sky_bin, *args], env=sky_env(home), capture_output=True, text=True,
                       timeout=timeout)
    return r.returncode, ANSI.sub("", r.stdout + r.stderr)


def phase1(check, p, base, provider, sky_bin, home, state_file, shots):
    browser = launch(p)
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    provider_login(page, base, "bob")
    html = page.content()
    check("bob is back at the console after the provider", page.url.startswith(f"{base}/console/"),
          page.url)
    check("bob's name and role are shown", who("bob", "user") in html, html[:400])
    page.screenshot(path=f"{shots}/sso-bob.png", full_page=True)

    # Login latency: from the callback request (the provider's redirect) to the first
    # byte of the console page it redirects to; 20 sign-ins, each in a fresh browser.
    samples = []
    for _ in range(20):
        c = browser.new_context()
        pg = c.new_page()
        marks = {}
        pg.on("request", lambda r, m=marks: m.setdefault("callback", time.perf_counter())
              if "/console/oidc/callback" in r.url else None)
        pg.on("response", lambda r, m=marks: m.setdefault("console", time.perf_counter())
              if r.url.rstrip("/").endswith("/console") and "callback" in m else None)
        provider_login(pg, base, "bob")
        if "callback" in marks and "console" in marks:
            samples.append((marks["console"] - marks["callback"]) * 1000)
        c.close()
    check("20 timed sign-ins", len(samples) == 20, str(len(samples)))
    if samples:
        print(f"login latency: median {statistics.median(samples):.1f} ms, "
              f"min {min(samples):.1f} ms, max {max(samples):.1f} ms over {len(samples)}",
              flush=True)

    c = browser.new_context()
    pg = c.new_page()
    provider_login(pg, base, "mallory")
    html = pg.content()
    check("a person in no mapped group is refused", "No access" in html and "staff" in html
          and "sky-users" in html, html[:600])
    pg.screenshot(path=f"{shots}/sso-no-access.png", full_page=True)
    pg.goto(f"{base}/console/")
    check("and has no session", "/console/login" in pg.url, pg.url)
    c.close()

    for mode, needle in [("expired", "expired"), ("tampered", "signature")]:
        set_mode(provider, mode)
        c = browser.new_context()
        pg = c.new_page()
        provider_login(pg, base, "bob")
        html = pg.content()
        check(f"an {mode} ID token is refused",
              "ID token is not valid" in html and needle in html.lower(), html[:800])
        pg.goto(f"{base}/console/")
        check(f"and the {mode} token gave no session", "/console/login" in pg.url, pg.url)
        c.close()
    set_mode(provider, "normal")

    # SkyPilot's own CLI: sky api login, the polling flow, bob authorizing it.
    proc = subprocess.Popen([sky_bin, "api", "login", "-e", base, "--no-browser"],
                            env=sky_env(home), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = None
    seen = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"(https?://\S+/auth/authorize\?code_challenge=[A-Za-z0-9_-]+)",
                      ANSI.sub("", line))
        if m:
            url = m.group(1)
            break
    check("sky api login prints the authorize URL", url is not None, "".join(seen)[-800:])
    if url:
        page.goto(url)
        check("the authorize page names bob", "bob" in page.content())
        page.screenshot(path=f"{shots}/sso-cli-authorize.png", full_page=True)
        page.click("form[action='/auth/authorize'] button[type=submit]")
        page.wait_for_load_state()
        check("the CLI is authorized", "CLI authorized" in page.content(), page.content()[:400])
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        out = ANSI.sub("", "".join(seen) + out)
        check("sky api login ends logged in as bob", proc.returncode == 0
              and "Logged into SkyPilot API server" in out and "bob" in out, out[-800:])
    else:
        proc.kill()
    code, out = sky(sky_bin, home, "status")
    check("sky status works with the CLI login", code == 0, out[-800:])
    code, out = sky(sky_bin, home, "api", "info")
    check("sky api info names the gateway and bob", code == 0 and base in out and "bob" in out,
          out[-800:])
    localhost_callback(check, page, base, sky_bin)
    page.goto(f"{base}/console/cli-logins")
    check("the console lists bob's two CLI logins", page.content().count("Revoke") == 2,
          page.content()[:600])
    ctx.storage_state(path=state_file)
    browser.close()


# SkyPilot's own callback server of the localhost flow (sky/client/oauth.py), as the CLI
# runs it: prints "listening", then the token it was sent.
CALLBACK = """
import sys, time
from sky.client import oauth
box = {'token': None}
oauth.start_local_auth_server(int(sys.argv[1]), box, sys.argv[2], timeout=60)
print('listening', flush=True)
start = time.time()
while box['token'] is None and time.time() - start < 60:
    time.sleep(0.2)
print(box['token'] or '', flush=True)
"""


def localhost_callback(check, page, base, sky_bin):
    """The localhost-callback flow: `/token?local_port=P` hands the token to SkyPilot's
    callback server on P; the token's cookie then authenticates as bob."""
    import base64
    import json
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    python = os.path.join(os.path.dirname(sky_bin), "python")
    proc = subprocess.Popen([python, "-c", CALLBACK, str(port), base], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ready = proc.stdout.readline()
    check("SkyPilot's callback server listens", "listening" in ready, ready)
    page.goto(f"{base}/token?local_port={port}")
    page.click("form[action='/token'] button[type=submit]")
    page.wait_for_function(
        "document.getElementById('handover') && "
        "!document.getElementById('handover').textContent.startsWith('Handing')", timeout=30000)
    note = page.inner_text("#handover")
    check("the token page handed the token to the CLI", "has its token" in note, note)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    token = out.strip().splitlines()[-1] if out.strip() else ""
    try:
        cookies = json.loads(base64.b64decode(token))["cookies"]
    except (ValueError, KeyError) as e:
        cookies = {}
        check("the callback got SkyPilot's token format", False, f"{e}: {out[-300:]}")
    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    req = urllib.request.Request(f"{base}/api/health",
                                 headers={"Cookie": header, "X-SkyPilot-API-Version": "62"})
    health = json.load(urllib.request.urlopen(req, timeout=30))
    check("the handed-over token logs in as bob",
          (health.get("user") or {}).get("name") == "bob", json.dumps(health)[:300])


def phase2(check, p, base, provider, sky_bin, home, state_file, shots, provider_pid, root,
           root_password):
    browser = launch(p)
    ctx = browser.new_context(storage_state=state_file, viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    page.goto(f"{base}/console/")
    check("bob's single sign-on session outlives the restart",
          "/console/login" not in page.url and who("bob", "user") in page.content(), page.url)
    code, out = sky(sky_bin, home, "status")
    check("the CLI login outlives the restart", code == 0, out[-800:])

    page.goto(f"{base}/console/cli-logins")
    page.screenshot(path=f"{shots}/sso-cli-logins.png", full_page=True)
    for _ in range(2):
        page.click("form[action$='/revoke'] button")
        page.wait_for_load_state()
    check("the revoked CLI logins are gone from the list", "No CLI logins" in page.content(),
          page.content()[:600])
    code, out = sky(sky_bin, home, "status")
    check("sky status is refused after the revoke, telling to log in again",
          code != 0 and "sky api login -e" in out, out[-800:])

    os.kill(provider_pid, signal.SIGTERM)
    time.sleep(1)
    c = browser.new_context()
    pg = c.new_page()
    pg.goto(f"{base}/console/login")
    pg.click("a.sso")
    pg.wait_for_load_state()
    html = pg.content()
    check("with the provider down, a clear error page",
          "cannot be used right now" in html and "password still works" in html, html[:800])
    pg.screenshot(path=f"{shots}/sso-provider-down.png", full_page=True)
    pg.fill("input[name=username]", root)
    pg.fill("input[name=password]", root_password)
    pg.click("button[type=submit]")
    pg.wait_for_load_state()
    check("password login still works with the provider down",
          "/console/login" not in pg.url and who(root, "admin") in pg.content(), pg.url)
    page.goto(f"{base}/console/clusters")
    check("bob's session still works with the provider down", "/console/login" not in page.url,
          page.url)
    browser.close()


def main():
    phase = sys.argv[1]
    base, provider, sky_bin, home, state_file, shots = sys.argv[2:8]
    os.makedirs(shots, exist_ok=True)
    check = Checks()
    with sync_playwright() as p:
        if phase == "1":
            phase1(check, p, base, provider, sky_bin, home, state_file, shots)
        else:
            pid, root, password = int(sys.argv[8]), sys.argv[9], sys.argv[10]
            phase2(check, p, base, provider, sky_bin, home, state_file, shots, pid, root,
                   password)
    sys.exit(check.summary())


if __name__ == "__main__":
    main()
