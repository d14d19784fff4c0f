"""CPU time of sky.core.status in this process (no API server), median of N calls.

Run with the interpreter of a SkyPilot venv and the environment of a state made by
fleet.py (HOME, SKY_RUNTIME_DIR, SKYPILOT_GLOBAL_CONFIG):

    python inprocess_status_cpu.py [N]

Prints "<median CPU seconds> s CPU per status (N calls)" on stderr (SkyPilot logs on
stdout). The request-scoped caches are cleared before each call, as the API server does
per request.
"""
import statistics
import sys
import time

from sky import core
from sky.utils import annotations
from sky.utils import common


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    times = []
    for _ in range(n):
        annotations.clear_request_level_cache()
        t = time.process_time()
        # Records whose owner is unknown to this process fail the response's validation
        # (logged); the catalog lookups of every cluster are made before that.
        core.status(refresh=common.StatusRefreshMode.NONE, all_users=True,
                    include_handle=False)
        times.append(time.process_time() - t)
    print(f'{statistics.median(times):.3f} s CPU per status ({n} calls)', file=sys.stderr)


if __name__ == '__main__':
    main()
