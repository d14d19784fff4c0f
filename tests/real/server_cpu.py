"""CPU time of a SkyPilot API server's whole process tree, from /proc.

scripts/lib.sh's start_sky_server marks every process of a server with
SKYPILOT_HOST_SERVER_MARKER=<its state dir> in the environment (inherited by every
descendant, even one that left the process group).

SkyPilot's request executors rename themselves (setproctitle, "SkyPilot:executor:…"),
which overwrites the memory /proc/PID/environ shows, so their marker is gone: a process is
also the server's when its parent is (the executors are the server's children). A
process that was reparented to init before it was first seen, with its marker
overwritten, would be missed.

SkyPilot's workers come and go, and the time of an exited process reaches its parent's
counters (cutime, cstime) only when and if the parent reaps it, so summing the live
processes' counters can go down as well as jump. A Meter therefore samples every marked
process's own user and system time (fields 14 and 15 of /proc/PID/stat) every
SAMPLE_SECS in a thread, remembers each process's (pid and start time) last value, and
counts processes that exited at that value: the tree's CPU never goes down, and at most
SAMPLE_SECS of a process's last moments are missed.

Used by tests/real/load_test.py and tests/real/bench_status_cpu.py.
"""
import os
import threading
import time

TICKS = os.sysconf('SC_CLK_TCK')
SAMPLE_SECS = 0.2


def _read_stat(pid):
    """(start time, user+system ticks, parent pid) of a process, or None once it is gone."""
    try:
        with open(f'/proc/{pid}/stat', encoding='ascii', errors='replace') as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing paren.
    fields = stat[stat.rindex(')') + 2:].split()
    # fields[0] is field 3 (state): ppid is field 4, utime and stime are fields 14, 15,
    # starttime is 22.
    return int(fields[19]), int(fields[11]) + int(fields[12]), int(fields[1])


class Meter:
    """Samples the CPU of every process marked with one server's state dir."""

    def __init__(self, state_dir):
        self.marker = f'SKYPILOT_HOST_SERVER_MARKER={state_dir}'.encode()
        self.state_dir = state_dir
        self.ticks = {}  # (pid, start) -> last user+system ticks, marked processes
        self.unmarked = set()  # (pid, start) of processes that are not the server's
        self.lock = threading.Lock()
        self.sample()
        if not self.ticks:
            raise RuntimeError(f'no process of the SkyPilot API server of {state_dir} '
                               'found (SKYPILOT_HOST_SERVER_MARKER)')
        threading.Thread(target=self._run, daemon=True).start()

    def _marked(self, pid):
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                return self.marker in f.read().split(b'\0')
        except OSError:
            return False

    def sample(self):
        with self.lock:
            procs = {}  # pid -> (key, ticks, ppid), every live process
            for name in os.listdir('/proc'):
                if not name.isdigit():
                    continue
                st = _read_stat(name)
                if st is not None:
                    pid = int(name)
                    procs[pid] = ((pid, st[0]), st[1], st[2])
            ours = {pid for pid, (key, _, _) in procs.items() if key in self.ticks}
            new = [pid for pid, (key, _, _) in procs.items()
                   if key not in self.ticks and key not in self.unmarked]
            # Marked ones first, then children of the server's processes until no more
            # are found (a child may be listed before its parent).
            for pid in new:
                if self._marked(pid):
                    ours.add(pid)
            grown = True
            while grown:
                grown = False
                for pid in new:
                    if pid not in ours and procs[pid][2] in ours:
                        ours.add(pid)
                        grown = True
            for pid, (key, ticks, _) in procs.items():
                if pid in ours:
                    self.ticks[key] = max(self.ticks.get(key, 0), ticks)
                elif key not in self.ticks:
                    self.unmarked.add(key)

    def _run(self):
        while True:
            time.sleep(SAMPLE_SECS)
            self.sample()

    def cpu(self):
        """CPU seconds the tree used so far (as of a fresh sample)."""
        self.sample()
        with self.lock:
            return sum(self.ticks.values()) / TICKS

    def cpu_by_pid(self):
        """{pid: CPU seconds so far} of the tree's processes (as of a fresh sample); a pid
        reused by a later process counts the later one."""
        self.sample()
        with self.lock:
            latest = {}
            for (pid, start), ticks in self.ticks.items():
                if pid not in latest or start > latest[pid][0]:
                    latest[pid] = (start, ticks)
            return {pid: ticks / TICKS for pid, (_, ticks) in latest.items()}


_METERS = {}


def _meter(state_dir):
    """The Meter of the server whose state is in state_dir (made at the first call)."""
    if state_dir not in _METERS:
        _METERS[state_dir] = Meter(state_dir)
    return _METERS[state_dir]


def tree_cpu(state_dir):
    """CPU seconds used so far by the server whose state is in state_dir (counted from
    the first call for that server)."""
    return _meter(state_dir).cpu()


def main_pid(state_dir):
    """The pid of the server's main process (python -m sky.server.server)."""
    for pid in tree_cpu_by_pid(state_dir):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if b'sky.server.server' in f.read():
                    return pid
        except OSError:
            continue
    raise RuntimeError(f'no sky.server.server process among the server of {state_dir}')


def tree_cpu_by_pid(state_dir):
    """{pid: CPU seconds} of the server's processes (see Meter.cpu_by_pid)."""
    return _meter(state_dir).cpu_by_pid()


def idle_rates_by_pid(state_dir, seconds):
    """{pid: CPU seconds per second} of each of the server's processes while nobody asks
    it anything."""
    c0, t0 = tree_cpu_by_pid(state_dir), time.monotonic()
    time.sleep(seconds)
    c1, elapsed = tree_cpu_by_pid(state_dir), time.monotonic() - t0
    return {pid: (c1[pid] - c0.get(pid, 0.0)) / elapsed for pid in c1}


def request_cpu_of(state_dir, action, idle_by_pid):
    """CPU seconds of the two processes that worked on a request: the executor that ran
    it and the server's main process (the HTTP side: the request's record, the long
    poll, the answer), each over the time of the request and of the work it left behind
    (see cpu_of), each with its own idle rate subtracted. action() returns the pid of the
    executor (SkyPilot reports it with the request). Leaves out the server's other
    processes, whose background work (daemons, their cloud CLIs) makes the whole tree's
    figure noisy for a request of a fraction of a second."""
    main = main_pid(state_dir)
    c0, t0 = tree_cpu_by_pid(state_dir), time.monotonic()
    executor = action()
    settle(state_dir, sum(idle_by_pid.values()))
    c1, elapsed = tree_cpu_by_pid(state_dir), time.monotonic() - t0
    for pid in {main, executor}:
        if pid not in c1:
            raise RuntimeError(f'process {pid} (the request\'s) is not among the server\'s')
    return sum(used_less_idle(c0, c1, pid, idle_by_pid, elapsed) for pid in {main, executor})


def used_less_idle(before, after, pid, idle_by_pid, elapsed):
    """CPU seconds process pid used between two tree_cpu_by_pid readings elapsed seconds
    apart, less its idle rate over that time (never below zero)."""
    used = after.get(pid, 0.0) - before.get(pid, 0.0)
    return max(0.0, used - idle_by_pid.get(pid, 0.0) * elapsed)


# A request's work does not end with its answer: SkyPilot's executor then frees the
# request's memory (a full garbage collection, common_utils.release_memory). cpu_of counts
# that too, by waiting after the answer until the tree is quiet: a window of QUIET_SECS in
# which it used at most its idle rate plus QUIET_MARGIN of a core, for at most SETTLE_SECS.
QUIET_SECS = 0.6
QUIET_MARGIN = 0.05
SETTLE_SECS = 6.0


def settle(state_dir, idle):
    """Waits until the server's tree is back at its idle rate (see QUIET_SECS)."""
    deadline = time.monotonic() + SETTLE_SECS
    c0, t0 = tree_cpu(state_dir), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(QUIET_SECS)
        c1, t1 = tree_cpu(state_dir), time.monotonic()
        if c1 - c0 <= (idle + QUIET_MARGIN) * (t1 - t0):
            return
        c0, t0 = c1, t1


def cpu_of(state_dir, action, idle):
    """(CPU seconds the server spent on action() and on the work it left behind once it
    answered, idle subtracted over the whole time; wall seconds of action())."""
    c0, t0 = tree_cpu(state_dir), time.monotonic()
    action()
    wall = time.monotonic() - t0
    settle(state_dir, idle)
    return max(0.0, tree_cpu(state_dir) - c0 - idle * (time.monotonic() - t0)), wall
