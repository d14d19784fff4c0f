"""Contract: the patched SkyPilot answers exactly as the released one, only faster.

Two real SkyPilot API servers on copies of the same state (scripts/status-contract.sh sets
them up): each query is sent to both and the answers are compared field by field.

    python3 status_contract.py --patched URL --reference URL --clusters N

Prints one line per check and "status contract: N passed, N failed"; exits 1 on any
failure. Needs only the Python standard library.
"""
import argparse
import json
import sys
import time
import urllib.request

API_VERSION = '62'

# The queries compared: what the cluster manager sends, what SkyPilot's dashboard sends
# for its cluster list (summary form), the full answer with handles, and the cost report
# in both forms (the dashboard's is abbreviated).
STATUS_QUERIES = {
    'status (cluster manager)': {
        'refresh': 'NONE', 'all_users': True, 'include_credentials': False,
        'include_handle': False,
    },
    'status (dashboard summary)': {
        'cluster_names': None, 'all_users': True, 'include_credentials': False,
        'include_handle': False, 'summary_response': True,
    },
    'status (full, with handles)': {
        'refresh': 'NONE', 'all_users': True, 'include_credentials': False,
        'include_handle': True,
    },
}
COST_QUERIES = {
    'cost_report': {'days': 30},
    'cost_report (dashboard summary)': {
        'days': 30, 'dashboard_summary_response': True,
        'exclude_managed_clusters': True,
    },
}


def call(base, op, body, timeout=600):
    """POST /op, then wait for the request's result; returns (value, wall seconds)."""
    value, wall, _ = call_with_pid(base, op, body, timeout)
    return value, wall


def call_with_pid(base, op, body, timeout=600):
    """As call, and the pid of the executor that ran the request: (value, wall, pid)."""
    started = time.monotonic()
    req = urllib.request.Request(
        f'{base}/{op}', data=json.dumps(body).encode(), method='POST',
        headers={'Content-Type': 'application/json',
                 'X-SkyPilot-API-Version': API_VERSION})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        request_id = r.headers['X-SkyPilot-Request-ID']
    if not request_id:
        raise RuntimeError(f'{base}/{op}: no X-SkyPilot-Request-ID in the answer')
    req = urllib.request.Request(
        f'{base}/api/get?request_id={request_id}',
        headers={'X-SkyPilot-API-Version': API_VERSION})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        answer = json.load(r)
    if answer.get('status') != 'SUCCEEDED':
        raise RuntimeError(f'{base}/{op} {body}: request {request_id} ended '
                           f'{answer.get("status")}: {answer.get("error")}')
    return json.loads(answer['return_value']), time.monotonic() - started, answer.get('pid')


def differences(a, b, path='', out=None, limit=20):
    """Field-by-field differences between two JSON values, as 'path: a != b' lines."""
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f'{path}.{k}: only in {"reference" if k in b else "patched"}')
            else:
                differences(a[k], b[k], f'{path}.{k}', out, limit)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f'{path}: {len(a)} items != {len(b)} items')
        for i, (x, y) in enumerate(zip(a, b)):
            differences(x, y, f'{path}[{i}]', out, limit)
    elif a != b or type(a) is not type(b):
        out.append(f'{path}: {a!r} != {b!r}')
    return out


def by_name(records, key='name'):
    return {r[key]: r for r in records}


class Checks:

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, problems):
        if problems:
            self.failed += 1
            print(f'FAIL {name}')
            for p in problems[:20]:
                print(f'     {p}')
        else:
            self.passed += 1
            print(f'ok   {name}')


def cost_problems(patched, reference, elapsed):
    """Cost reports taken a moment apart: every field equal, except the accrued duration
    (which grows with the clock: at most `elapsed` seconds apart) and the cost, whose
    rate (cost per second per node) must be equal."""
    problems = []
    p, r = by_name(patched, 'cluster_hash'), by_name(reference, 'cluster_hash')
    if set(p) != set(r):
        problems.append(f'clusters differ: only patched {sorted(set(p) - set(r))[:5]}, '
                        f'only reference {sorted(set(r) - set(p))[:5]}')
    for h in sorted(set(p) & set(r)):
        a, b = dict(p[h]), dict(r[h])
        da, db = a.pop('duration', None), b.pop('duration', None)
        ca, cb = a.pop('total_cost', None), b.pop('total_cost', None)
        ia, ib = a.pop('usage_intervals', None), b.pop('usage_intervals', None)
        problems += differences(a, b, f'[{a.get("name")}]')
        if (da is None) != (db is None) or (da is not None and abs(da - db) > elapsed + 2):
            problems.append(f'[{a.get("name")}].duration: {da} vs {db}')
        if ia is not None or ib is not None:
            # Closed intervals are equal; an open one ends at None on both.
            if [tuple(i) for i in ia or []] != [tuple(i) for i in ib or []]:
                problems.append(f'[{a.get("name")}].usage_intervals: {ia} != {ib}')
        if ca is not None or cb is not None:
            nodes = a.get('num_nodes') or 1
            rate_a = ca / (da * nodes) if da else ca
            rate_b = cb / (db * nodes) if db else cb
            if abs(rate_a - rate_b) > 1e-9 * max(abs(rate_a), abs(rate_b), 1e-12):
                problems.append(f'[{a.get("name")}].total_cost rate: {rate_a} != {rate_b}')
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--patched', required=True)
    ap.add_argument('--reference', required=True)
    ap.add_argument('--clusters', type=int, required=True)
    args = ap.parse_args()
    checks = Checks()
    for name, body in STATUS_QUERIES.items():
        patched, tp = call(args.patched, 'status', body)
        reference, tr = call(args.reference, 'status', body)
        print(f'     {name}: patched {tp:.2f} s, reference {tr:.2f} s (wall)')
        problems = []
        if len(reference) != args.clusters:
            problems.append(f'the reference lists {len(reference)} clusters, '
                            f'expected {args.clusters}')
        problems += differences(patched, reference)
        checks.check(name, problems)
        if name == 'status (cluster manager)':
            # The fleet is what it claims: several clouds, instance types and
            # accelerators, each answer taken from the catalog.
            clouds = {c.get('cloud') for c in reference}
            types = {c.get('resources_str') for c in reference}
            accs = {c.get('accelerators') and json.dumps(c['accelerators'], sort_keys=True)
                    for c in reference} - {None, 'null'}
            spread = []
            if len(clouds) < 3:
                spread.append(f'clouds: {clouds}')
            if len(types) < 10:
                spread.append(f'{len(types)} distinct resources: {sorted(map(str, types))}')
            if len(accs) < 4:
                spread.append(f'accelerators: {accs}')
            if any(c.get('cpus') in (None, '-', '') for c in reference):
                spread.append('a cluster without vCPUs from the catalog')
            checks.check('the fleet spans clouds, instance types and accelerators', spread)
    for name, body in COST_QUERIES.items():
        started = time.monotonic()
        patched, _ = call(args.patched, 'cost_report', body)
        reference, _ = call(args.reference, 'cost_report', body)
        elapsed = time.monotonic() - started
        problems = []
        if len(reference) < args.clusters:
            problems.append(f'the reference reports {len(reference)} clusters, '
                            f'expected at least {args.clusters}')
        if 'dashboard' not in name and not any(r.get('total_cost') for r in reference):
            problems.append('no cluster has a cost: the catalog prices were not used')
        problems += cost_problems(patched, reference, elapsed)
        checks.check(name, problems)
    print(f'status contract: {checks.passed} passed, {checks.failed} failed')
    return 1 if checks.failed else 0


if __name__ == '__main__':
    sys.exit(main())
