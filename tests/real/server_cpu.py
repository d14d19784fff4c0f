"""CPU time of a SkyPilot API server's whole process tree, from /proc.

scripts/lib.sh's start_sky_server marks every process of a server with
SKYPILOT_HOST_SERVER_MARKER=<its state dir> in the environment (inherited by every
descendant, even one that left the process group). The tree's CPU time is the sum, over
the live marked processes, of their user and system time and that of the children they
reaped (fields 14-17 of /proc/PID/stat).

Used by tests/real/load_test.py and tests/real/bench_status_cpu.py.
"""
import os
import time

TICKS = os.sysconf('SC_CLK_TCK')


def _marked(pid, marker):
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            return marker in f.read().split(b'\0')
    except OSError:
        return False


def tree_pids(state_dir):
    marker = f'SKYPILOT_HOST_SERVER_MARKER={state_dir}'.encode()
    return [int(p) for p in os.listdir('/proc') if p.isdigit() and _marked(p, marker)]


def tree_cpu(state_dir):
    """CPU seconds used so far by the server whose state is in state_dir."""
    total = 0
    pids = tree_pids(state_dir)
    if not pids:
        raise RuntimeError(f'no process of the SkyPilot API server of {state_dir} found '
                           '(SKYPILOT_HOST_SERVER_MARKER)')
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat', encoding='ascii') as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile: its time is in its parent's reaped children
        # The command name (field 2) may hold spaces: split after its closing paren.
        fields = stat[stat.rindex(')') + 2:].split()
        # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17.
        total += sum(int(x) for x in fields[11:15])
    return total / TICKS


def idle_rate(state_dir, seconds):
    """The server's CPU seconds per second while nobody asks it anything."""
    c0, t0 = tree_cpu(state_dir), time.monotonic()
    time.sleep(seconds)
    return (tree_cpu(state_dir) - c0) / (time.monotonic() - t0)


def cpu_of(state_dir, action, idle):
    """(CPU seconds the server spent on action(), idle subtracted; wall seconds)."""
    c0, t0 = tree_cpu(state_dir), time.monotonic()
    action()
    wall = time.monotonic() - t0
    return max(0.0, tree_cpu(state_dir) - c0 - idle * wall), wall
