"""Server CPU per /status and per poll, patched and released SkyPilot, side by side.

scripts/bench-status-cpu.sh starts the two servers on copies of one state and runs this:

    python3 bench_status_cpu.py --clusters N --reps R --host-bin PATH \
        --server patched=URL,STATE_DIR --server released=URL,STATE_DIR

For each server: one warm-up /status, the idle CPU rate over --idle-secs, then R rounds
(the servers take turns within a round) of a /status as the cluster manager sends it and
of a poll (/api/health, then that /status). CPU is the server's whole process tree from
/proc, idle subtracted, including the work a request leaves behind once answered (see
server_cpu.cpu_of). A third /status per round is measured on the two processes that
worked on it alone, the executor that ran it and the server's main process, each with
its own idle rate subtracted (server_cpu.request_cpu_of): the whole tree's figure carries
the server's background work (its daemons, in bursts of seconds), which for a request of
a fraction of a second is noise as large as the request. Then the cluster manager itself (defaults: poll_interval_secs 30,
load_budget 0.02) polls each server until it has measured three reads, and the effective
interval it chose is read from `skypilot-host status --json`. Prints a Markdown table row
per server and a JSON line with every figure.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server_cpu  # pylint: disable=wrong-import-position
import status_contract  # pylint: disable=wrong-import-position

MANAGER_QUERY = status_contract.STATUS_QUERIES['status (cluster manager)']


def health(url):
    with urllib.request.urlopen(f'{url}/api/health', timeout=60) as r:
        r.read()


def manager_interval(host_bin, url, timeout):
    """Runs the cluster manager (default poll_interval_secs and load_budget) against url
    until it recorded its first measured /status; returns its polling section from
    `skypilot-host status --json` (the interval after one read: status_secs / budget)."""
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, 'host.db')
        cfg = os.path.join(d, 'host.toml')
        with open(cfg, 'w', encoding='utf-8') as f:
            f.write(f'[skypilot]\napi_url = "{url}"\nrequest_timeout_secs = 900\n'
                    f'[cluster_manager]\ndatabase = "{db}"\npoll_deadline_secs = 1800\n'
                    'force_refresh_interval_secs = 86400\n')
        with open(os.path.join(d, 'manager.log'), 'wb') as log:
            proc = subprocess.Popen([host_bin, 'cluster-manager', '-c', cfg],
                                    stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            polling = None
            while time.monotonic() < deadline:
                time.sleep(2)
                if not os.path.exists(db):
                    continue
                out = subprocess.run([host_bin, 'status', '--json', '-c', cfg],
                                     capture_output=True, check=False)
                if out.returncode == 0:
                    polling = json.loads(out.stdout)['polling']
                    if polling.get('load'):
                        return polling
            raise RuntimeError(f'the cluster manager did not record a poll of {url} '
                               f'within {timeout} s (last: {polling})')
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--clusters', type=int, required=True)
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--catalog', default='test', help="the fleet's catalog (recorded)")
    ap.add_argument('--idle-secs', type=float, default=30)
    ap.add_argument('--host-bin', required=True)
    ap.add_argument('--server', action='append', required=True,
                    help='NAME=URL,STATE_DIR')
    args = ap.parse_args()
    servers = {}
    for s in args.server:
        name, rest = s.split('=', 1)
        url, state = rest.split(',', 1)
        servers[name] = {'url': url, 'state': state}
    for s in servers.values():
        answer, _ = status_contract.call(s['url'], 'status', MANAGER_QUERY, timeout=3600)
        if len(answer) != args.clusters:
            raise SystemExit(f'{s["url"]} lists {len(answer)} clusters, '
                             f'expected {args.clusters}')
    # The warm-up's own tail (see server_cpu.cpu_of) is not idle time.
    time.sleep(server_cpu.SETTLE_SECS)
    for s in servers.values():
        s['idle_by_pid'] = server_cpu.idle_rates_by_pid(s['state'], args.idle_secs)
        s['idle'] = sum(s['idle_by_pid'].values())
        s['status_cpu'], s['status_wall'], s['poll_cpu'], s['request_cpu'] = [], [], [], []
    for _ in range(args.reps):
        for s in servers.values():
            url = s['url']
            cpu, wall = server_cpu.cpu_of(
                s['state'],
                lambda: status_contract.call(url, 'status', MANAGER_QUERY, 3600),
                s['idle'])
            s['status_cpu'].append(cpu)
            s['status_wall'].append(wall)

            def poll():
                health(url)
                status_contract.call(url, 'status', MANAGER_QUERY, 3600)

            cpu, _ = server_cpu.cpu_of(s['state'], poll, s['idle'])
            s['poll_cpu'].append(cpu)
            s['request_cpu'].append(server_cpu.request_cpu_of(
                s['state'],
                lambda: status_contract.call_with_pid(url, 'status', MANAGER_QUERY, 3600)[2],
                s['idle_by_pid']))
    for s in servers.values():
        s['polling'] = manager_interval(args.host_bin, s['url'], 3600)
    result = {'clusters': args.clusters, 'catalog': args.catalog, 'reps': args.reps,
              'servers': {}}
    for name, s in servers.items():
        status_cpu = statistics.median(s['status_cpu'])
        poll_cpu = statistics.median(s['poll_cpu'])
        interval = s['polling']['effective_interval_secs']
        result['servers'][name] = {
            'idle_cpu_per_sec': s['idle'],
            'status_cpu_median': status_cpu,
            'status_cpu_min': min(s['status_cpu']),
            'status_cpu': s['status_cpu'],
            'status_wall_median': statistics.median(s['status_wall']),
            'poll_cpu_median': poll_cpu,
            'poll_cpu': s['poll_cpu'],
            'request_cpu_median': statistics.median(s['request_cpu']),
            'request_cpu_min': min(s['request_cpu']),
            'request_cpu': s['request_cpu'],
            'manager_interval_secs': interval,
            'manager_status_secs': s['polling']['load']['status_secs'],
            'manager_cpu_share': poll_cpu / interval,
        }
        print(f'| {args.clusters} | {name} | {status_cpu:.3f} (min {min(s["status_cpu"]):.3f}) | '
              f'{statistics.median(s["request_cpu"]):.3f} (min {min(s["request_cpu"]):.3f}) | '
              f'{poll_cpu:.3f} | '
              f'{statistics.median(s["status_wall"]):.2f} | {interval:.0f} | '
              f'{100 * poll_cpu / interval:.2f}% |')
    names = list(servers)
    if len(names) == 2:
        a, b = (result['servers'][n]['status_cpu_median'] for n in names)
        result['ratio'] = b / a if a else None
        lo_a, lo_b = (result['servers'][n]['status_cpu_min'] for n in names)
        result['ratio_of_minima'] = lo_b / lo_a if lo_a else None
        print(f'{names[1]} / {names[0]} CPU per /status at {args.clusters}: '
              f'{result["ratio"]:.1f}x (medians), {result["ratio_of_minima"]:.1f}x (minima, '
              'the rounds least disturbed by the servers\' own background work)')
        a, b = (result['servers'][n]['request_cpu_median'] for n in names)
        result['request_ratio'] = b / a if a else None
        if a:
            print(f'{names[1]} / {names[0]} CPU per /status at {args.clusters}, the request\'s '
                  f'executor and main process: {result["request_ratio"]:.1f}x (medians)')
    print(json.dumps(result))


if __name__ == '__main__':
    sys.exit(main())
