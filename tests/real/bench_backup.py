"""Backup time and size, and SkyPilot's /status latency with and without a backup running.

scripts/bench-backup.sh starts the server with its fleet and runs this:

    python3 bench_backup.py --url URL --host-bin PATH --config HOST_TOML --clusters N

Backups: --backups runs of `skypilot-host backup` one after another (wall time of the
whole command, and the size of what it wrote). Latency: --rounds rounds, each of
--calls /status calls as the cluster manager sends them with no backup running, then
--calls more while backups run back to back in another process; the medians of each
condition over every round (the conditions alternate, so a drift of the machine hits both).
Prints one Markdown table row.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import status_contract  # noqa: E402  pylint: disable=wrong-import-position

QUERY = status_contract.STATUS_QUERIES['status (cluster manager)']


def backup(host_bin, config):
    """One backup: (wall seconds, bytes written)."""
    started = time.monotonic()
    p = subprocess.run([host_bin, 'backup', '--keep', '2', '--config', config],
                       capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if p.returncode != 0:
        raise RuntimeError(f'backup failed: {p.stderr}')
    first = p.stdout.splitlines()[0]
    path = first.split(':')[0]
    if not os.path.isfile(os.path.join(path, 'manifest.json')):
        raise RuntimeError(f'no manifest in {path}: {os.listdir(os.path.dirname(path))}\n'
                           f'{p.stdout}{p.stderr}')
    with open(os.path.join(path, 'manifest.json'), encoding='utf-8') as f:
        m = json.load(f)
    return wall, sum(part['size'] for part in m['parts'])


def statuses(url, n):
    return [status_contract.call(url, 'status', QUERY, timeout=900)[1] for _ in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--url', required=True)
    ap.add_argument('--host-bin', required=True)
    ap.add_argument('--config', required=True)
    ap.add_argument('--clusters', type=int, required=True)
    ap.add_argument('--backups', type=int, default=5)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--calls', type=int, default=8)
    a = ap.parse_args()

    statuses(a.url, 2)  # warm-up
    runs = [backup(a.host_bin, a.config) for _ in range(a.backups)]
    walls = [w for w, _ in runs]
    size = runs[-1][1]

    quiet, busy, during = [], [], []
    for _ in range(a.rounds):
        quiet += statuses(a.url, a.calls)
        stop = threading.Event()

        def loop():
            while not stop.is_set():
                during.append(backup(a.host_bin, a.config)[0])

        t = threading.Thread(target=loop)
        t.start()
        time.sleep(0.5)
        busy += statuses(a.url, a.calls)
        stop.set()
        t.join()

    q50, b50 = statistics.median(quiet), statistics.median(busy)
    print(f'| {a.clusters:,} | {statistics.median(walls):.2f} s '
          f'(min {min(walls):.2f}, max {max(walls):.2f}, {len(walls)} runs) '
          f'| {size / 1e6:.1f} MB | {q50:.3f} s | {b50:.3f} s | {b50 / q50 - 1:+.0%} '
          f'| {len(during)} |')


if __name__ == '__main__':
    main()
