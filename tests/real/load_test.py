"""Load test: the cluster manager's share of a real SkyPilot API server's CPU stays within
cluster_manager.load_budget.

The cluster manager runs against the server with poll_interval_secs = 1, so that only the
budget spaces its polls (without it, it would poll every second). After its first poll
(a forced refresh, then a read), the server's whole process tree CPU is sampled from
/proc every 0.2 s over a window; each poll's cost is the CPU across that poll's own span
(from the host database's poll record) less the idle rate (the mean of the rates measured
before and after) over that span, and the manager's share is their sum over the window. Checks: the share is at most the budget; the manager
polled in the window; it stretched its interval beyond poll_interval_secs; what `status`
reports agrees.

    python3 load_test.py --host-bin PATH --url URL --state-dir DIR [--window SECS]

Prints "load test: N passed, N failed".
"""
import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_cpu  # pylint: disable=wrong-import-position

BUDGET = 0.02


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--host-bin', required=True)
    ap.add_argument('--url', required=True)
    ap.add_argument('--state-dir', required=True)
    ap.add_argument('--window', type=float, default=90)
    ap.add_argument('--idle', type=float, default=45)
    args = ap.parse_args()
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        print(f'{"ok  " if ok else "FAIL"} {what}')
        if ok:
            passed += 1
        else:
            failed += 1

    idle_before = server_cpu.idle_rate(args.state_dir, args.idle)
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, 'host.db')
        cfg = os.path.join(d, 'host.toml')
        with open(cfg, 'w', encoding='utf-8') as f:
            f.write(f'[skypilot]\napi_url = "{args.url}"\nrequest_timeout_secs = 300\n'
                    f'[cluster_manager]\ndatabase = "{db}"\npoll_interval_secs = 1\n'
                    f'force_refresh_interval_secs = 86400\npoll_deadline_secs = 600\n'
                    f'load_budget = {BUDGET}\n')
        log = open(os.path.join(d, 'manager.log'), 'wb')  # pylint: disable=consider-using-with
        proc = subprocess.Popen([args.host_bin, 'cluster-manager', '-c', cfg],
                                stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                time.sleep(1)
                if os.path.exists(db) and polls(db) >= 1:
                    break
            else:
                raise SystemExit('load test: the cluster manager did not poll within 600 s')
            first = polls(db)
            # Long enough to hold a poll at the interval the manager chose.
            chosen = status_of(args.host_bin, cfg)['polling']['effective_interval_secs']
            span = min(max(args.window, 1.5 * chosen + 5), 600)
            # The server's CPU sampled every 0.2 s through the window, so each poll's cost
            # is read across that poll alone: the server's own background work (a fifth of
            # a core here, varying by several percent) then weighs only over the seconds
            # the polls last, not over the whole window.
            samples = []
            c0, t0, w0 = server_cpu.tree_cpu(args.state_dir), time.monotonic(), time.time()
            while time.monotonic() - t0 < span:
                samples.append((time.time(), server_cpu.tree_cpu(args.state_dir)))
                time.sleep(0.2)
            used = server_cpu.tree_cpu(args.state_dir) - c0
            window = time.monotonic() - t0
            in_window = polls(db) - first
            runs = poll_times(db, w0 + 0.5, w0 + window - 0.5)
            status = status_of(args.host_bin, cfg)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    # The server's own background work varies: of the idle rates before and after, the
    # lower one is subtracted (what remains is counted as the manager's).
    idle_after = server_cpu.idle_rate(args.state_dir, args.idle)
    idle = min(idle_before, idle_after)
    per_poll = []
    for start, end in runs:
        before = [(t, c) for t, c in samples if t <= start - 0.2]
        after = [(t, c) for t, c in samples if t >= end + 0.2]
        if before and after:
            (ta, ca), (tb, cb) = before[-1], after[0]
            per_poll.append(max(0.0, cb - ca - idle * (tb - ta)))
    # The manager's share in its steady state: what a poll costs the server, once per
    # interval it chose (a window holds few polls, so polls / window would depend on
    # where the window falls).
    chosen = status['polling']['effective_interval_secs']
    share = (sum(per_poll) / len(per_poll) / chosen) if per_poll else float('inf')
    print(f'     idle: {idle_before * 100:.2f}% of a core before, {idle_after * 100:.2f}% after')
    print(f'     window {window:.0f} s: server CPU {used:.2f} s in all (idle about '
          f'{idle * window:.2f} s); {in_window} polls, each costing the server '
          f'{", ".join(f"{x:.2f}" for x in per_poll)} s of CPU across its own span')
    check(len(per_poll) >= 1, f'each poll in the window is measured ({len(per_poll)} of '
                              f'{len(runs)})')
    polling = status['polling']
    check(share <= BUDGET,
          f'the manager takes {share * 100:.2f}% of the server\'s CPU: a mean poll of '
          f'the server\'s CPU every {chosen:.1f} s (budget {BUDGET * 100:.0f}%)')
    check(in_window >= 1, f'the manager polled in the window ({in_window} polls)')
    check(polling['effective_interval_secs'] > 1,
          f'the interval is stretched beyond poll_interval_secs 1 s: '
          f'{polling["effective_interval_secs"]:.1f} s')
    load = polling.get('load') or {}
    check(load.get('share', 1) <= BUDGET + 1e-9 and load.get('budget') == BUDGET,
          f'status reports the share within the budget: {load}')
    check(status['state']['stale'] is False, 'the state is fresh')
    print(f'load test: {passed} passed, {failed} failed')
    return 1 if failed else 0


def status_of(host_bin, cfg):
    out = subprocess.run([host_bin, 'status', '--json', '-c', cfg], capture_output=True,
                         check=False)
    if out.returncode != 0:
        raise SystemExit(f'load test: skypilot-host status failed: {out.stderr.decode()}')
    return json.loads(out.stdout)


def poll_times(db, since, until):
    """(started_at, finished_at) of the successful polls that started in [since, until]."""
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True, timeout=5)
    try:
        return con.execute("SELECT started_at, finished_at FROM poll_runs WHERE outcome = 'ok' "
                           'AND started_at >= ? AND started_at <= ? ORDER BY id',
                           (since, until)).fetchall()
    finally:
        con.close()


def polls(db):
    """Successful polls recorded so far."""
    try:
        con = sqlite3.connect(f'file:{db}?mode=ro', uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM poll_runs WHERE outcome = 'ok'"
                               ).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


if __name__ == '__main__':
    sys.exit(main())
