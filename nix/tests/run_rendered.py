#!/usr/bin/env python3
"""Runs what the NixOS module renders, against SkyPilot itself (run by scripts/module-run.sh).

The module's units are taken from an evaluation of a case of nix/tests/cases.nix (with its
directories moved under a temporary directory), not rewritten by hand: tmpfiles rules,
networking.hosts, LoadCredential, Environment and PATH, ExecStartPre, ExecStart and
ExecStopPost are carried out as systemd and NixOS would, with the store paths replaced by
what is on this machine:

  the SkyPilot package, its serverPython       views of the SkyPilot venv that hide the
                                               cloud SDKs the module did not ask for
  skypilot-host                                the locally built binary
  the rendered host config / SkyPilot config   rendered here from the evaluated settings
                                               (the host config in TOML, config.yaml with
                                               `skypilot-host sky-config render`, mounted
                                               read-only like the store)
  any other package (openssh, rsync, ...)      a directory holding only the programs of
                                               the matching Debian package
  /run/secrets/...                             test credentials under the temporary dir

Everything runs in a network namespace and a mount namespace of its own (unshare, as root),
so the module's own ports are free and nothing is reachable but loopback.

Not emulated: User=/Group= (the roles run as root here, in the namespace), and systemd's
sandboxing (ProtectSystem, SystemCallFilter, ...), which `systemd-analyze verify` and the
VM test cover.

Checks (each prints PASS/FAIL; the closing line counts them):
  - every role starts, as rendered, and gets ready (API server healthy; Type=notify roles
    send READY=1; a role that sends READY=1 is Type=notify; a WatchdogSec role pings);
  - every listening socket of every role's whole process tree is on 127.0.0.1 or ::1 only
    (`ss -ltunp`), and the API server listens on its port;
  - `sky check <cloud>` through the server reaches a verdict on the credential;
  - `rsync -a` of the credential files under the server's HOME delivers the credential;
  - a user's `sky launch` of a workdir in their home uploads it to the server;
  - the dashboard config editor cannot save into the store's config.yaml;
  - stopping a role leaves none of its processes behind, and no credential copy;
  - a Type=oneshot role (the autostop pass its timer runs) runs to completion, exit 0:
    the autostop pass finds a cluster made in the server's state with autostop off,
    calls SkyPilot's /autostop and records the outcome in the audit table; the backup
    takes one complete backup (SkyPilot's state.db or a pg_dump of its database, and the
    host database; 0700 and 0600), which `restore --dry-run` with the rendered config
    verifies, and a restore while the API server runs is refused.
  - case `run-database` (database.uriFile, against the throwaway PostgreSQL that
    scripts/module-run.sh starts, URI in SKYPILOT_RENDERED_DB_URI): the start script
    exports the credential's URI to the server, SkyPilot's tables are in PostgreSQL, and
    the URI's password is in no file or log of the run (the workdir upload and config
    editor checks are the `run-roles` case's).

Usage: run_rendered.py --nixpkgs-lib DIR --host-bin PATH --venv DIR [--case NAME]
Needs: root, unshare, ip, ss; SKYPILOT_CONFIG_SCHEMA (SkyPilot's config schema).
KEEP_RENDERED_RUN=1 keeps the temporary directory (logs of every role) for a look.
"""
import argparse
import base64
import glob
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check  # noqa: E402  (the evaluation suite: nix_eval, to_toml)

MARKER = 'SKYPILOT_RENDERED_RUN_MARKER'
STORE_RE = re.compile(r'/nix/store/[0-9a-z]{32}-([^/\s:"]+)')

# Nix package name -> the Debian package holding the same programs.
DEBIAN = {
    'openssh': 'openssh-client',
    'rsync': 'rsync',
    'coreutils': 'coreutils',
    'findutils': 'findutils',
    'gnugrep': 'grep',
    'gnused': 'sed',
    'systemd': 'systemd',
    'bash': 'bash',
    'curl': 'curl',
}
# Programs at paths NixOS does not have, hidden in the run's mount namespace (SkyPilot runs
# /bin/bash; on NixOS there is none): real path -> a copy the bash package's farm uses.
NIXOS_ABSENT = ['/bin/bash']
HIDDEN_COPIES = {}

# What NixOS puts on every unit's PATH after the unit's own `path`.
NIXOS_UNIT_PATH = ['coreutils', 'findutils', 'gnugrep', 'gnused', 'systemd']

# The cloud SDKs of the venv by nixpkgs attribute name: their top-level modules, and the
# programs they bring.
SDK_MODULES = {
    'boto3': ['boto3'],
    'botocore': ['botocore'],
    'awscli': ['awscli'],
    'kubernetes': ['kubernetes'],
}
SDK_PROGRAMS = {'awscli': ['aws']}
HIDDEN_ENV = 'SKYPILOT_RENDERED_RUN_HIDDEN_MODULES'
# sitecustomize.py of a Python view: modules of SDKs the rendered Python does not have
# cannot be imported, in this process and in every child (the variable is inherited).
HIDE_MODULES = f"""import os
import sys


class _Hidden:
    names = set(filter(None, os.environ.get({HIDDEN_ENV!r}, '').split(',')))

    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
        return None


sys.meta_path.insert(0, _Hidden())
"""

# What `sky check CLOUD` says once it has found the credential and tried it: enabled, or
# (here, with no route to the cloud) the failed call with that credential.
VERDICT = {
    'aws': r'AWS: enabled|Failed to get AWS user\.\s+Reason: \[botocore\.exceptions\.'
           r'EndpointConnectionError\]',
}
# Where SkyPilot reads a credential under HOME, and uploads it from to clusters.
HOME_CREDENTIALS = {
    'aws': '.aws/credentials',
    'lambda': '.lambda_cloud/lambda_keys',
    'runpod': '.runpod/config.toml',
}

# AWS's documented example keys.
AWS_CREDENTIALS = ('[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n'
                   'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n')
SECRETS = {'aws-credentials': AWS_CREDENTIALS, 'oidc-client-secret': 'rendered-client-secret\n'}
# The OpenID Provider of tests/oidc (Node), started for a case with web_ui.oidc.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The web UI's user: its users-file line is made with the binary's hash-password.
WEB_USER, WEB_PASSWORD = 'admin', 'rendered-run-password'


class Checks(check.Checks):
    def check(self, cond, what):
        super().check(cond, what)
        if cond:
            print(f'  PASS: {what}')


def log(msg):
    print(f'-- {msg}', flush=True)


# ------------------------------------------------------------------------- substitution
class Substitutes:
    """Maps the store paths and secret paths of the evaluation to paths on this machine."""

    def __init__(self, tmp, venv, host_bin, r):
        self.tmp = tmp
        self.venv = venv
        self.host_bin = host_bin
        self.r = r
        self.by_name = {}
        self.secrets = os.path.join(tmp, 'secrets')

    def package_dir(self, name):
        if name in self.by_name:
            return self.by_name[name]
        if name.startswith('skypilot-host-'):
            d = os.path.join(self.tmp, 'pkgs', name, 'bin')
            os.makedirs(d)
            os.symlink(os.path.abspath(self.host_bin), os.path.join(d, 'skypilot-host'))
            path = os.path.dirname(d)
        elif re.fullmatch(r'skypilot-[0-9.]+', name):
            path = self.python_view(name, [])
        elif name.startswith('skypilot-server-python-'):
            path = self.python_view(name, name.split('+')[1:])
        elif re.fullmatch(r'unit-script-(.+)-start', name):
            # NixOS's job script of a unit's `script`: `#!bash -e` and the text.
            unit = name[len('unit-script-'):-len('-start')]
            d = os.path.join(self.tmp, 'pkgs', name, 'bin')
            os.makedirs(d)
            with open(os.path.join(d, f'{unit}-start'), 'w', encoding='utf-8') as f:
                f.write(f'#!{self.package_dir("bash")}/bin/bash -e\n'
                        + self.text(self.r['services'][unit]['script']))
            os.chmod(os.path.join(d, f'{unit}-start'), 0o755)
            path = os.path.dirname(d)
        elif re.fullmatch(r'postgresql-[0-9.]+', name):
            # PostgreSQL's programs (pg_dump, pg_restore) of Debian's newest installed
            # major version, as the package's bin/ holds them.
            found = sorted(glob.glob('/usr/lib/postgresql/*/bin/pg_dump'),
                           key=lambda x: int(x.split('/')[4]))
            if not found:
                raise SystemExit('run_rendered.py: no /usr/lib/postgresql/*/bin/pg_dump '
                                 '(Debian: apt-get install postgresql-client)')
            path = os.path.join(self.tmp, 'pkgs', name)
            os.makedirs(path)
            os.symlink(os.path.dirname(found[-1]), os.path.join(path, 'bin'))
        elif name == 'skypilot-host.toml':
            path = os.path.join(self.tmp, 'skypilot-host.toml')
            settings = self.apply(self.r['skypilot']['settings'])
            with open(path, 'w', encoding='utf-8') as f:
                f.write(check.to_toml(settings))
        elif name == 'skypilot-config':
            path = os.path.join(self.tmp, 'skypilot-config')
            os.makedirs(path)
            src = os.path.join(self.tmp, 'skypilot-config.json')
            with open(src, 'w', encoding='utf-8') as f:
                json.dump(self.r['skypilot']['configInput'], f)
            defaults = os.path.join(self.tmp, 'skypilot-launch-defaults.json')
            with open(defaults, 'w', encoding='utf-8') as f:
                json.dump(self.r['skypilot']['launchDefaults'], f)
            subprocess.run([self.host_bin, 'sky-config', 'render', '--launch-defaults', defaults,
                            src, os.path.join(path, 'config.yaml')], check=True)
            # Read-only, as everything in the Nix store is.
            mount_bind(path, path, read_only=True)
        else:
            deb = DEBIAN.get(name)
            if deb is None:
                raise SystemExit(f'run_rendered.py: no substitute for the store path of {name!r}'
                                 ' (add it to DEBIAN or to Substitutes.package_dir)')
            path = self.debian_farm(name, deb)
        self.by_name[name] = path
        return path

    def python_view(self, name, packages):
        """The venv as a Python that has SkyPilot and only the cloud SDKs in `packages`
        (nixpkgs attribute names): the others are hidden from import, and only their
        programs that are asked for are on bin/."""
        root = os.path.join(self.tmp, 'pkgs', name)
        bindir = os.path.join(root, 'bin')
        hide_dir = os.path.join(root, 'hide')
        os.makedirs(bindir)
        os.makedirs(hide_dir)
        hidden = sorted({m for pkg, mods in SDK_MODULES.items() if pkg not in packages
                         for m in mods})
        with open(os.path.join(hide_dir, 'sitecustomize.py'), 'w', encoding='utf-8') as f:
            f.write(HIDE_MODULES)
        programs = ['python3', 'python', 'sky'] + [p for pkg in packages
                                                   for p in SDK_PROGRAMS.get(pkg, [])]
        for prog in programs:
            target = os.path.join(self.venv, 'bin', prog)
            if not os.path.exists(target):
                raise SystemExit(f'run_rendered.py: {target} missing for {name}')
            wrapper = os.path.join(bindir, prog)
            with open(wrapper, 'w', encoding='utf-8') as f:
                f.write('#!/bin/sh\n'
                        f'export PYTHONPATH={shlex.quote(hide_dir)}${{PYTHONPATH:+:$PYTHONPATH}}\n'
                        f'export {HIDDEN_ENV}={",".join(hidden)}\n'
                        f'exec {shlex.quote(target)} "$@"\n')
            os.chmod(wrapper, 0o755)
        return root

    def hidden_copy(self, path):
        """A program of this machine that hide_nixos_absent() hid: its copy."""
        return HIDDEN_COPIES.get(os.path.realpath(path), os.path.realpath(path))

    def debian_farm(self, name, deb):
        p = subprocess.run(['dpkg-query', '-L', deb], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f'run_rendered.py: Debian package {deb} (for {name}) is not '
                             f'installed: {p.stderr.strip()}')
        root = os.path.join(self.tmp, 'pkgs', name)
        for f in p.stdout.split():
            for sub in ('bin', 'sbin'):
                if os.path.dirname(f) in (f'/usr/{sub}', f'/{sub}') and os.path.isfile(f):
                    d = os.path.join(root, sub)
                    os.makedirs(d, exist_ok=True)
                    link = os.path.join(d, os.path.basename(f))
                    if not os.path.lexists(link):
                        os.symlink(self.hidden_copy(f), link)
        os.makedirs(os.path.join(root, 'bin'), exist_ok=True)
        return root

    def text(self, s):
        s = STORE_RE.sub(lambda m: self.package_dir(m.group(1)), s)
        return s.replace('/run/secrets/', self.secrets + '/')

    def apply(self, v):
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            return [self.apply(x) for x in v]
        if isinstance(v, dict):
            return {k: self.apply(x) for k, x in v.items()}
        return v


def expand_specifiers(s, creds):
    """The systemd specifiers the module uses: %d (credentials directory) and %%."""
    def repl(m):
        if m.group(1) == 'd':
            return creds
        if m.group(1) == '%':
            return '%'
        raise SystemExit(f'run_rendered.py: specifier %{m.group(1)} in {s!r} is not emulated')
    return re.sub(r'%(.)', repl, s)


# ------------------------------------------------------------------------- processes
def ps_of(pids):
    """What `ps` says of `pids` (state, wait channel, command), for a report."""
    p = subprocess.run(['ps', '-o', 'pid,stat,wchan:20,etime,args', '-p',
                        ','.join(str(x) for x in pids)], capture_output=True, text=True)
    return p.stdout


def processes_with_marker(marker):
    out = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/environ', 'rb') as f:
                env = f.read().split(b'\0')
        except OSError:
            continue
        if f'{MARKER}={marker}'.encode() in env:
            out.append(int(d))
    return out


def listening_sockets():
    """(local address, [pids], line) of every listening TCP and bound UDP socket."""
    p = subprocess.run(['ss', '-ltunpH'], capture_output=True, text=True, check=True)
    out = []
    for line in p.stdout.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        pids = [int(x) for x in re.findall(r'pid=(\d+)', line)]
        out.append((fields[4], pids, line))
    return out


def is_loopback(addr):
    host = addr.rsplit(':', 1)[0]
    host = host.split('%', 1)[0]
    return host == '[::1]' or host.startswith('127.')


class Role:
    def __init__(self, unit, u, subs, tmp):
        self.unit = unit
        self.u = u
        self.subs = subs
        self.tmp = tmp
        self.s = u['serviceConfig']
        self.marker = os.path.join(tmp, 'marker', unit)
        self.creds = os.path.join(tmp, 'credentials', f'{unit}.service')
        self.log_path = os.path.join(tmp, f'{unit}.log')
        self.proc = None
        self.notify_path = os.path.join(tmp, f'{unit}.notify')
        self.notify = None
        self.messages = []

    def load_credentials(self):
        specs = self.s.get('LoadCredential', [])
        if isinstance(specs, str):
            specs = [specs]
        if not specs:
            return
        os.makedirs(self.creds)
        for spec in specs:
            cid, src = spec.split(':', 1)
            dst = os.path.join(self.creds, cid)
            shutil.copyfile(self.subs.text(src), dst)
            os.chmod(dst, 0o400)
        os.chmod(self.creds, 0o500)

    def environment(self):
        env = {'LANG': 'C.UTF-8', MARKER: self.marker,
               'USER': self.s.get('User', 'root'), 'LOGNAME': self.s.get('User', 'root')}
        path = self.subs.text(self.u['environment'].get('PATH', ''))
        defaults = ':'.join(f'{self.subs.package_dir(n)}/bin' for n in NIXOS_UNIT_PATH)
        env['PATH'] = f'{path}:{defaults}' if path else defaults
        for k, v in self.u['environment'].items():
            if k != 'PATH' and v is not None:
                env[k] = expand_specifiers(self.subs.text(v), self.creds)
        if os.path.isdir(self.creds):
            env['CREDENTIALS_DIRECTORY'] = self.creds
        ef = self.s.get('EnvironmentFile')
        if ef:
            with open(self.subs.text(ef), encoding='utf-8') as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith('#') and '=' in line:
                        k, v = line.split('=', 1)
                        env[k.strip()] = v.strip()
        return env

    def command(self, line):
        flags = ''
        while line and line[0] in '+-@!:':
            flags += line[0]
            line = line[1:]
        if set(flags) - set('+-'):
            raise SystemExit(f'run_rendered.py: prefix {flags!r} of {line!r} is not emulated')
        argv = [expand_specifiers(a, self.creds) for a in shlex.split(self.subs.text(line))]
        return argv, '-' in flags

    def start_pre(self, c):
        pre = self.s.get('ExecStartPre', [])
        for line in pre if isinstance(pre, list) else [pre]:
            argv, may_fail = self.command(line)
            p = subprocess.run(argv, env=self.environment(), capture_output=True, text=True)
            c.check(p.returncode == 0 or may_fail,
                    f'{self.unit}: ExecStartPre {" ".join(argv)} exits 0: rc={p.returncode} '
                    f'{p.stderr.strip()[-500:]}')
            if p.returncode != 0 and not may_fail:
                return False
        return True

    def runtime_directory(self):
        """RuntimeDirectory=NAME: /run/NAME, empty, owned by the unit, removed at stop. In the
        run's mount namespace a directory of the run is bound there, so nothing of it
        reaches the machine's /run but an empty mount point (removed at the end)."""
        name = self.s.get('RuntimeDirectory')
        if not name:
            return
        mode = int(str(self.s.get('RuntimeDirectoryMode', '0755')), 8)
        own = os.path.join(self.tmp, 'run', name)
        os.makedirs(own)
        os.chmod(own, mode)
        target = f'/run/{name}'
        if not os.path.isdir(target):
            os.makedirs(target)
            CREATED_DIRS.append(target)
        mount_bind(own, target)

    def read_only_paths(self):
        """ReadOnlyPaths= as systemd applies it to ExecStart (set up when that process
        starts, so a file ExecStartPre wrote is covered; `-` skips a missing path)."""
        paths = self.s.get('ReadOnlyPaths', [])
        for spec in paths if isinstance(paths, list) else [paths]:
            optional = spec.startswith('-')
            path = self.subs.text(spec.lstrip('-'))
            if not os.path.exists(path):
                if optional:
                    continue
                raise SystemExit(f'run_rendered.py: ReadOnlyPaths {path} does not exist')
            mount_bind(path, path, read_only=True)

    def start(self):
        self.read_only_paths()
        argv, _ = self.command(self.s['ExecStart'])
        env = self.environment()
        log(f'{self.unit}: {" ".join(argv)}')
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.notify.setblocking(False)
        env['NOTIFY_SOCKET'] = self.notify_path
        if 'WatchdogSec' in self.s:
            # As systemd: WATCHDOG_USEC, and WATCHDOG_PID naming the main process (a
            # program ignores a watchdog meant for another pid). The shell execs the
            # command, so the pid it names is the command's.
            env['WATCHDOG_USEC'] = str(int(self.s['WatchdogSec']) * 1_000_000)
            argv = ['/bin/sh', '-c', 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"',
                    'sh'] + list(argv)
        limit = self.s.get('LimitNOFILE')

        procs = API_CGROUP.get(self.unit)

        def apply_limits():
            # LimitNOFILE=N sets both the soft and the hard limit, as systemd does.
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
            # As systemd does, the unit's processes live in its cgroup from the start.
            if procs is not None:
                with open(procs, 'w', encoding='utf-8') as f:
                    f.write(str(os.getpid()))
        with open(self.log_path, 'w', encoding='utf-8') as out:
            self.proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         cwd='/', preexec_fn=apply_limits)

    def open_files_limit(self):
        """The soft limit of open files of the running process, from /proc."""
        with open(f'/proc/{self.proc.pid}/limits', encoding='utf-8') as f:
            for line in f:
                if line.startswith('Max open files'):
                    return int(line.split()[3])
        return None

    def read_notify(self):
        while True:
            try:
                data = self.notify.recv(4096)
            except BlockingIOError:
                return
            self.messages += data.decode(errors='replace').split('\n')

    def wait_notify(self, message, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_notify()
            if message in self.messages:
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.2)
        return False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=30):
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except OSError:
            return ''

    def tree(self):
        return set(processes_with_marker(self.marker))

    def stop(self, c=None):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        timeout = min(int(self.s.get('TimeoutStopSec', 30)), 30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.tree():
            time.sleep(0.3)
        left = self.tree()
        if c is not None:
            # KillMode=control-group kills what is left after the timeout; record that the
            # role's own stop left nothing when it did, and kill the rest either way.
            c.check(self.s.get('KillMode') == 'control-group' or not left,
                    f'{self.unit}: nothing left {timeout} s after SIGTERM (or KillMode='
                    f'control-group): {sorted(left)}'
                    + ('' if self.s.get('KillMode') == 'control-group' or not left
                       else '\n' + self.tail() + ps_of(left)))
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        post = self.s.get('ExecStopPost', [])
        for line in post if isinstance(post, list) else [post]:
            argv, may_fail = self.command(line)
            p = subprocess.run(argv, env=self.environment(), capture_output=True, text=True)
            if c is not None:
                c.check(p.returncode == 0 or may_fail,
                        f'{self.unit}: ExecStopPost {" ".join(argv)}: rc={p.returncode} '
                        f'{p.stderr.strip()[-300:]}')
        self.proc = None


def wait_http(url, timeout, role):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        if role is not None and not role.alive():
            return False
        time.sleep(0.5)
    return False


# ------------------------------------------------------------------------- the run
def apply_tmpfiles(rules, subs):
    for rule in rules:
        f = rule.split()
        kind, path = f[0], subs.text(f[1])
        if kind == 'd':
            os.makedirs(path, exist_ok=True)
            os.chmod(path, int(f[2], 8))
        elif kind == 'L+':
            target = subs.text(f[6])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                os.remove(path)
            os.symlink(target, path)
        else:
            raise SystemExit(f'run_rendered.py: tmpfiles rule {rule!r} is not emulated')


# Bind mounts made by the run (in its own mount namespace), undone before its files go.
MOUNTS = []
# Mount points the run had to create on this machine (empty directories), removed at the end.
CREATED_DIRS = []

# unit -> the cgroup.procs file of the cgroup the unit runs in (see unit_cgroup).
API_CGROUP = {}


def unit_cgroup(rendered, unit, tmp):
    """The cgroup systemd gives `unit`, at the path the module renders (e.g.
    /sys/fs/cgroup/system.slice/skypilot-api-server.service): a cgroup v2 directory made
    under this machine's cgroup2 mount and bound there. Returns False without cgroup v2."""
    mounts = [line.split()[1] for line in open('/proc/self/mounts', encoding='utf-8')
              if line.split()[2] == 'cgroup2']
    if not mounts:
        return False
    real = os.path.join(mounts[0], 'skypilot-rendered-' + os.path.basename(tmp))
    os.mkdir(real)
    CREATED_DIRS.append(real)
    missing = []
    d = rendered
    while not os.path.exists(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        os.mkdir(d)
        CREATED_DIRS.append(d)
    mount_bind(real, rendered)
    API_CGROUP[unit] = os.path.join(rendered, 'cgroup.procs')
    return True


def check_api_server_cpu(c, r, subs):
    """The cluster manager reads the API server's CPU where the module says (its unit's
    cgroup), and counts its /status reads by it."""
    cm = r['skypilot']['settings']['cluster_manager']
    cgroup = cm.get('api_server_cgroup')
    if cgroup is None:
        return
    with open(os.path.join(cgroup, 'cpu.stat'), encoding='utf-8') as f:
        usage = int(next(x for x in f if x.startswith('usage_usec')).split()[1])
    c.check(usage > 0, f'the API server ran in {cgroup}: usage_usec {usage}')
    db = subs.text(cm['database'])
    row = None
    deadline = time.time() + 60
    while time.time() < deadline:
        with sqlite3.connect(f'file:{db}?mode=ro', uri=True) as conn:
            row = conn.execute('SELECT cpu_source, cpu_secs FROM poll_load').fetchone()
        if row is not None:
            break
        time.sleep(1)
    c.check(row is not None and row[0] == 'cgroup' and row[1] >= 0,
            f'the cluster manager counts /status by the API server\'s cgroup {cgroup}: {row}')


def mount_bind(src, dst, read_only=False):
    subprocess.run(['mount', '--bind', src, dst], check=True)
    MOUNTS.append(dst)
    if read_only:
        subprocess.run(['mount', '-o', 'remount,bind,ro', dst], check=True)


def unmount_all():
    while MOUNTS:
        subprocess.run(['umount', MOUNTS.pop()], check=False)
    while CREATED_DIRS:
        try:
            os.rmdir(CREATED_DIRS.pop())
        except OSError:
            pass


def hide_nixos_absent(tmp):
    """Makes this mount namespace lack what NixOS lacks: each path of NIXOS_ABSENT is covered
    by an empty file that cannot be run; a copy of the program stays for its package."""
    for path in NIXOS_ABSENT:
        real = os.path.realpath(path)
        d = os.path.join(tmp, 'hidden', os.path.basename(real))
        os.makedirs(d)
        copy = os.path.join(d, os.path.basename(real))
        shutil.copy2(real, copy)
        HIDDEN_COPIES[real] = copy
        empty = os.path.join(d, 'absent')
        with open(empty, 'w', encoding='utf-8'):
            pass
        os.chmod(empty, 0)
        mount_bind(empty, real)


def apply_bind_paths(role):
    """BindReadOnlyPaths=SRC:DST of a role (in the shared mount namespace of the run)."""
    binds = role.s.get('BindReadOnlyPaths', [])
    for spec in binds if isinstance(binds, list) else [binds]:
        src, dst = role.subs.text(spec).split(':', 1)
        mount_bind(os.path.realpath(src), dst, read_only=True)


def apply_hosts(hosts, tmp):
    """networking.hosts: /etc/hosts of this mount namespace gets the module's entries."""
    with open('/etc/hosts', encoding='utf-8') as f:
        text = f.read()
    text += ''.join(f'{addr} {" ".join(names)}\n' for addr, names in sorted(hosts.items()))
    path = os.path.join(tmp, 'hosts')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    mount_bind(path, '/etc/hosts')


def order(services):
    """Units in start order: each after the units it names in `after`."""
    done, out = set(), []
    pending = sorted(services)
    while pending:
        for name in pending:
            deps = {a[:-len('.service')] for a in services[name]['after']} & set(services)
            if deps <= done:
                out.append(name)
                done.add(name)
                pending.remove(name)
                break
        else:
            raise SystemExit(f'run_rendered.py: cycle in {pending}')
    return out


def run(a):
    c = Checks()
    tmp = tempfile.mkdtemp(prefix='skypilot-rendered-')
    os.chmod(tmp, 0o755)
    roles = []
    provider = None
    try:
        root = os.path.join(tmp, 'root')
        r = check.nix_eval(a.nixpkgs_lib, case=a.case, runDir=root)
        c.equal(r['failedAssertions'], [], f'{a.case}: evaluates without failed assertion')
        subs = Substitutes(tmp, os.path.abspath(a.venv), os.path.abspath(a.host_bin), r)
        os.makedirs(subs.secrets, mode=0o700)
        secrets = dict(SECRETS)
        if a.case == 'run-database':
            # The URI of the throwaway PostgreSQL that scripts/module-run.sh started.
            secrets[DB_URI_SECRET] = os.environ['SKYPILOT_RENDERED_DB_URI']
        made = subprocess.run([a.host_bin, 'hash-password', WEB_USER, '--role', 'admin'],
                              input=WEB_PASSWORD + '\n', capture_output=True, text=True)
        c.check(made.returncode == 0, f'hash-password makes a users-file line: {made.stderr}')
        secrets['web-users'] = made.stdout
        for name, content in secrets.items():
            path = os.path.join(subs.secrets, name)
            with open(path, 'w', encoding='utf-8') as f:
                f.write(content)
            os.chmod(path, 0o600)
        provider = start_provider(r, tmp)
        apply_tmpfiles(r['tmpfiles'], subs)
        if 'skypilot-policy' in r['services']:
            write_catalog(r, subs)
        apply_hosts(r['hosts'], tmp)
        hide_nixos_absent(tmp)
        cgroup = r['skypilot']['settings'].get('cluster_manager', {}).get('api_server_cgroup')
        if cgroup is not None:
            c.check(unit_cgroup(cgroup, 'skypilot-api-server', tmp),
                    f'cgroup v2 here, for the API server unit\'s cgroup {cgroup}')
        units = {k: v for k, v in r['services'].items() if k.startswith('skypilot-')}
        c.check('skypilot-api-server' in units, f'{a.case}: renders the API server')
        api_url = r['skypilot']['settings']['skypilot']['api_url']
        for unit in order(units):
            role = Role(unit, units[unit], subs, tmp)
            if role.s.get('Type') == 'oneshot':
                os.makedirs(os.path.dirname(role.marker), exist_ok=True)
                check_oneshot(c, role, r, subs, roles, a.venv)
                continue
            roles.append(role)
            os.makedirs(os.path.dirname(role.marker), exist_ok=True)
            role.load_credentials()
            role.runtime_directory()
            apply_bind_paths(role)
            if not role.start_pre(c):
                break
            role.start()
            s = role.s
            if unit == 'skypilot-api-server':
                ok = wait_http(f'{api_url}/api/health', 180, role)
                c.check(ok, f'{unit}: healthy at {api_url}/api/health as rendered'
                            + ('' if ok else '\n' + role.tail()))
            notify = s.get('Type') == 'notify'
            ready = role.wait_notify('READY=1', 60 if notify else 10)
            c.check(ready == notify,
                    f'{unit}: Type={s.get("Type")} and {"sends" if ready else "never sends"} '
                    'READY=1 (Type=notify exactly when the program sends it)'
                    + ('' if ready == notify else '\n' + role.tail()))
            c.check(role.alive(), f'{unit}: running after start'
                    + ('' if role.alive() else '\n' + role.tail()))
            if 'LimitNOFILE' in s:
                got = role.open_files_limit() if role.alive() else None
                c.check(got == int(s['LimitNOFILE']),
                        f'{unit}: LimitNOFILE={s["LimitNOFILE"]} holds for the running '
                        f'process: {got}')
            if 'WatchdogSec' in s:
                c.check(role.wait_notify('WATCHDOG=1', int(s['WatchdogSec'])),
                        f'{unit}: WatchdogSec={s["WatchdogSec"]} and it pings the watchdog')
        if roles and all(x.alive() for x in roles):
            check_listeners(c, roles, api_url)
            if 'skypilot-cluster-manager' in units:
                check_api_server_cpu(c, r, subs)
            check_clouds(c, r, subs, tmp)
            check_credential_files(c, r, subs, tmp)
            if a.case == 'run-database':
                check_database(c, r, tmp, next(x for x in roles
                                               if x.unit == 'skypilot-api-server'))
            else:
                # With its state in a database SkyPilot keeps the editor's config there
                # (docs/scaling.md); the upload does not depend on the database.
                check_workdir_upload(c, r, subs, tmp)
                check_config_editor(c, r, api_url)
            if 'skypilot-policy' in units:
                check_policy(c, r, subs, api_url)
            check_bin_bash(c, next(x for x in roles if x.unit == 'skypilot-api-server'))
            if 'skypilot-web-ui' in units:
                check_web_ui(c, r, subs, api_url)
                if 'oidc' in r['skypilot']['settings']['web_ui']:
                    check_sso(c, r)
        for role in reversed(roles):
            role.stop(c)
        home = subs.text(units['skypilot-api-server']['environment']['HOME'])
        for cloud, rel in sorted(HOME_CREDENTIALS.items()):
            if cloud in r['skypilot']['settings'].get('credentials', {}):
                c.check(not os.path.lexists(os.path.join(home, rel)),
                        f'~/{rel} removed when the API server stops')
    finally:
        for role in reversed(roles):
            role.stop()
        if provider is not None:
            provider.kill()
            provider.wait()
        unmount_all()
        if os.environ.get('KEEP_RENDERED_RUN'):
            print(f'kept {tmp}')
        else:
            shutil.rmtree(tmp)
    print(f'rendered run: {c.passed} passed, {len(c.failures)} failed')
    return 1 if c.failures else 0


def start_provider(r, tmp):
    """The test OpenID Provider at the rendered `web_ui.oidc.issuer`, knowing the client
    as the module renders it (id, the secret of SECRETS, callback under `public_url`)."""
    w = r['skypilot']['settings']['web_ui']
    if 'oidc' not in w:
        return None
    issuer = w['oidc']['issuer']
    port = issuer.rsplit(':', 1)[1]
    base = w['public_url'].rstrip('/')
    log_file = open(os.path.join(tmp, 'provider.log'), 'w', encoding='utf-8')
    p = subprocess.Popen(['node', 'provider.mjs', port, w['oidc']['client_id'],
                          SECRETS['oidc-client-secret'].strip(),
                          f'{base}/console/oidc/callback', f'{base}/console/login'],
                         cwd=os.path.join(REPO, 'tests', 'oidc'), stdout=log_file,
                         stderr=subprocess.STDOUT)
    if not wait_http(f'{issuer}/.well-known/openid-configuration', 30, None):
        raise RuntimeError(f'the test OpenID Provider did not start at {issuer}')
    return p


def check_sso(c, r):
    """The rendered web UI reads its client secret from the credentials directory and
    sends people to the provider: discovery against the real provider, PKCE, the
    callback under the URL the module gives."""
    import urllib.error
    import urllib.parse
    import urllib.request
    w = r['skypilot']['settings']['web_ui']
    base = f"http://{w['listen']}"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with opener.open(f'{base}/console/login', timeout=10) as resp:
        page = resp.read().decode()
    c.check('Sign in with' in page, 'skypilot-web-ui: the login page offers single sign-on')
    try:
        opener.open(f'{base}/console/oidc/start', timeout=30)
        status, location = 200, ''
    except urllib.error.HTTPError as e:
        status, location = e.code, e.headers.get('Location', '')
    q = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    issuer = w['oidc']['issuer']
    c.check(status == 303 and location.startswith(f'{issuer}/auth?')
            and q.get('client_id') == [w['oidc']['client_id']]
            and q.get('code_challenge_method') == ['S256']
            and q.get('redirect_uri') == [f"{w['public_url'].rstrip('/')}/console/oidc/callback"],
            f'skypilot-web-ui: single sign-on starts at the provider {issuer}: {status} {location}')


def check_oneshot(c, role, r, subs, roles, venv):
    """A Type=oneshot unit, as its timer starts it: ExecStart runs to completion with exit 0.
    For the autostop pass: a cluster with autostop off, made in the API server's state
    through SkyPilot's own Python (tests/real/skyctl.py), once the cluster manager has
    recorded it, gets SkyPilot's /autostop, and the outcome lands in the audit table."""
    import sqlite3
    autostop = role.unit == 'skypilot-autostop'
    api = next((x for x in roles if x.unit == 'skypilot-api-server'), None)
    db = subs.text(r['skypilot']['settings']['cluster_manager']['database'])
    name = f'rendered-autostop-{os.getpid()}'
    if autostop:
        api_url = r['skypilot']['settings']['skypilot']['api_url']
        # On a busy machine the server may still be starting: give it more time here.
        up = api is not None and wait_http(f'{api_url}/api/health', 300, api)
        c.check(up, f'{role.unit}: the API server runs and is healthy')
        if not up:
            return
        p = subprocess.run([os.path.join(venv, 'bin', 'python'),
                            os.path.join(check.REPO, 'tests', 'real', 'skyctl.py'), 'create',
                            name], env=api.environment(), capture_output=True, text=True)
        c.check(p.returncode == 0, f'{role.unit}: cluster {name} made through SkyPilot\'s API: '
                                   f'{p.stderr.strip()[-300:]}')
        poll = int(r['skypilot']['settings']['cluster_manager']['poll_interval_secs'])
        # The manager may poll less often than poll_interval_secs to keep within its load
        # budget (a slow /status on a busy machine): wait three of the intervals it says it
        # chose (poll_load), at most 15 minutes.
        started = time.monotonic()
        interval = poll
        seen = False
        while time.monotonic() < started + min(3 * interval + 60, 900) and not seen:
            try:
                with sqlite3.connect(f'file:{db}?mode=ro', uri=True) as conn:
                    seen = conn.execute('SELECT COUNT(*) FROM clusters WHERE name = ? AND '
                                        'autostop_minutes = -1', (name,)).fetchone()[0] == 1
                    row = conn.execute('SELECT interval_secs FROM poll_load '
                                       'WHERE id = 1').fetchone()
                    if row:
                        interval = max(poll, row[0])
            except sqlite3.Error:
                pass
            time.sleep(1)
        c.check(seen, f'{role.unit}: the cluster manager recorded {name}')
    if not os.path.isdir(role.creds):
        role.load_credentials()
    argv, _ = role.command(role.s['ExecStart'])
    log(f'{role.unit} (oneshot): {" ".join(argv)}')
    timeout = min(int(role.s.get('TimeoutStartSec', 600)), 600)
    p = subprocess.run(argv, env=role.environment(), capture_output=True, text=True,
                       timeout=timeout, cwd='/')
    print('\n'.join(f'    {role.unit}: {ln}' for ln in (p.stdout + p.stderr).splitlines()[-8:]))
    c.check(p.returncode == 0, f'{role.unit}: ExecStart runs to completion with exit 0: '
                               f'rc={p.returncode}')
    if role.unit == 'skypilot-backup' and p.returncode == 0:
        check_backup(c, role, r, subs, argv)
    if not autostop:
        return
    c.check('autostop pass: ' in p.stdout, f'{role.unit}: it did a pass: {p.stdout.strip()}')
    with sqlite3.connect(f'file:{db}?mode=ro', uri=True) as conn:
        rows = conn.execute("SELECT action, outcome, detail FROM audit WHERE actor = 'autostop' "
                            'AND cluster = ?', (name,)).fetchall()
    print(f'    audit: {rows}')
    # No cloud is reachable here, so SkyPilot refuses the call: with the AWS SDK and the
    # test credential it cannot get the AWS identity.
    c.check(len(rows) == 1 and rows[0][0] == 'autostop' and rows[0][1] == 'error'
            and rows[0][2].startswith('CloudUserIdentityError: '),
            f'{role.unit}: /autostop reached SkyPilot, whose refusal is in the audit table')


def check_backup(c, role, r, subs, argv):
    """The backup the rendered unit took: one complete backup in the rendered directory
    (0700, files 0600) with SkyPilot's state (its state.db, or a pg_dump of its database)
    and the host database; `restore --dry-run` with the same config and credential checks
    every part; a real restore while the API server runs is refused."""
    d = subs.text(r['skypilot']['settings']['backup']['directory'])
    taken = sorted(glob.glob(os.path.join(d, 'skypilot-backup-*')))
    c.check(len(taken) == 1 and os.path.isfile(os.path.join(taken[0], 'manifest.json')),
            f'{role.unit}: one complete backup in {d}: {taken}')
    if len(taken) != 1:
        return
    with open(os.path.join(taken[0], 'manifest.json'), encoding='utf-8') as f:
        m = json.load(f)
    parts = {(p['kind'], p['root'], p['path']) for p in m['parts']}
    print(f'    backup parts: {sorted(parts)}')
    state = (('pg_dump', 'postgresql', '') if 'database_uri_file' in ' '.join(argv)
             or '--database-uri-file' in argv else ('sqlite', 'sky_runtime_dir', '.sky/state.db'))
    c.check(state in parts, f'{role.unit}: SkyPilot\'s state is in the backup: {state}')
    c.check(('sqlite', 'host_database', '') in parts, f'{role.unit}: the host database too')
    c.equal(m['skypilot_version'], '0.14.1', f'{role.unit}: SkyPilot\'s version recorded')
    modes = {os.path.basename(x): oct(os.stat(x).st_mode & 0o777)
             for x in [d, taken[0]] + glob.glob(os.path.join(taken[0], '*'))}
    c.check(oct(os.stat(d).st_mode & 0o777) == '0o700'
            and all(v == '0o600' for k, v in modes.items()
                    if k not in (os.path.basename(d), os.path.basename(taken[0]))),
            f'{role.unit}: the backup directory is 0700 and its files 0600: {modes}')
    rest = argv[2:]  # --config FILE [--database-uri-file FILE]
    p = subprocess.run([argv[0], 'restore', '--dry-run', taken[0]] + rest,
                       env=role.environment(), capture_output=True, text=True, timeout=120)
    c.check(p.returncode == 0 and 'every checksum verified' in p.stdout
            and 'dry run: nothing was changed' in p.stdout,
            f'{role.unit}: restore --dry-run checks it with the rendered config: '
            f'{(p.stdout + p.stderr).strip()[-400:]}')
    p = subprocess.run([argv[0], 'restore', taken[0]] + rest, env=role.environment(),
                       capture_output=True, text=True, timeout=120)
    c.check(p.returncode != 0 and "SkyPilot's API server answers at" in p.stderr,
            f'{role.unit}: a restore while the API server runs is refused: '
            f'{p.stderr.strip()[-300:]}')


def check_web_ui(c, r, subs, api_url):
    """The web UI listens where the module says, refuses a stranger and lets the user in:
    the users file's (loaded as a credential) or, without one, the admin the web UI made
    at its first start, whose password is in a 0600 file beside the host database. SkyPilot
    gets `rbac.default_role: viewer` either way (the rendered config.yaml, or with its
    state in PostgreSQL, written by the web UI into SkyPilot's config in the database)."""
    import urllib.error
    import urllib.request
    settings = r['skypilot']['settings']
    listen = settings['web_ui']['listen']
    url = f'http://{listen}/api/v1/health'

    def status(headers):
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError as e:
            return str(e)

    user, password = WEB_USER, WEB_PASSWORD
    exec_start = r['services']['skypilot-web-ui']['serviceConfig']['ExecStart']
    if 'users_file' not in settings['web_ui'] and '--users-file' not in exec_start:
        db = subs.text(settings['cluster_manager']['database'])
        secret = os.path.join(os.path.dirname(db), 'web-ui-initial-admin')
        c.check(os.path.isfile(secret), f'skypilot-web-ui: without a users file it made {secret}')
        if os.path.isfile(secret):
            c.equal(oct(os.stat(secret).st_mode & 0o777), '0o600',
                    f'skypilot-web-ui: {secret} is readable by its owner only')
            with open(secret, encoding='utf-8') as f:
                user, password = 'admin', f.read().strip()
    c.equal(status({}), 401, f'skypilot-web-ui: {url} refuses a request without credentials')
    basic = base64.b64encode(f'{user}:{password}'.encode()).decode()
    c.equal(status({'Authorization': f'Basic {basic}'}), 200,
            f'skypilot-web-ui: {url} lets {user} in')
    wrong = base64.b64encode(f'{user}:wrong'.encode()).decode()
    c.equal(status({'Authorization': f'Basic {wrong}'}), 401,
            f'skypilot-web-ui: {url} refuses a wrong password')
    c.equal(status({'Authorization': 'Bearer  sky_x'}), 401,
            f'skypilot-web-ui: {url} refuses a malformed bearer token')
    # SkyPilot's default role for an identity nobody synced.
    role, deadline = None, time.monotonic() + 90
    while time.monotonic() < deadline:
        req = urllib.request.Request(f'{api_url}/users/role',
                                     headers={'X-Auth-Request-Email': 'rendered-stranger'})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                role = json.load(resp).get('role')
        except (urllib.error.HTTPError, OSError, ValueError) as e:
            role = str(e)
        if role == 'viewer':
            break
        time.sleep(1)
    c.equal(role, 'viewer', "SkyPilot gives an identity the web UI did not sync the role viewer")


def check_listeners(c, roles, api_url):
    port = api_url.rsplit(':', 1)[1]
    sockets = listening_sockets()
    for role in roles:
        tree = role.tree()
        c.check(bool(tree), f'{role.unit}: its processes carry the run marker')
        mine = [(addr, line) for addr, pids, line in sockets if set(pids) & tree]
        for addr, line in mine:
            print(f'    {role.unit}: {line}')
        wild = [line for addr, line in mine if not is_loopback(addr)]
        c.equal(wild, [], f'{role.unit}: every listening socket of its process tree is on '
                          '127.0.0.1 or ::1')
        if role.unit == 'skypilot-api-server':
            c.check(any(addr.endswith(f':{port}') for addr, _ in mine),
                    f'{role.unit}: listens on port {port}')


def client_env(r, subs, home):
    """A user's login environment as the module renders it: environment.variables and the
    system packages on PATH."""
    os.makedirs(home, exist_ok=True)
    env = {'LANG': 'C.UTF-8', 'HOME': home, 'USER': 'alice', 'LOGNAME': 'alice'}
    for k, v in r['variables'].items():
        env[k] = subs.text(v if isinstance(v, str) else ':'.join(v))
    endpoint = env.get('SKYPILOT_API_SERVER_ENDPOINT')
    if endpoint and 'skypilot-web-ui' in r['services']:
        # Users' sky goes through the web UI's gateway, which wants a login: as
        # docs/gateway.md says, each person exports the endpoint with their credentials.
        scheme, rest = endpoint.split('://', 1)
        env['SKYPILOT_API_SERVER_ENDPOINT'] = f'{scheme}://{WEB_USER}:{WEB_PASSWORD}@{rest}'
    dirs = [subs.package_dir(n) for n in r['systemPackages']]
    env['PATH'] = ':'.join(f'{d}/bin' for d in dirs) + ':/usr/bin:/bin'
    return env


def check_clouds(c, r, subs, tmp):
    """`sky check` of every cloud with a credential, through the API server as a user's `sky`
    runs it: the server has the cloud's SDK and so reaches a credentials verdict (in this
    network namespace the cloud is unreachable, so the verdict is not "enabled")."""
    env = client_env(r, subs, os.path.join(tmp, 'home', 'alice'))
    clouds = sorted(r['skypilot']['settings'].get('credentials', {}))
    for cloud in clouds:
        if cloud not in VERDICT:
            continue
        p = subprocess.run(['sky', 'check', cloud], env=env, capture_output=True, text=True,
                           timeout=300, cwd=env['HOME'])
        out = re.sub(r'\x1b\[[0-9;]*m', '', p.stdout + p.stderr)
        print('\n'.join(f'    sky check {cloud}: {ln}' for ln in out.splitlines()[:12]))
        c.check('dependencies are not installed' not in out and 'pip install' not in out,
                f'sky check {cloud}: the API server has {cloud}\'s SDK (no "dependencies are '
                f'not installed")')
        c.check(re.search(VERDICT[cloud], out) is not None,
                f'sky check {cloud}: a verdict on the credential itself ({VERDICT[cloud]!r})')


def check_credential_files(c, r, subs, tmp):
    """SkyPilot uploads ~/.aws/credentials (and the lambda and runpod keys) to clusters with
    `rsync -a`, which copies a symlink as a symlink: what arrives must be the credential."""
    home = subs.text(r['services']['skypilot-api-server']['environment']['HOME'])
    creds = r['skypilot']['settings'].get('credentials', {})
    for cloud, rel in sorted(HOME_CREDENTIALS.items()):
        if cloud not in creds:
            continue
        src = os.path.join(home, rel)
        want = SECRETS[os.path.basename(creds[cloud])]
        dest = os.path.join(tmp, 'cluster', cloud)
        os.makedirs(dest)
        p = subprocess.run(['rsync', '-a', src, dest + '/'], capture_output=True, text=True)
        got = os.path.join(dest, os.path.basename(rel))
        c.check(p.returncode == 0, f'rsync -a ~/{rel}: {p.stderr.strip()}')
        kind = 'symlink' if os.path.islink(got) else 'file' if os.path.isfile(got) else 'none'
        c.equal(kind, 'file', f'rsync -a ~/{rel} (as SkyPilot uploads it) delivers a file')
        if kind == 'file':
            with open(got, encoding='utf-8') as f:
                c.check(f.read() == want, f'~/{rel} delivered holds the credential')
            c.equal(oct(os.stat(got).st_mode & 0o777), '0o600', f'~/{rel} delivered mode')


def check_workdir_upload(c, r, subs, tmp):
    """A user's `sky launch` with a workdir in their home: the service cannot read homes
    (ProtectHome), so the client must upload the workdir to the server, which SkyPilot's
    client does only for a server it does not take for a local one. The launch itself then
    fails for want of an enabled cloud, which is fine."""
    home = os.path.join(tmp, 'home', 'bob')
    env = client_env(r, subs, home)
    env['USER'] = env['LOGNAME'] = 'bob'
    work = os.path.join(home, 'project')
    os.makedirs(work)
    marker = f'workdir-marker-{os.getpid()}-{time.monotonic_ns()}'
    with open(os.path.join(work, 'marker.txt'), 'w', encoding='utf-8') as f:
        f.write(marker)
    with open(os.path.join(work, 'task.yaml'), 'w', encoding='utf-8') as f:
        f.write('workdir: .\nrun: cat marker.txt\n')
    p = subprocess.run(['sky', 'launch', '-y', '-c', 'upload-check', 'task.yaml'], env=env,
                       cwd=work, capture_output=True, text=True, timeout=300)
    out = re.sub(r'\x1b\[[0-9;]*m', '', p.stdout + p.stderr)
    print('\n'.join(f'    sky launch: {ln}' for ln in out.strip().splitlines()[-6:]))
    api = r['services']['skypilot-api-server']['environment']
    found = []
    for top in {subs.text(api['HOME']), subs.text(api['SKY_RUNTIME_DIR'])}:
        for dirpath, _, files in os.walk(top):
            for name in files:
                path = os.path.join(dirpath, name)
                if name == 'marker.txt' or name.endswith(('.zip', '.tar', '.gz')):
                    try:
                        with open(path, 'rb') as f:
                            if marker.encode() in f.read():
                                found.append(path)
                    except OSError:
                        pass
    c.check(bool(found), f'sky launch from {work}: the workdir reached the API server\'s '
                         f'state (uploaded): {found}')


DB_URI_SECRET = 'skypilot-db-uri'


def check_database(c, r, tmp, role):
    """database.uriFile: the start script exported the credential's URI to the server, the
    server keeps its state in that PostgreSQL, and the URI (its password) is in no file of
    the run but the secret and its credential copy, nor in any role's log."""
    uri = os.environ['SKYPILOT_RENDERED_DB_URI']
    with open(f'/proc/{role.proc.pid}/environ', 'rb') as f:
        env = dict(x.split(b'=', 1) for x in f.read().split(b'\0') if b'=' in x)
    c.equal(env.get(b'SKYPILOT_DB_CONNECTION_URI', b'').decode(), uri,
            'skypilot-api-server: SKYPILOT_DB_CONNECTION_URI exported from the credential')
    c.check('SKYPILOT_DB_CONNECTION_URI' not in role.u['environment'],
            'the URI is not in the unit\'s Environment')
    m = re.match(r'postgresql\+psycopg2://([^:@]+)(?::[^@]*)?@/([^?]+)\?host=(.+)$', uri)
    psql = sorted(glob.glob('/usr/lib/postgresql/*/bin/psql'))
    c.check(m is not None and bool(psql), f'psql and a socket URI to check with: {uri[:20]}…')
    if m and psql:
        p = subprocess.run([psql[-1], '-X', '-At', '-h', m.group(3), '-U', m.group(1), '-d',
                            m.group(2), '-c', 'SELECT count(*) FROM alembic_version_state_db'],
                           capture_output=True, text=True)
        c.check(p.returncode == 0 and p.stdout.strip() == '1',
                f'SkyPilot created its state tables in PostgreSQL: {p.stdout.strip()} '
                f'{p.stderr.strip()[-200:]}')
    secret = uri.split('@', 1)[0].rsplit(':', 1)[-1]
    leaks = []
    for dirpath, _, files in os.walk(tmp):
        rel = os.path.relpath(dirpath, tmp)
        if rel.split(os.sep)[0] in ('secrets', 'credentials'):
            continue
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                with open(path, 'rb') as f:
                    if secret.encode() in f.read():
                        leaks.append(path)
            except OSError:
                pass
    c.equal(leaks, [], 'the database password is in no rendered file, state or log of the run')


def check_bin_bash(c, role):
    """SkyPilot runs commands with /bin/bash (sky.utils.subprocess_utils.run, its command
    runners), which NixOS lacks: run that code path with the API server's Python and
    environment."""
    code = ('from sky.utils import subprocess_utils; '
            'p = subprocess_utils.run("echo bash-$((40 + 2))", capture_output=True); '
            'print(p.stdout.decode().strip())')
    # The unit's Python: ExecStart's program, or the python3 beside it (bin/sky).
    python = role.command(role.s['ExecStart'])[0][0]
    # A start script (database.uriFile) execs the server's Python: that one.
    m = re.search(r'^exec (\S+)', role.u.get('script', ''), re.M)
    if m and os.path.basename(m.group(1)).startswith('python'):
        python = role.subs.text(m.group(1))
    elif not os.path.basename(python).startswith('python'):
        python = os.path.join(os.path.dirname(python), 'python3')
    p = subprocess.run([python, '-c', code], env=role.environment(), capture_output=True,
                       text=True, cwd='/')
    c.check(p.returncode == 0 and p.stdout.strip() == 'bash-42',
            f'{role.unit}: SkyPilot\'s subprocess_utils.run runs /bin/bash in the unit: '
            f'rc={p.returncode} {p.stdout.strip()} {p.stderr.strip()[-200:]}')


# SkyPilot's AWS catalog as it downloads it (offline here): prices the policy checks.
AWS_CATALOG = ('InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,GpuInfo,Price,'
               'SpotPrice,Region,AvailabilityZone\n'
               'm5.large,,,2.0,8.0,,0.096,0.035,us-west-2,us-west-2b\n'
               'p3.2xlarge,V100,1.0,8.0,61.0,,3.06,0.918,us-west-2,us-west-2b\n')


def write_catalog(r, subs):
    """Our rows in the server's AWS catalog, keeping any row already there (tests/real/
    skyctl.py writes its own when it makes a cluster, and SkyPilot must still find those)."""
    runtime = subs.text(r['services']['skypilot-api-server']['environment']['SKY_RUNTIME_DIR'])
    path = os.path.join(runtime, '.sky/catalogs/v8/aws/vms.csv')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    header, *ours = AWS_CATALOG.splitlines(keepends=True)
    rows = []
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            rows = f.readlines()[1:]
    rows += [x for x in ours if x not in rows]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(header + ''.join(rows))


def post_json(url, body, timeout=30):
    req = urllib.request.Request(url, data=body.encode(), method='POST',
                                 headers={'Content-Type': 'application/json',
                                          'X-SkyPilot-API-Version': '62'})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_policy(c, r, subs, api_url):
    """The launch policy as rendered: the API server's runtime config names it with its
    token; it answers SkyPilot's wire format there and refuses without the token; and the
    API server's own /validate goes through it (the defaults taken, the price limit held)."""
    env = r['services']['skypilot-api-server']['environment']
    runtime_config = env['SKYPILOT_GLOBAL_CONFIG']
    settings = subs.apply(r['skypilot']['settings']['policy'])
    with open(runtime_config, encoding='utf-8') as f:
        text = f.read()
    m = re.search(r'"admin_policy": "(http://[^"?]+)\?token=([^"]+)"', text)
    c.check(m is not None,
            f'the API server\'s config names the policy with its token: {text[:300]}')
    if m is None:
        return
    base, token = m.group(1), m.group(2)
    c.equal(base, f'http://{settings["listen"]}/v1/policy',
            'admin_policy is the policy\'s loopback URL')
    with open(settings['token_file'], encoding='utf-8') as f:
        c.equal(f.read().strip(), token, 'the token in the config is the policy\'s')
    c.equal(oct(os.stat(settings['token_file']).st_mode & 0o777), '0o600', 'token file mode')
    c.equal(oct(os.stat(runtime_config).st_mode & 0o777), '0o400', 'runtime config mode')
    task = 'name: rendered\nrun: echo hi\n'
    inner = json.dumps({'task': task, 'skypilot_config': 'active_workspace: default\n',
                        'request_name': 'launch', 'request_options': None,
                        'at_client_side': False, 'user': ''})
    code, body = post_json(f'{base}?token={token}', json.dumps(inner))
    c.equal(code, 200, f'the policy answers SkyPilot\'s request: {body[:300]}')
    if code == 200:
        answer = json.loads(json.loads(body))
        c.check('"instance_type": "m5.large"' in answer['task'],
                f'the default instance type applied: {answer["task"]}')
        c.check('"infra": "aws/us-west-2"' in answer['task'],
                f'the default region applied (aws, whose catalog has it): {answer["task"]}')
        c.check('"use_spot": false' in answer['task'], f'use_spot default: {answer["task"]}')
        c.equal(answer['skypilot_config'], 'active_workspace: default\n', 'config echoed')
    code, body = post_json(base, json.dumps(inner))
    c.check(code == 403 and 'token is missing' in body, f'no token: 403 ({code} {body[:200]})')
    # Through SkyPilot: its /validate applies the server's admin policy. SkyPilot reads the
    # catalog again per request; a cluster made since the start may have rewritten it.
    write_catalog(r, subs)
    code, body = post_json(f'{api_url}/validate',
                           json.dumps({'dag': task, 'request_options': None}), timeout=120)
    c.equal(code, 200, f'/validate of a bare task through the policy: {body[:300]}')
    over = 'resources:\n  infra: aws\n  instance_type: p3.2xlarge\nrun: echo hi\n'
    code, body = post_json(f'{api_url}/validate',
                           json.dumps({'dag': over, 'request_options': None}), timeout=120)
    c.check(code == 400 and 'UserRequestRejectedByPolicy' in body and 'p3.2xlarge' in body
            and '$3.06/hour' in body and '$1.00/hour' in body,
            f'/validate of an instance over the price limit: refused with the policy\'s '
            f'message ({code} {body[:400]})')


def check_config_editor(c, r, api_url):
    """SKYPILOT_GLOBAL_CONFIG is the rendered file in the (read-only) store: what SkyPilot's
    dashboard config editor sends (POST /workspaces/config) cannot be saved, and the
    server's config stays the module's."""
    body = json.dumps({'config': {'allowed_clouds': ['aws']}}).encode()
    req = urllib.request.Request(f'{api_url}/workspaces/config', data=body, method='POST',
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=30) as resp:
        request_id = resp.headers.get('X-Skypilot-Request-ID') or json.load(resp)['request_id']
    status, error = None, ''
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f'{api_url}/api/get?request_id={request_id}',
                                        timeout=60) as resp:
                data = json.load(resp)
        except urllib.error.HTTPError as e:
            data = json.loads(e.read() or b'{}')
        # A failed request comes back as an HTTP error whose `detail` is the request record.
        record = data.get('detail', data)
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except ValueError:
                record = {'error': record}
        status = record.get('status')
        error = record.get('error') or ''
        if isinstance(error, dict) and isinstance(error.get('object'), str):
            # SkyPilot sends the exception pickled; its message is plain text inside.
            raw = base64.b64decode(error['object'])
            error = raw.decode('utf-8', errors='replace')
        error = error if isinstance(error, str) else json.dumps(error)
        if status in ('SUCCEEDED', 'FAILED', 'CANCELLED'):
            break
        time.sleep(1)
    m = re.search(r'\[Errno \d+\] [^\x00-\x1f]*config\.yaml', error)
    print(f'    POST /workspaces/config: status={status}: {m.group(0) if m else error[:300]}')
    c.check(status == 'FAILED' and 'Read-only file system' in error,
            'the dashboard config editor cannot save into the store\'s config.yaml '
            f'(status={status})')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nixpkgs-lib', required=True)
    ap.add_argument('--host-bin', required=True)
    ap.add_argument('--venv', required=True)
    ap.add_argument('--case', default='run-roles')
    ap.add_argument('--in-namespace', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.in_namespace:
        # A network namespace (only loopback, the module's ports free) and a mount
        # namespace (for what the run mounts) of its own.
        cmd = ['unshare', '--net', '--mount', '--propagation', 'private', '--',
               sys.executable, os.path.abspath(__file__), *sys.argv[1:], '--in-namespace']
        return subprocess.run(cmd).returncode
    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
    return run(a)


if __name__ == '__main__':
    sys.exit(main())
