#!/usr/bin/env python3
"""Evaluation tests of the NixOS module `services.skypilot` (run by scripts/nix-checks.sh).

For every configuration of nix/tests/cases.nix and every node of the VM test
(tests/skypilot-module.nix), the module is evaluated with nixpkgs' lib (nix/tests/eval.nix)
and this script asserts what it produced: units, ports, users, directories, sudo rules,
warnings and assertion failures. Each generated unit is written to a file and checked with
`systemd-analyze verify` (in a stub root where the referenced executables exist) and scored
with `systemd-analyze security --offline=true`; the rendered host config is checked with the
real `skypilot-host check-config`. The VM test's testScript is byte-compiled and may only
call methods that NixOS test machines have.

Usage: check.py --nixpkgs-lib DIR --host-bin PATH [--scores FILE]
Exit status 0 when every check passed; every failure is printed.
"""
import argparse
import ast
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EVAL = os.path.join(HERE, 'eval.nix')

HOST_UNITS = ('skypilot-cluster-manager', 'skypilot-monitor', 'skypilot-autostop',
              'skypilot-policy', 'skypilot-web-ui', 'skypilot-backup')
MAX_HOST_EXPOSURE = 2.0

# Methods of a NixOS test driver machine (nixos/lib/test-driver) and the driver's globals.
MACHINE_METHODS = {
    'start', 'shutdown', 'crash', 'reboot', 'succeed', 'fail', 'execute', 'wait_for_unit',
    'wait_until_succeeds', 'wait_until_fails', 'wait_for_open_port', 'wait_for_closed_port',
    'wait_for_open_unix_socket', 'wait_for_file', 'wait_for_console_text', 'systemctl',
    'require_unit_state', 'get_unit_info', 'get_unit_property', 'copy_from_host',
    'copy_from_host_via_shell', 'copy_from_vm', 'send_chars', 'send_key', 'send_console',
    'sleep', 'screenshot', 'get_screen_text', 'wait_for_text', 'wait_for_x',
    'wait_for_window', 'block', 'unblock', 'forward_port', 'dump_tty_contents',
    'shell_interact', 'console_interact', 'start_job', 'stop_job', 'switch_root',
}
DRIVER_GLOBALS = {'start_all', 'subtest', 'join_all', 'retry', 'serial_stdout_on',
                  'serial_stdout_off', 'polling_condition', 'create_machine'}

# The seed's Testing list: one subtest each, in this order.
SEED_SCENARIOS = [
    'basic installation and configuration',
    'service functionality',
    'web ui',
    'monitoring',
    'custom configurations',
    'security and permissions',
    'skypilot command functionality',
]


class Checks:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failures.append(what)
            print(f'  FAIL: {what}')

    def equal(self, got, want, what):
        self.check(got == want, f'{what}: expected {want!r}, got {got!r}')


def nix_eval(nixpkgs_lib, **args):
    cmd = ['nix-instantiate', '--eval', '--strict', '--json', EVAL,
           '--arg', 'nixpkgsLib', nixpkgs_lib]
    for k, v in args.items():
        if isinstance(v, bool):
            cmd += ['--arg', k, 'true' if v else 'false']
        else:
            cmd += ['--argstr', k, v]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f'evaluation failed ({" ".join(map(str, args.values()))}):\n'
                           f'{p.stderr.strip()}')
    return json.loads(p.stdout)


# ------------------------------------------------------------------------- unit files
def unit_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    return str(v)


def env_line(name, value):
    s = f'{name}={value}'.replace('\\', '\\\\').replace('"', '\\"')
    return f'Environment="{s}"'


def render_unit(name, u, kind='service'):
    """The unit file NixOS writes for a systemd.services/timers entry (the keys used here)."""
    lines = ['[Unit]']
    if u['description']:
        lines.append(f'Description={u["description"]}')
    for key, field in (('Wants', 'wants'), ('Requires', 'requires'), ('After', 'after'),
                       ('Before', 'before')):
        if u[field]:
            lines.append(f'{key}={" ".join(u[field])}')
    for k, v in sorted(u['unitConfig'].items()):
        lines += [f'{k}={unit_value(x)}' for x in (v if isinstance(v, list) else [v])]
    section = 'Service' if kind == 'service' else 'Timer'
    lines += ['', f'[{section}]']
    if kind == 'service':
        for k, v in sorted(u['environment'].items()):
            if v is not None:
                lines.append(env_line(k, v))
        body = u['serviceConfig']
    else:
        body = u['timerConfig']
    for k, v in sorted(body.items()):
        for x in v if isinstance(v, list) else [v]:
            lines.append(f'{k}={unit_value(x)}')
    if u['wantedBy'] or u['requiredBy']:
        lines += ['', '[Install]']
        if u['wantedBy']:
            lines.append(f'WantedBy={" ".join(u["wantedBy"])}')
        if u['requiredBy']:
            lines.append(f'RequiredBy={" ".join(u["requiredBy"])}')
    return '\n'.join(lines) + '\n'


EXEC_KEYS = ('ExecStart', 'ExecStartPre', 'ExecStartPost', 'ExecStop', 'ExecStopPost',
             'ExecReload', 'ExecCondition')


def executables(u):
    out = []
    for k in EXEC_KEYS:
        v = u['serviceConfig'].get(k)
        for cmd in (v if isinstance(v, list) else [v] if v else []):
            exe = cmd.split()[0].lstrip('+-@!:|')
            out.append(exe)
    return out


class StubRoot:
    """A root directory for systemd-analyze: the host's unit directory (for targets) plus
    stub executables at the store paths the units reference."""

    def __init__(self, base):
        self.root = os.path.join(base, 'root')
        self.unit_dir = os.path.join(self.root, 'etc/systemd/system')
        os.makedirs(self.unit_dir)
        for d in ('/usr/lib/systemd/system', '/lib/systemd/system'):
            if os.path.isdir(d):
                shutil.copytree(d, os.path.join(self.root, d.lstrip('/')), symlinks=True,
                                dirs_exist_ok=True)
                break

    def add_executable(self, path):
        target = os.path.join(self.root, path.lstrip('/'))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, 'w', encoding='utf-8') as f:
            f.write('#!/bin/sh\nexit 0\n')
        os.chmod(target, 0o755)

    def install(self, name, text):
        path = os.path.join(self.unit_dir, name)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
        return path


def verify_unit(c, stub, label, name, text, u):
    for exe in executables(u):
        stub.add_executable(exe)
    path = stub.install(name, text)
    p = subprocess.run(['systemd-analyze', 'verify', f'--root={stub.root}', name],
                       capture_output=True, text=True)
    complaints = [ln for ln in (p.stdout + p.stderr).splitlines()
                  if name in ln or path in ln]
    c.check(p.returncode == 0 and not complaints,
            f'{label}: systemd-analyze verify {name}: rc={p.returncode} {complaints}')
    if complaints:
        print(text)


def security_score(stub, name):
    p = subprocess.run(['systemd-analyze', 'security', '--offline=true', f'--root={stub.root}',
                        '--no-pager', name], capture_output=True, text=True)
    m = re.search(r'Overall exposure level for \S+: ([0-9.]+) (\w+)', p.stdout + p.stderr)
    if not m:
        raise RuntimeError(f'systemd-analyze security {name}: no score in output:\n'
                           f'{p.stdout}{p.stderr}')
    return float(m.group(1)), m.group(2)


# ------------------------------------------------------------------------- host config
def toml_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return '[' + ', '.join(toml_value(x) for x in v) + ']'
    raise ValueError(f'unsupported TOML value {v!r}')


def to_toml(settings):
    """The module's settings as the TOML file `pkgs.formats.toml` writes: scalars of a
    table first, then its sub-tables (`[web_ui.oidc]`)."""
    out = []

    def table(name, body):
        out.append(f'[{name}]')
        nested = []
        for k, v in sorted(body.items()):
            if isinstance(v, dict):
                nested.append((f'{name}.{k}', v))
            elif v is not None:
                out.append(f'{k} = {toml_value(v)}')
        out.append('')
        for sub, b in nested:
            table(sub, b)

    for section, body in sorted(settings.items()):
        if not isinstance(body, dict):
            out.insert(0, f'{section} = {toml_value(body)}')
            continue
        table(section, body)
    return '\n'.join(out) + '\n'


def render_sky_config(host_bin, config, tmp, label, launch_defaults=None):
    """What the module's build-time derivation runs: render (with the module's launch
    options), then check."""
    src = os.path.join(tmp, f'{label}.config.json')
    out_dir = os.path.join(tmp, f'{label}.skyconfig')
    os.makedirs(out_dir, exist_ok=True)
    with open(src, 'w', encoding='utf-8') as f:
        json.dump(config, f)
    defaults = os.path.join(tmp, f'{label}.launch-defaults.json')
    with open(defaults, 'w', encoding='utf-8') as f:
        json.dump(launch_defaults or {}, f)
    out = os.path.join(out_dir, 'config.yaml')
    p = subprocess.run([host_bin, 'sky-config', 'render', '--launch-defaults', defaults, src,
                        out], capture_output=True, text=True)
    if p.returncode != 0:
        return p.returncode, p.stderr, 0
    warnings = [ln for ln in p.stderr.splitlines() if ln.startswith('warning:')]
    q = subprocess.run([host_bin, 'sky-config', 'check', out], capture_output=True, text=True)
    return q.returncode, q.stdout + q.stderr, len(warnings)


def check_config(host_bin, settings, tmp, label):
    path = os.path.join(tmp, f'{label}.toml')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(to_toml(settings))
    p = subprocess.run([host_bin, 'check-config', path], capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr).strip()


# ------------------------------------------------------------------------- sudoers
def sudoers_lines(rules):
    """security.sudo.extraRules as sudoers lines (the form NixOS writes)."""
    lines = []
    for rule in rules:
        who = [f'%{g}' for g in rule['groups']] + rule['users']
        cmds = []
        for cmd in rule['commands']:
            if isinstance(cmd, str):
                cmds.append(cmd)
            else:
                opts = ''.join(f'{o}:' for o in cmd['options'])
                cmds.append(f'{opts} {cmd["command"]}' if opts else cmd['command'])
        for w in who:
            lines.append(f'{w} {rule["host"]}=({rule["runAs"]}) {", ".join(cmds)}')
    return lines


def visudo_check(c, rules, tmp, label):
    path = os.path.join(tmp, f'{label}.sudoers')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(sudoers_lines(rules)) + '\n')
    p = subprocess.run(['visudo', '-c', '-f', path], capture_output=True, text=True)
    c.check(p.returncode == 0, f'{label}: visudo -c accepts the sudo rules: {p.stdout}{p.stderr}')


# ------------------------------------------------------------------------- expectations
def has_warning(r, *parts):
    return any(all(p in w for p in parts) for w in r['warnings'])


def has_assertion(r, *parts):
    return any(all(p in a for p in parts) for a in r['failedAssertions'])


def api(r):
    return r['services']['skypilot-api-server']


def common_api_server(c, r, label, port=46580, user='skypilot', group='skypilot',
                      state='/var/lib/skypilot'):
    s = api(r)['serviceConfig']
    env = api(r)['environment']
    # Not `sky api start --deploy`, which binds 0.0.0.0 whatever --host says.
    c.equal(s['ExecStart'].split()[1:], ['-m', 'sky.server.server', '--deploy', '--host',
                                         '127.0.0.1', '--port', str(port)],
            f'{label}: API server command line')
    c.check(re.search(r'-skypilot-server-python-0\.14\.1[^/]*/bin/python3$',
                      s['ExecStart'].split()[0]) is not None,
            f'{label}: ExecStart runs SkyPilot\'s Python: {s["ExecStart"]}')
    c.equal((env.get('IS_SKYPILOT_SERVER'), env.get('SKYPILOT_API_SERVER_LOCAL_PORT')),
            ('true', str(port)), f'{label}: what `sky api start --foreground` sets')
    c.equal((s['User'], s['Group']), (user, group), f'{label}: API server user and group')
    c.equal(s['KillMode'], 'control-group', f'{label}: KillMode')
    c.check(0 < s['TimeoutStopSec'] <= 120, f'{label}: bounded TimeoutStopSec')
    c.equal(s['Restart'], 'on-failure', f'{label}: Restart')
    c.equal(env['HOME'], f'{state}/home', f'{label}: HOME')
    c.check('-openssh/bin' in env.get('PATH', '') and '-rsync/bin' in env.get('PATH', ''),
            f'{label}: ssh and rsync on the API server\'s PATH')
    c.equal(env['SKY_RUNTIME_DIR'], f'{state}/runtime', f'{label}: SKY_RUNTIME_DIR')
    if 'skypilot-policy' in r['services']:
        token = [x.split(':', 1)[1] for x in s.get('LoadCredential', [])
                 if x.startswith('policy-token:')]
        policy_api_server(c, r, label, token_file=token[0] if token else None)
    else:
        c.check(env['SKYPILOT_GLOBAL_CONFIG'].endswith('-skypilot-config/config.yaml'),
                f'{label}: SKYPILOT_GLOBAL_CONFIG is the rendered config')
    for k in ('ProtectSystem', 'NoNewPrivileges', 'PrivateTmp', 'PrivateDevices',
              'CapabilityBoundingSet', 'SystemCallFilter'):
        c.check(k in s, f'{label}: API server has {k}')
    c.equal(s['CapabilityBoundingSet'], '', f'{label}: empty CapabilityBoundingSet')
    c.equal(s['ProtectSystem'], 'strict', f'{label}: ProtectSystem')
    c.check(state in s['ReadWritePaths'], f'{label}: state dir writable')
    c.check(any(re.fullmatch(r'/nix/store/[0-9a-z]{32}-bash/bin/bash:/bin/bash', x)
                for x in s.get('BindReadOnlyPaths', [])),
            f'{label}: bash at /bin/bash, which SkyPilot runs: {s.get("BindReadOnlyPaths")}')
    c.equal(r['variables'].get('SKYPILOT_API_SERVER_ENDPOINT'), f'http://skypilot-api:{port}',
            f'{label}: users\' sky points at this host\'s server by name')
    c.equal(r['hosts'].get('127.0.0.1'), ['skypilot-api'], f'{label}: the name is loopback')
    c.equal(r['variables'].get('SKYPILOT_DISABLE_LOCAL_API_SERVER'), '1',
            f'{label}: users\' sky never starts a server of its own')
    c.check(str(port) not in map(str, r['firewall']['allowedTCPPorts']),
            f'{label}: API server port never opened')
    c.equal(r['skypilot']['settings']['skypilot']['api_url'], f'http://127.0.0.1:{port}',
            f'{label}: host config api_url')


def owner_rule(r, port=46580, user='skypilot', group='skypilot', allow_group=True):
    ex = r['firewall']['extraCommands']
    want = [f'--uid-owner {user} -j RETURN', '--uid-owner 0 -j RETURN',
            '-j REJECT --reject-with tcp-reset', f'-o lo -p tcp --dport {port} -j skypilot-api']
    ok = all(w in ex for w in want)
    group_rule = f'--gid-owner {group} --suppl-groups -j RETURN' in ex
    return ok and group_rule == allow_group


def expect_seed_basic(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.equal(r['warnings'], [], f'{label}: no warning')
    c.equal(sorted(r['services']), ['skypilot-api-server'], f'{label}: units')
    c.equal(r['timers'], {}, f'{label}: timers')
    common_api_server(c, r, label)
    env = api(r)['environment']
    c.equal(env.get('SKYPILOT_DISABLE_USAGE_COLLECTION'), '1', f'{label}: telemetry off')
    c.check('LoadCredential' not in api(r)['serviceConfig'], f'{label}: no credentials')
    c.equal(r['firewall']['allowedTCPPorts'], [], f'{label}: no port opened')
    c.check(owner_rule(r), f'{label}: owner match on the API server port')
    u = r['users'].get('skypilot', {})
    c.check(u.get('isSystemUser') is True and u.get('group') == 'skypilot',
            f'{label}: system user skypilot in group skypilot')
    c.check('skypilot' in r['groups'], f'{label}: group skypilot')
    c.equal(u.get('home'), '/var/lib/skypilot/home', f'{label}: home')
    for rule in ('d /var/lib/skypilot 0750 skypilot skypilot - -',
                 'd /var/lib/skypilot/home 0700 skypilot skypilot - -',
                 'd /var/lib/skypilot/runtime 0700 skypilot skypilot - -',
                 'd /var/lib/skypilot/config 0750 skypilot skypilot - -',
                 'd /var/log/skypilot 0750 skypilot skypilot - -',
                 'd /var/cache/skypilot 0700 skypilot skypilot - -'):
        c.check(rule in r['tmpfiles'], f'{label}: tmpfiles {rule!r}')
    c.check(any(t.startswith('L+ /var/lib/skypilot/config/config.yaml - - - - /nix/store/')
                and t.endswith('-skypilot-config/config.yaml') for t in r['tmpfiles']),
            f'{label}: config.yaml linked in configDir')
    c.check(r['etc'].get('skypilot-host/config.toml', '').endswith('-skypilot-host.toml'),
            f'{label}: /etc/skypilot-host/config.toml is the checked host config')
    c.check(any(p.startswith('skypilot-0.14') for p in r['systemPackages'])
            and any(p.startswith('skypilot-host') for p in r['systemPackages']),
            f'{label}: sky and skypilot-host installed: {r["systemPackages"]}')
    c.equal(r['sudoRules'], [], f'{label}: no sudo rule by default')
    s = r['skypilot']['settings']
    c.equal(s['monitor']['listen'], '127.0.0.1:9188', f'{label}: monitor listen (not 9090)')
    c.equal(s['log']['level'], 'INFO', f'{label}: log level')
    c.equal(s['cluster_manager']['database'], '/var/lib/skypilot/host.db', f'{label}: database')
    c.equal(s['cluster_manager'].get('api_server_cgroup'),
            '/sys/fs/cgroup/system.slice/skypilot-api-server.service',
            f'{label}: the load budget reads the local API server\'s CPU from its unit\'s cgroup')


def policy_api_server(c, r, label, token_file=None):
    """With the launch policy, the API server reads a runtime copy of the rendered config
    with admin_policy and the token, written at each start and read-only for the server."""
    a = api(r)
    s, env = a['serviceConfig'], a['environment']
    c.equal(env['SKYPILOT_GLOBAL_CONFIG'], '/run/skypilot-api-server/config.yaml',
            f'{label}: SKYPILOT_GLOBAL_CONFIG is the runtime copy with admin_policy')
    c.equal((s.get('RuntimeDirectory'), s.get('RuntimeDirectoryMode')),
            ('skypilot-api-server', '0700'), f'{label}: runtime directory of the API server')
    c.equal(s.get('ReadOnlyPaths'), ['-/run/skypilot-api-server/config.yaml'],
            f'{label}: the runtime copy is read-only for the server')
    pre = [x for x in s['ExecStartPre'] if ' policy --config ' in x]
    c.equal(len(pre), 1, f'{label}: one ExecStartPre writes the runtime copy: {s["ExecStartPre"]}')
    if pre:
        words = pre[0].split()
        c.check(not pre[0].startswith('+'), f'{label}: it runs as the service user')
        c.check(words[-2].endswith('-skypilot-config/config.yaml')
                and words[-1] == '/run/skypilot-api-server/config.yaml',
                f'{label}: from the store config to the runtime copy: {pre[0]}')
        if token_file:
            c.check('--token-file %d/policy-token' in pre[0],
                    f'{label}: the token from the API server\'s credential: {pre[0]}')
            c.check(f'policy-token:{token_file}' in s.get('LoadCredential', []),
                    f'{label}: LoadCredential of the token: {s.get("LoadCredential")}')
        else:
            c.check('--token-file' not in pre[0], f'{label}: the generated token: {pre[0]}')
    c.check('skypilot-policy.service' in a['after'] and 'skypilot-policy.service' in a['wants'],
            f'{label}: the API server starts after the policy')
    p = r['services']['skypilot-policy']
    ps = p['serviceConfig']
    c.check(ps['ExecStart'].endswith('/bin/skypilot-host policy --config '
                                     + ps['ExecStart'].split()[-1])
            and ps['ExecStart'].split()[-1].endswith('-skypilot-host.toml'),
            f'{label}: policy ExecStart: {ps["ExecStart"]}')
    c.equal((ps['Type'], ps['NotifyAccess']), ('notify', 'main'), f'{label}: policy Type=notify')
    c.equal((ps.get('IPAddressDeny'), ps.get('IPAddressAllow')), ('any', 'localhost'),
            f'{label}: policy reachable on loopback only')
    settings = r['skypilot']['settings']['policy']
    c.check(settings['listen'].startswith('127.0.0.1:'), f'{label}: policy listens on loopback')
    c.check(settings['launch_policy'].endswith('-skypilot-config/launch-policy.json'),
            f'{label}: the rendered launch-policy.json')
    c.equal(settings['catalog_dir'], '/var/lib/skypilot/runtime/.sky/catalogs/v8',
            f'{label}: SkyPilot\'s catalog under the API server\'s SKY_RUNTIME_DIR')
    if token_file:
        c.equal(settings['token_file'], '/run/credentials/skypilot-policy.service/policy-token',
                f'{label}: policy token from its credential')
        c.equal(ps.get('LoadCredential'), [f'policy-token:{token_file}'],
                f'{label}: policy LoadCredential')
        c.equal(settings['create_token'], False, f'{label}: no token created')
    else:
        c.equal((settings['token_file'], settings['create_token']),
                ('/var/lib/skypilot/policy/token', True), f'{label}: a token created at start')
        c.equal(ps.get('ReadWritePaths'), ['/var/lib/skypilot/policy'],
                f'{label}: the policy writes only its token directory')
        c.check('d /var/lib/skypilot/policy 0700 skypilot skypilot - -' in r['tmpfiles'],
                f'{label}: token directory')
    blob = json.dumps(r)
    c.check('?token=' not in blob, f'{label}: no token anywhere in what the module renders')


def advanced_warnings(c, r, label, generated_admin=False):
    for parts in (('config.cloud.aws.region', 'task resource', 'launch policy',
                   'cluster.defaultRegion'),
                  ('config.cloud.gcp.zone', 'task resource', 'launch policy',
                   'cluster.defaultZone'),
                  ('config.cloud.gcp.project', 'workspaces.default.gcp.project_id'),
                  ('config.spot.enabled', 'use_spot', 'launch policy', 'cluster.useSpot'),
                  ('config.spot.max_price', 'no SkyPilot equivalent', 'price limit',
                   'cluster.maxHourlyPrice'),
                  ('GOOGLE_APPLICATION_CREDENTIALS', 'ignored', 'cloudCredentials'),
                  ('metricsPort = 9090', 'Prometheus')):
        c.check(has_warning(r, *parts), f'{label}: warning naming {parts}')
    c.check(not has_warning(r, 'not built yet'), f'{label}: the launch policy is built')
    c.equal(len(r['warnings']), 8 if generated_admin else 7,
            f'{label}: number of warnings ({r["warnings"]})')
    c.equal(has_warning(r, 'no usersFile', 'web-ui-initial-admin', 'hash-password'),
            generated_admin, f'{label}: the generated admin is named when it is made')
    for key in ('config.cloud.aws.region', 'config.spot.enabled', 'config.spot.max_price'):
        c.check(has_warning(r, key, 'the launch policy (skypilot-policy) applies it'),
                f'{label}: {key} is applied by the running policy')
    c.equal(r['skypilot']['launchDefaults'],
            {'region': 'us-west-2', 'zone': None, 'instance_type': 'm5.large', 'use_spot': None,
             'max_hourly_price': None,
             'autostop_idle_minutes': r['skypilot']['launchDefaults']['autostop_idle_minutes']},
            f'{label}: the cluster options go to the launch policy')


# The seed keys as skypilot-host maps them, read at start.
SEED_KEYS = {}


def seed_keys_named(c, r, label):
    """The module's warnings name the same seed keys, each with the same canonical option,
    as `skypilot-host` (`sky-config seed-keys` prints its one table)."""
    table = SEED_KEYS
    mapped = [w for w in r['warnings']
              if re.search(r'services\.skypilot\.config\.(cloud|spot)\.', w)
              and 'not understood' not in w]
    for key, option in table.items():
        pattern = re.escape('services.skypilot.config.' + key).replace(re.escape('<cloud>'), r'\w+')
        named = [w for w in mapped if re.search(pattern + r'\b', w)]
        c.check(named != [], f'{label}: a warning names the seed key {key}')
        c.check(all(option in w for w in named),
                f'{label}: the warning for {key} names {option}: {named}')
    for w in mapped:
        known = any(re.search(re.escape('services.skypilot.config.' + k)
                              .replace(re.escape('<cloud>'), r'\w+') + r'\b', w)
                    for k in table)
        c.check(known, f'{label}: a module warning names a seed key Rust does not map: {w}')


def expect_seed_advanced(c, r, label):
    # Verbatim: it evaluates; the open web UI without users gets a generated admin.
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    advanced_warnings(c, r, label, generated_admin=True)
    seed_keys_named(c, r, label)


def expect_seed_advanced_buildable(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    advanced_warnings(c, r, label)
    c.equal(sorted(r['services']),
            ['skypilot-api-server', 'skypilot-autostop', 'skypilot-cluster-manager',
             'skypilot-monitor', 'skypilot-policy'],
            f'{label}: units')
    autostop_units(c, r, label, idle=60)
    common_api_server(c, r, label)
    c.equal(r['skypilot']['launchDefaults']['autostop_idle_minutes'], 60,
            f'{label}: the launch policy caps autostop at cluster.autoStop')
    s = api(r)['serviceConfig']
    env = api(r)['environment']
    c.equal(s['LoadCredential'], ['aws:/run/secrets/aws-credentials',
                                  'gcp:/run/secrets/gcp-service-account.json'],
            f'{label}: LoadCredential')
    c.equal(env['AWS_SHARED_CREDENTIALS_FILE'], '%d/aws', f'{label}: AWS credentials file')
    c.equal(env['GOOGLE_APPLICATION_CREDENTIALS'], '%d/gcp',
            f'{label}: GCP credential wins over extraEnvironment')
    c.equal(env['AWS_PROFILE'], 'skypilot', f'{label}: AWS_PROFILE from extraEnvironment')
    c.check(any(x.startswith('+') and 'credentials check --config' in x
                for x in s['ExecStartPre']), f'{label}: credentials check before start')
    c.equal(r['skypilot']['settings']['credentials'],
            {'aws': '/run/secrets/aws-credentials',
             'gcp': '/run/secrets/gcp-service-account.json'},
            f'{label}: host config [credentials]')
    # The web UI is off here: its port stays closed; the metrics port is not opened either.
    c.equal(r['firewall']['allowedTCPPorts'], [], f'{label}: no port opened')
    c.equal(r['skypilot']['settings']['monitor']['listen'], '127.0.0.1:9090',
            f'{label}: monitor on the asked port')


def expect_run_roles(c, r, label):
    # What it renders is run by nix/tests/run_rendered.py; here: what it is.
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    c.equal(sorted(r['services']),
            ['skypilot-api-server', 'skypilot-autostop', 'skypilot-backup',
             'skypilot-cluster-manager', 'skypilot-monitor', 'skypilot-policy',
             'skypilot-web-ui'],
            f'{label}: every role that exists')
    c.equal(r['skypilot']['launchDefaults'],
            {'region': 'us-west-2', 'zone': None, 'instance_type': 'm5.large',
             'use_spot': False, 'max_hourly_price': 1, 'autostop_idle_minutes': 60},
            f'{label}: the cluster options go to the launch policy')


def expect_policy_token_file(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    c.equal(sorted(r['services']), ['skypilot-api-server', 'skypilot-policy'], f'{label}: units')
    common_api_server(c, r, label)
    c.check('policy-token:/run/secrets/skypilot-policy-token' in
            api(r)['serviceConfig'].get('LoadCredential', []), f'{label}: token credential')
    settings = r['skypilot']['settings']['policy']
    c.equal((settings['listen'], settings['controllers']), ('127.0.0.1:9300', True),
            f'{label}: port and controllers as asked')
    c.check('/run/secrets/skypilot-policy-token' not in json.dumps(r['skypilot']['settings']),
            f'{label}: the host config names the credential, not the secret\'s path')
    c.check(9300 not in r['firewall']['allowedTCPPorts'], f'{label}: policy port never opened')


def expect_policy_off(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check('skypilot-policy' not in r['services'], f'{label}: no policy unit')
    for o in ('defaultRegion', 'useSpot'):
        c.check(has_warning(r, f'cluster.{o}', 'launch policy does not run', 'no effect'),
                f'{label}: warning for {o}')
    c.equal(len(r['warnings']), 2, f'{label}: two warnings ({r["warnings"]})')
    c.check(api(r)['environment']['SKYPILOT_GLOBAL_CONFIG'].endswith(
        '-skypilot-config/config.yaml'), f'{label}: the store config, no admin_policy')
    # [policy] names only SkyPilot's catalog, where the cluster manager finds list prices.
    c.equal(r['skypilot']['settings'].get('policy'),
            {'catalog_dir': '/var/lib/skypilot/runtime/.sky/catalogs/v8'},
            f'{label}: [policy] holds only the catalog directory')


def expect_policy_conflicts(c, r, label):
    c.check(has_assertion(r, 'config.admin_policy is set', 'remove one'),
            f'{label}: admin_policy twice refused')
    c.check(has_assertion(r, 'policy.port (46580)', 'API server'), f'{label}: port clash refused')
    c.equal(len(r['failedAssertions']), 2, f'{label}: two failures ({r["failedAssertions"]})')


def expect_disabled(c, r, label):
    c.equal(r['services'], {}, f'{label}: no units')
    c.equal(r['users'], {}, f'{label}: no users')
    c.equal(r['tmpfiles'], [], f'{label}: no directories')
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: quiet')
    c.equal(r['firewall']['extraCommands'], '', f'{label}: no firewall rule')


def expect_custom(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.equal(sorted(r['services']), ['skypilot-api-server', 'skypilot-cluster-manager'],
            f'{label}: units')
    common_api_server(c, r, label, port=47000, user='sky-svc', group='sky-ops',
                      state='/srv/skypilot/state')
    cm = r['services']['skypilot-cluster-manager']['serviceConfig']
    c.equal((cm['User'], cm['Group']), ('sky-svc', 'sky-ops'), f'{label}: cluster manager user')
    c.check('sky-svc' in r['users'] and 'skypilot' not in r['users'], f'{label}: users')
    c.equal(r['users']['sky-svc']['group'], 'sky-ops', f'{label}: primary group')
    c.check('sky-ops' in r['groups'] and 'skypilot' not in r['groups'], f'{label}: groups')
    for rule in ('d /srv/skypilot/state 0750 sky-svc sky-ops - -',
                 'd /srv/skypilot/config 0750 sky-svc sky-ops - -',
                 'd /srv/skypilot/logs 0750 sky-svc sky-ops - -',
                 'd /srv/skypilot/cache 0700 sky-svc sky-ops - -',
                 'L+ /srv/skypilot/state/home/sky_logs - - - - /srv/skypilot/logs'):
        c.check(rule in r['tmpfiles'], f'{label}: tmpfiles {rule!r}')
    c.check(owner_rule(r, port=47000, user='sky-svc', group='sky-ops'),
            f'{label}: owner match names the custom user, group and port')
    c.equal(r['skypilot']['settings']['cluster_manager']['database'],
            '/srv/skypilot/state/host.db', f'{label}: database in the custom state dir')
    c.equal(api(r)['environment']['XDG_CACHE_HOME'], '/srv/skypilot/cache',
            f'{label}: cache dir')


def expect_monitoring_open(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    c.equal(r['firewall']['allowedTCPPorts'], [9300], f'{label}: exactly the metrics port')
    m = r['services']['skypilot-monitor']['serviceConfig']
    c.check(m['ExecStart'].split()[1:3] == ['monitor', '--config'], f'{label}: monitor command')
    c.check('IPAddressDeny' not in m, f'{label}: monitor reachable from the network')
    s = r['skypilot']['settings']
    c.equal(s['monitor']['listen'], '0.0.0.0:9300', f'{label}: listens beyond loopback')
    c.equal(s['log']['level'], 'DEBUG', f'{label}: log level')
    cm = r['services']['skypilot-cluster-manager']['serviceConfig']
    c.equal(cm['Type'], 'notify', f'{label}: cluster manager Type=notify')
    c.equal(cm['WatchdogSec'], 180, f'{label}: WatchdogSec = 2 x poll deadline (90 s)')
    c.equal(m['LimitNOFILE'], 8192, f'{label}: monitor file limit above its 4,096 connections')
    c.equal(m['WatchdogSec'], 30, f'{label}: the monitor feeds a 30 s watchdog')
    c.equal(cm['IPAddressDeny'], 'any', f'{label}: cluster manager network')
    c.equal(r['services']['skypilot-cluster-manager']['after'],
            ['skypilot-api-server.service'], f'{label}: cluster manager after API server')


def expect_monitoring_loopback(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    c.equal(sorted(r['services']), ['skypilot-api-server', 'skypilot-monitor'], f'{label}: units')
    c.equal(r['firewall']['allowedTCPPorts'], [], f'{label}: nothing opened')
    m = r['services']['skypilot-monitor']['serviceConfig']
    c.equal((m.get('IPAddressDeny'), m.get('IPAddressAllow')), ('any', 'localhost'),
            f'{label}: loopback only')
    c.equal(r['skypilot']['settings']['monitor']['listen'], '127.0.0.1:9188',
            f'{label}: default metrics port 9188')


def expect_credentials(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    s = api(r)['serviceConfig']
    env = api(r)['environment']
    c.equal(sorted(s['LoadCredential']),
            sorted(['aws:/run/secrets/aws', 'gcp:/run/secrets/gcp.json',
                    'kubernetes:/run/secrets/kubeconfig', 'lambda:/run/secrets/lambda_keys',
                    'runpod:/run/secrets/runpod.toml']), f'{label}: LoadCredential')
    c.equal(s['BindPaths'], ['/var/lib/skypilot-secrets/azure:/var/lib/skypilot/home/.azure'],
            f'{label}: azure directory bound as ~/.azure')
    c.equal((env['AWS_SHARED_CREDENTIALS_FILE'], env['GOOGLE_APPLICATION_CREDENTIALS'],
             env['KUBECONFIG']), ('%d/aws', '%d/gcp', '%d/kubernetes'),
            f'{label}: credential variables')
    pre = s['ExecStartPre']
    c.check(pre[0].startswith('+') and pre[0].split()[1:4] == ['credentials', 'check',
                                                               '--config'],
            f'{label}: credentials check first: {pre}')
    c.check(any(x.endswith('install -D -m 0600 -T %d/aws /var/lib/skypilot/home/.aws/credentials')
                for x in pre), f'{label}: AWS credentials where SkyPilot checks them, under HOME')
    c.check(any(x.endswith('install -D -m 0600 -T %d/lambda /var/lib/skypilot/home/.lambda_cloud/lambda_keys')
                for x in pre), f'{label}: lambda key under HOME')
    c.check(any(x.endswith('install -D -m 0600 -T %d/runpod /var/lib/skypilot/home/.runpod/config.toml')
                for x in pre), f'{label}: runpod config under HOME')
    c.equal(env['AWS_PROFILE'], 'skypilot', f'{label}: export NAME=value')
    c.equal(env['SKY_PLAIN'], 'value', f'{label}: NAME=value')
    c.equal(env['SINGLE'], 'two words $HOME', f'{label}: single quotes are literal')
    c.equal(env['DOUBLE'], 'say "hi" for 100%%', f'{label}: double quotes, % escaped')
    c.equal(env['FROM_ATTRS'], 'yes', f'{label}: environment attrset')
    c.equal(s['EnvironmentFile'], '/run/secrets/skypilot.env', f'{label}: EnvironmentFile')
    c.check(has_warning(r, 'GOOGLE_APPLICATION_CREDENTIALS', 'ignored'),
            f'{label}: warning about the overridden variable')
    c.equal(sorted(r['skypilot']['settings']['credentials']),
            ['aws', 'azure', 'gcp', 'kubernetes', 'lambda', 'runpod'],
            f'{label}: every credential in the host config')
    blob = json.dumps(r)
    c.check('/nix/store/' not in r['skypilot']['settings']['credentials'].get('aws', ''),
            f'{label}: credential not copied to the store')
    c.check(blob.count('/run/secrets/aws') >= 2, f'{label}: credential path used as given')


def expect_credential_store_path(c, r, label):
    c.check(has_assertion(r, 'cloudCredentials.aws', 'is in the Nix store',
                          'every local user can read'),
            f'{label}: store path rejected with the reason')
    c.check(has_assertion(r, 'cloudCredentials.gcp', 'not an absolute path'),
            f'{label}: relative path rejected')
    c.equal(len(r['failedAssertions']), 2, f'{label}: two failures ({r["failedAssertions"]})')


def expect_environment_file_store_path(c, r, label):
    c.check(has_assertion(r, 'environmentFile', 'is in the Nix store'),
            f'{label}: environmentFile in the store rejected')
    c.equal(len(r['failedAssertions']), 1, f'{label}: one failure')


def expect_extra_environment_bad_line(c, r, label):
    fa = r['failedAssertions']
    c.equal(len(fa), 3, f'{label}: one failure per bad line ({fa})')
    c.check(has_assertion(r, 'extraEnvironment line 2', '`source /etc/profile`',
                          'not an assignment'), f'{label}: names line 2')
    c.check(has_assertion(r, 'line 3', '`export UNQUOTED=two words`'), f'{label}: names line 3')
    c.check(has_assertion(r, 'line 4', 'EXPANDS'), f'{label}: names line 4')


def expect_no_systemd_services(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.equal(r['services'], {}, f'{label}: no units')
    c.equal(r['timers'], {}, f'{label}: no timers')
    c.equal(r['firewall']['allowedTCPPorts'], [], f'{label}: nothing opened')
    c.equal(r['firewall']['extraCommands'], '', f'{label}: no owner rule without a server')
    c.equal(r['sudoRules'], [], f'{label}: no sudo rule without units')
    c.check('skypilot' in r['users'], f'{label}: user still created')
    c.check(any(t.startswith('d /var/lib/skypilot/config ') for t in r['tmpfiles']),
            f'{label}: directories still created')
    c.check('skypilot-host/config.toml' in r['etc'], f'{label}: config still rendered')
    c.check(has_warning(r, 'systemdServices is false'), f'{label}: warning')
    c.check('SKYPILOT_API_SERVER_ENDPOINT' not in r['variables'],
            f'{label}: no endpoint without a server')


def expect_sudo(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    rules = r['sudoRules']
    c.equal(len(rules), 1, f'{label}: one rule')
    rule = rules[0]
    c.equal(rule['groups'], ['skypilot'], f'{label}: for the group')
    c.equal(rule['users'], [], f'{label}: for no user')
    c.equal(rule['runAs'], 'root', f'{label}: as root only')
    cmds = sorted(x['command'] for x in rule['commands'])
    want = sorted(f'/run/current-system/sw/bin/systemctl {v} {u}.service'
                  for u in ('skypilot-api-server', 'skypilot-cluster-manager')
                  for v in ('start', 'stop', 'restart', 'status'))
    c.equal(cmds, want, f'{label}: exactly start/stop/restart/status of the units')
    c.check(all('*' not in x and 'ALL' not in x for x in cmds), f'{label}: no wildcard')
    c.check(all(x['options'] == ['NOPASSWD'] for x in rule['commands']), f'{label}: options')


def expect_nftables(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.equal(r['firewall']['extraCommands'], '', f'{label}: no iptables rule')
    t = r['nftables']['tables'].get('skypilot-api', {})
    content = t.get('content', '')
    c.equal(t.get('family'), 'inet', f'{label}: inet table')
    c.check('oifname "lo" tcp dport 46580 meta skuid { 0, 947 } accept' in content,
            f'{label}: service uid and root accepted')
    c.check('meta skgid 947 accept' in content, f'{label}: group accepted')
    c.check('oifname "lo" tcp dport 46580 reject with tcp reset' in content,
            f'{label}: everyone else refused')
    c.equal(r['users']['skypilot']['uid'], 947, f'{label}: static uid')
    c.equal(r['groups']['skypilot']['gid'], 947, f'{label}: static gid')


def expect_nftables_without_uid(c, r, label):
    c.check(has_assertion(r, 'uid and .gid must be set', 'nftables'), f'{label}: assertion')
    c.equal(len(r['failedAssertions']), 1, f'{label}: one failure')


def expect_firewall_off(c, r, label):
    c.check(has_assertion(r, 'restrictAccess', 'networking.firewall.enable'),
            f'{label}: assertion')
    c.equal(len(r['failedAssertions']), 1, f'{label}: one failure')


def expect_closed_to_group(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check(owner_rule(r, allow_group=False), f'{label}: group not accepted')
    c.check('SKYPILOT_DISABLE_USAGE_COLLECTION' not in api(r)['environment'],
            f'{label}: telemetry as asked')


def expect_web_ui(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    w = r['services']['skypilot-web-ui']['serviceConfig']
    c.check(w['ExecStart'].split()[1:3] == ['web-ui', '--config'], f'{label}: web-ui command')
    c.equal(w['Type'], 'notify', f'{label}: notify')
    c.equal(sorted(w['LoadCredential']),
            ['tls-cert:/run/secrets/web.crt', 'tls-key:/run/secrets/web.key',
             'tokens:/run/secrets/web-tokens', 'users:/run/secrets/web-users'],
            f'{label}: secrets through LoadCredential')
    c.check('IPAddressDeny' not in w, f'{label}: reachable from the network')
    s = r['skypilot']['settings']['web_ui']
    c.equal(s['listen'], '0.0.0.0:8443', f'{label}: listens where asked')
    c.equal(w['ExecStart'].split()[4:],
            ['--users-file', '%d/users', '--tokens-file', '%d/tokens',
             '--tls-cert-file', '%d/tls-cert', '--tls-key-file', '%d/tls-key'],
            f'{label}: the secret files from the credentials directory')
    c.check('users_file' not in s, f'{label}: no secret path in the shared host config')
    c.equal(r['firewall']['allowedTCPPorts'], [8443], f'{label}: exactly webUI.port opened')


def expect_web_ui_oidc(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check(not has_warning(r, 'no usersFile'), f'{label}: no generated-admin warning with SSO')
    w = r['services']['skypilot-web-ui']['serviceConfig']
    c.check('oidc-client-secret:/run/secrets/oidc-client-secret' in w['LoadCredential'],
            f'{label}: the client secret through LoadCredential')
    c.check('--oidc-client-secret-file %d/oidc-client-secret' in w['ExecStart'],
            f'{label}: the client secret from the credentials directory')
    s = r['skypilot']['settings']['web_ui']
    o = s['oidc']
    c.equal(o['issuer'], 'https://id.example.org/realms/team', f'{label}: issuer')
    c.equal((o['client_id'], o['username_claim'], o['groups_claim']),
            ('skypilot', 'email', 'groups'), f'{label}: client and claims')
    c.equal((o['admin_groups'], o['user_groups'], o['viewer_groups']),
            (['platform'], ['ml', 'research'], ['finance']), f'{label}: group mapping')
    c.check('client_secret_file' not in o, f'{label}: no secret path in the shared host config')
    c.equal(s['public_url'], 'https://sky.example.org', f'{label}: the callback base')
    c.equal(s['password_login'], False, f'{label}: password login off')


def expect_web_ui_oidc_bad(c, r, label):
    c.check(has_assertion(r, 'webUI.oidc.issuer', 'https://'), f'{label}: http issuer refused')
    c.check(has_assertion(r, 'adminGroups, userGroups and viewerGroups are all empty'),
            f'{label}: no group mapping refused')


def expect_web_ui_no_login(c, r, label):
    c.check(has_assertion(r, 'passwordLogin = false needs webUI.oidc.enable'),
            f'{label}: nobody able to log in refused')


def expect_web_ui_loopback(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    w = r['services']['skypilot-web-ui']['serviceConfig']
    c.equal(w.get('IPAddressAllow'), 'localhost', f'{label}: loopback only')
    c.check('LoadCredential' not in w, f'{label}: no credential to load')
    c.equal(r['skypilot']['settings']['web_ui']['listen'], '127.0.0.1:8080', f'{label}: seed default port')
    c.check('skypilot-api' in r['skypilot']['settings']['web_ui']['allowed_hosts'],
            f'{label}: users\' sky reaches the gateway by the API server\'s host name, which the Host check allows')
    c.equal(r['firewall']['allowedTCPPorts'], [], f'{label}: no port opened')


def expect_web_ui_no_users(c, r, label):
    # No longer refused: the web UI makes one admin with a random password at its first
    # start (tests/it/web_ui.rs runs that), and evaluation says where it is.
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check(has_warning(r, 'no usersFile', 'web-ui-initial-admin', 'sudo cat', 'hash-password'),
            f'{label}: warning naming the generated admin\'s file and how to configure users')


def failed_besides_not_built(r):
    """Failed assertions other than a role's "not built yet" (the web UI's, until it is)."""
    return [a for a in r['failedAssertions'] if 'not built yet' not in a]


def expect_web_ui_gateway(c, r, label):
    c.equal(failed_besides_not_built(r), [], f'{label}: no other failed assertion')
    c.equal(r['variables'].get('SKYPILOT_API_SERVER_ENDPOINT'), 'http://skypilot-api:8443',
            f'{label}: users\' sky goes through the gateway, by the loopback name')
    c.equal(r['hosts'].get('127.0.0.1'), ['skypilot-api'], f'{label}: the name is loopback')
    c.check(owner_rule(r, allow_group=False), f'{label}: the group is no longer let in')
    c.check('46580' not in map(str, r['firewall']['allowedTCPPorts']),
            f'{label}: API server port never opened')


def expect_web_ui_gateway_nftables(c, r, label):
    c.equal(failed_besides_not_built(r), [], f'{label}: no other failed assertion')
    c.equal(r['variables'].get('SKYPILOT_API_SERVER_ENDPOINT'), 'http://10.0.0.5:8080',
            f'{label}: the gateway by the address it binds')
    content = r['nftables']['tables']['skypilot-api']['content']
    c.check('oifname "lo" tcp dport 46580 meta skuid { 0, 947 } accept' in content,
            f'{label}: service uid and root accepted')
    c.check('skgid' not in content, f'{label}: the group is not accepted')
    c.check('1001' not in content, f'{label}: a member with a uid is not accepted')
    c.check('oifname "lo" tcp dport 46580 reject with tcp reset' in content,
            f'{label}: everyone else refused')
    c.check(not has_warning(r, 'allowGroup with nftables'),
            f'{label}: no warning about members without uid (none are let in)')


def expect_web_ui_gateway_public_url(c, r, label):
    c.equal(failed_besides_not_built(r), [], f'{label}: no other failed assertion')
    c.equal(r['variables'].get('SKYPILOT_API_SERVER_ENDPOINT'), 'https://sky.example.org',
            f'{label}: users\' sky goes to the public URL (the name the certificate answers to)')
    c.check(owner_rule(r, allow_group=False), f'{label}: the group is no longer let in')


def autostop_units(c, r, label, idle):
    """The enforcer as the module renders it: a oneshot pass on a timer, the idle minutes
    from cluster.autoStop."""
    u = r['services'].get('skypilot-autostop')
    t = r['timers'].get('skypilot-autostop')
    c.check(u is not None and t is not None, f'{label}: skypilot-autostop service and timer')
    if u is None or t is None:
        return
    s = u['serviceConfig']
    c.equal(s['Type'], 'oneshot', f'{label}: autostop is a oneshot pass')
    c.equal(s['ExecStart'].split()[1:3], ['autostop', '--config'], f'{label}: autostop command')
    c.check(s['ExecStart'].split()[0].endswith('/bin/skypilot-host'), f'{label}: skypilot-host')
    c.check('--dry-run' not in s['ExecStart'] and '--daemon' not in s['ExecStart'],
            f'{label}: one real pass per run')
    c.check('Restart' not in s, f'{label}: a oneshot is not restarted (the timer runs it again)')
    c.equal((s.get('IPAddressDeny'), s.get('IPAddressAllow')), ('any', 'localhost'),
            f'{label}: autostop reaches loopback only')
    c.equal(s['ReadWritePaths'], ['/var/lib/skypilot'], f'{label}: writes the state dir only')
    c.equal(s['User'], 'skypilot', f'{label}: autostop user')
    c.equal(u['after'], ['skypilot-cluster-manager.service'], f'{label}: after the manager')
    c.equal(t['wantedBy'], ['timers.target'], f'{label}: timer enabled')
    c.equal(t['timerConfig'].get('Unit'), 'skypilot-autostop.service', f'{label}: timer unit')
    c.equal(t['timerConfig'].get('OnUnitInactiveSec'), 300, f'{label}: a pass every 300 s')
    c.equal(r['skypilot']['settings']['autostop']['idle_minutes'], idle,
            f'{label}: cluster.autoStop drives autostop.idle_minutes')
    c.check(not has_warning(r, 'autoStop'), f'{label}: no warning about autoStop')


def expect_autostop(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    autostop_units(c, r, label, idle=30)
    c.equal(sorted(r['timers']), ['skypilot-autostop'], f'{label}: one timer')


def expect_remote_acting_roles(c, r, label):
    c.check(has_assertion(r, 'apiServer.enable = false', 'autostop enforcer', 'web UI',
                          'local API server only'), f'{label}: refused: {r["failedAssertions"]}')


def expect_autostop_without_cluster(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check(has_warning(r, 'cluster.autoStop has no effect without',
                        'enableCluster'), f'{label}: warning: {r["warnings"]}')
    c.check('skypilot-autostop' not in r['services'], f'{label}: no autostop unit')
    c.equal(r['timers'], {}, f'{label}: no timer')


def expect_user_root(c, r, label):
    c.equal(r['failedAssertions'], ['services.skypilot.user and .group must not be root: the '
                                     'API server runs untrusted requests.'],
            f'{label}: the module\'s own message (no conflicting definition)')
    c.equal(r['users']['root']['home'], '/root', f'{label}: root left as it is')


def expect_existing_user(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    c.equal(sorted(r['users']), ['alice'], f'{label}: no account created, alice not redefined')
    c.equal((r['users']['alice']['home'], r['users']['alice']['isSystemUser']),
            ('/home/alice', False), f'{label}: alice as the configuration defines her')
    c.equal(api(r)['serviceConfig']['User'], 'alice', f'{label}: units run as alice')
    c.equal(api(r)['environment']['HOME'], '/var/lib/skypilot/home', f'{label}: HOME')
    c.check('skypilot' in r['groups'], f'{label}: default group still created')


def expect_nftables_members(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    content = r['nftables']['tables']['skypilot-api']['content']
    c.check('meta skgid 947 accept' in content, f'{label}: primary group accepted')
    c.check('oifname "lo" tcp dport 46580 meta skuid { 1001 } accept' in content,
            f'{label}: alice (extraGroups, uid 1001) accepted by uid: {content}')
    c.check('1003' not in content, f'{label}: carol (not a member) not accepted')
    c.check(has_warning(r, 'bob', 'no static uid', 'refused'), f'{label}: bob named')
    c.equal(len(r['warnings']), 1, f'{label}: one warning')


def expect_credential_without_sdk(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check(has_warning(r, 'cloudCredentials.aws is set but aws is not in',
                        'services.skypilot.clouds', 'disabled'),
            f'{label}: warning for aws: {r["warnings"]}')
    c.equal(len(r['warnings']), 1, f'{label}: one warning')
    s = api(r)['serviceConfig']
    c.check(re.search(r'-skypilot-server-python-0\.14\.1\+kubernetes\+websockets\+'
                      r'python-dateutil/bin/python3 ', s['ExecStart']) is not None,
            f'{label}: the server\'s Python has the kubernetes SDK only: {s["ExecStart"]}')
    c.check('-kubectl/bin' in api(r)['environment']['PATH'], f'{label}: kubectl on PATH')


def expect_restrict_access_off(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check(has_warning(r, 'restrictAccess is false', 'every local account',
                        'SkyPilot admin'), f'{label}: warning: {r["warnings"]}')
    c.equal(r['firewall']['extraCommands'], '', f'{label}: no owner rule')


def expect_sudo_rs(c, r, label):
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.equal(r['sudoRules'], [], f'{label}: nothing for sudo')
    c.equal(len(r['sudoRsRules']), 1, f'{label}: the rule goes to sudo-rs')
    if len(r['sudoRsRules']) != 1:
        return
    cmds = sorted(x['command'] for x in r['sudoRsRules'][0]['commands'])
    c.equal(len(cmds), 4, f'{label}: start/stop/restart/status of the API server')
    c.equal(r['sudoRsRules'][0]['groups'], ['skypilot'], f'{label}: for the group')


def expect_sudo_none(c, r, label):
    c.check(has_assertion(r, 'sudo.enable needs security.sudo.enable or security.sudo-rs'),
            f'{label}: assertion')
    c.equal(len(r['failedAssertions']), 1, f'{label}: one failure')


def expect_bad_host_settings(c, r, label):
    # Evaluates; the build-time check-config (run below with the real binary) must refuse it.
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')


# ---- scale-out: SkyPilot's state in PostgreSQL, the host roles against a remote server
def rendered_files(r):
    """Everything NixOS would write for a case: unit files, environment, /etc, the host
    config and SkyPilot's config value, as one text."""
    units = [render_unit(n, u) + u['script'] for n, u in sorted(r['services'].items())]
    return '\n'.join(units + [json.dumps(r['variables']), json.dumps(r['etc']),
                               to_toml(r['skypilot']['settings']),
                               json.dumps(r['skypilot']['config'])])


def expect_database_local(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    common_api_server(c, r, label)
    u = api(r)
    c.equal(u['environment'].get('SKYPILOT_DB_CONNECTION_URI'),
            'postgresql+psycopg2://skypilot@/skypilot?host=/run/postgresql',
            f'{label}: SkyPilot\'s state in the local PostgreSQL over its Unix socket, as the '
            'service user (peer authentication: no password)')
    c.check('postgresql.service' in u['requires'] and 'postgresql.service' in u['after'],
            f'{label}: the API server requires and follows postgresql.service: '
            f'{u["requires"]} {u["after"]}')
    c.check('postgresql-setup.service' in u['after'],
            f'{label}: and the unit that creates the ensured database and role')
    pg = r['postgresql']
    c.equal((pg['enable'], pg['ensureDatabases'], pg['ensureUsers']),
            (True, ['skypilot'], [{'name': 'skypilot', 'ensureDBOwnership': True}]),
            f'{label}: services.postgresql with the service user\'s database and role')
    c.check(owner_rule(r), f'{label}: the owner match still guards the local API server')


def expect_run_database(c, r, label):
    # What it renders is run by nix/tests/run_rendered.py; here: what it is.
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.equal(len(r['warnings']), 1, f'{label}: one warning ({r["warnings"]})')
    c.check(has_warning(r, 'no usersFile', 'web-ui-initial-admin'),
            f'{label}: the warning names the generated admin')
    u = api(r)
    s = u['serviceConfig']
    c.check('db-uri:/run/secrets/skypilot-db-uri' in s['LoadCredential'],
            f'{label}: the URI file handed over with LoadCredential: {s["LoadCredential"]}')
    c.check(re.fullmatch(r'/nix/store/[0-9a-z]{32}-unit-script-skypilot-api-server-start/bin/'
                         r'skypilot-api-server-start', s['ExecStart']) is not None,
            f'{label}: ExecStart is the start script: {s["ExecStart"]}')
    c.check('"$CREDENTIALS_DIRECTORY/db-uri"' in u['script']
            and 'export SKYPILOT_DB_CONNECTION_URI' in u['script']
            and re.search(r'\nexec \S+/bin/python3 -m sky\.server\.server --deploy --host '
                          r'127\.0\.0\.1 --port 46580\n$', u['script']) is not None,
            f'{label}: the script exports the credential and execs the server: {u["script"]!r}')
    c.check('SKYPILOT_DB_CONNECTION_URI' not in u['environment'],
            f'{label}: no URI in the unit\'s environment')
    text = rendered_files(r)
    c.check('postgresql://' not in text and 'postgresql+' not in text and 'db:' not in text,
            f'{label}: no connection URI in any rendered file')
    c.equal(r['postgresql']['enable'], False, f'{label}: no local PostgreSQL')


def expect_database_config_keys(c, r, label):
    c.check(has_assertion(r, 'services.skypilot.config has 2 top-level keys',
                          'allowed_clouds, jobs', 'no other config is allowed'),
            f'{label}: a config SkyPilot would refuse with a database is refused, naming the '
            f'keys: {r["failedAssertions"]}')
    c.equal(len(r['failedAssertions']), 1, f'{label}: one failure')


def expect_remote_api_server(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    c.equal(sorted(r['services']), ['skypilot-cluster-manager', 'skypilot-monitor'],
            f'{label}: the host roles only, no local API server unit')
    c.equal((r['firewall']['extraCommands'], r['nftables']['tables'], r['hosts']),
            ('', {}, {}), f'{label}: no owner-match rules, no host name for a local server')
    sky = r['skypilot']['settings']['skypilot']
    c.equal(sky, {'api_url': 'https://skypilot.example.com',
                  'token_file': '/run/credentials/skypilot-cluster-manager.service/token',
                  'ca_file': '/etc/ssl/skypilot-ca.pem'},
            f'{label}: the host config points at the remote server, its token and CA')
    cm = r['services']['skypilot-cluster-manager']
    s = cm['serviceConfig']
    c.equal(s.get('LoadCredential'), ['token:/run/secrets/skypilot-token'],
            f'{label}: the token handed to the cluster manager with LoadCredential')
    c.check('IPAddressDeny' not in s, f'{label}: the cluster manager may reach the network')
    c.check('skypilot-api-server.service' not in cm['after'] + cm['wants'],
            f'{label}: no order on a local API server: {cm["after"]}')
    c.equal(r['variables'].get('SKYPILOT_API_SERVER_ENDPOINT'), 'https://skypilot.example.com',
            f'{label}: users\' sky points at the remote server')
    c.check('/run/secrets/skypilot-token' not in to_toml(r['skypilot']['settings']),
            f'{label}: the host config names the credential, not the secret\'s path')
    c.check('api_server_cgroup' not in r['skypilot']['settings']['cluster_manager'],
            f'{label}: a remote server\'s CPU is not read from a cgroup here')


def expect_remote_without_url(c, r, label):
    c.check(has_assertion(r, 'apiServer.enable = false needs apiServer.url'),
            f'{label}: no URL refused')
    c.check(has_assertion(r, 'database.*', 'apiServer.enable = false'),
            f'{label}: a database for a server that is not here refused')
    c.equal(len(r['failedAssertions']), 2, f'{label}: two failures')
    c.check(has_warning(r, 'apiServer.tokenFile is not set'), f'{label}: no token warned')


def backup_units(c, r, label, directory, calendar, state='/var/lib/skypilot'):
    """The backup as the module renders it: a oneshot on a persistent calendar timer that
    may write the state directory (a WAL reader's -shm) and the backup directory only."""
    u = r['services'].get('skypilot-backup')
    t = r['timers'].get('skypilot-backup')
    c.check(u is not None and t is not None, f'{label}: skypilot-backup service and timer')
    if u is None or t is None:
        return None
    s = u['serviceConfig']
    c.equal(s['Type'], 'oneshot', f'{label}: a backup is a oneshot')
    c.equal(s['ExecStart'].split()[1:3], ['backup', '--config'], f'{label}: backup command')
    c.equal(s['ReadWritePaths'], [state, directory], f'{label}: writes state and backups only')
    c.equal(s['User'], 'skypilot', f'{label}: as the service user')
    c.equal(s['UMask'], '0077', f'{label}: files of the owner alone')
    c.equal(t['wantedBy'], ['timers.target'], f'{label}: timer enabled')
    c.equal((t['timerConfig'].get('OnCalendar'), t['timerConfig'].get('Persistent'),
             t['timerConfig'].get('Unit')), (calendar, True, 'skypilot-backup.service'),
            f'{label}: on its calendar, a missed run made up')
    c.equal(t['timerConfig'].get('OnActiveSec'), '5min',
            f'{label}: and a first backup 5 minutes after the timer starts (boot, or enabling)')
    c.check(f'd {directory} 0700 skypilot skypilot -' in r['tmpfiles'],
            f'{label}: the backup directory made 0700 for the service user: {r["tmpfiles"]}')
    return u


def expect_backup(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    u = backup_units(c, r, label, '/srv/backup/sky', 'hourly')
    if u is None:
        return
    s = u['serviceConfig']
    c.equal((s.get('IPAddressDeny'), s.get('IPAddressAllow')), ('any', 'localhost'),
            f'{label}: the backup reaches loopback only (the API server\'s version)')
    c.equal(u['after'], ['skypilot-api-server.service', 'skypilot-cluster-manager.service'],
            f'{label}: after the API server and the cluster manager (its database)')
    b = r['skypilot']['settings']['backup']
    c.equal(b, {'directory': '/srv/backup/sky', 'keep': 24, 'interval_secs': 3600,
                'sky_home': '/var/lib/skypilot/home',
                'sky_runtime_dir': '/var/lib/skypilot/runtime',
                'skypilot_version': '0.14.1'},
            f'{label}: [backup] from the options, SkyPilot\'s version from its package')


def expect_backup_database_local(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')
    u = backup_units(c, r, label, '/var/backup/skypilot', 'daily')
    if u is None:
        return
    b = r['skypilot']['settings']['backup']
    c.equal(b.get('database_uri'), 'postgresql+psycopg2://skypilot@/skypilot?host=/run/postgresql',
            f'{label}: pg_dump of the local database over its socket, no password')
    c.check(re.fullmatch(r'/nix/store/[0-9a-z]{32}-postgresql-16/bin/pg_dump', b.get('pg_dump', ''))
            is not None, f'{label}: the local PostgreSQL\'s own pg_dump: {b.get("pg_dump")}')
    c.equal(b.get('interval_secs'), 86400, f'{label}: daily')
    c.check('postgresql.service' in u['after'], f'{label}: after PostgreSQL: {u["after"]}')


EXPECT = {
    'backup': expect_backup,
    'backup-database-local': expect_backup_database_local,
    'database-local': expect_database_local,
    'run-database': expect_run_database,
    'database-config-keys': expect_database_config_keys,
    'remote-api-server': expect_remote_api_server,
    'remote-api-server-without-url': expect_remote_without_url,
    'seed-basic': expect_seed_basic,
    'seed-advanced': expect_seed_advanced,
    'seed-advanced-buildable': expect_seed_advanced_buildable,
    'run-roles': expect_run_roles,
    'disabled': expect_disabled,
    'custom-user-dirs': expect_custom,
    'monitoring-open-firewall': expect_monitoring_open,
    'monitoring-loopback': expect_monitoring_loopback,
    'credentials': expect_credentials,
    'extra-environment-bad-line': expect_extra_environment_bad_line,
    'no-systemd-services': expect_no_systemd_services,
    'sudo-rules': expect_sudo,
    'nftables': expect_nftables,
    'nftables-without-uid': expect_nftables_without_uid,
    'firewall-off': expect_firewall_off,
    'closed-to-group': expect_closed_to_group,
    'web-ui': expect_web_ui,
    'web-ui-loopback': expect_web_ui_loopback,
    'web-ui-oidc': expect_web_ui_oidc,
    'web-ui-oidc-bad': expect_web_ui_oidc_bad,
    'web-ui-no-login': expect_web_ui_no_login,
    'web-ui-no-users': expect_web_ui_no_users,
    'web-ui-gateway': expect_web_ui_gateway,
    'web-ui-gateway-nftables': expect_web_ui_gateway_nftables,
    'web-ui-gateway-public-url': expect_web_ui_gateway_public_url,
    'autostop': expect_autostop,
    'remote-api-server-acting-roles': expect_remote_acting_roles,
    'autostop-without-cluster': expect_autostop_without_cluster,
    'bad-host-settings': expect_bad_host_settings,
    'user-root': expect_user_root,
    'existing-user': expect_existing_user,
    'nftables-members': expect_nftables_members,
    'restrict-access-off': expect_restrict_access_off,
    'credential-without-sdk': expect_credential_without_sdk,
    'sudo-rs': expect_sudo_rs,
    'sudo-none': expect_sudo_none,
    'policy-token-file': expect_policy_token_file,
    'policy-off': expect_policy_off,
    'policy-conflicts': expect_policy_conflicts,
}
# Cases whose evaluation must fail (types.pathWith refuses the value), with what the error
# must say. With a lib without pathWith the module's assertions say it instead
# (expect_credential_store_path, expect_environment_file_store_path).
EVAL_ERRORS = {
    'credential-store-path': ['services.skypilot.cloudCredentials.aws', 'is not of type',
                              'absolute path outside the Nix store',
                              'readable by every local user'],
    'environment-file-store-path': ['services.skypilot.environmentFile', 'is not of type',
                                    'absolute path outside the Nix store'],
    'database-uri-in-store': ['services.skypilot.database.uriFile', 'is not of type',
                              'absolute path outside the Nix store'],
    'policy-token-store-path': ['services.skypilot.policy.tokenFile', 'is not of type',
                                'absolute path outside the Nix store'],
    'web-ui-store-path': ['services.skypilot.webUI.usersFile', 'is not of type',
                          'absolute path outside the Nix store'],
    'web-ui-oidc-secret-in-store': ['services.skypilot.webUI.oidc.clientSecretFile',
                                    'is not of type', 'absolute path outside the Nix store'],
    'backup-in-store': ['services.skypilot.backup.directory', 'is not of type',
                        'absolute path outside the Nix store'],
}
def expect_clean(c, r, label):
    c.equal(r['failedAssertions'] + r['warnings'], [], f'{label}: clean')


EXPECT['sky-config-native'] = expect_clean
EXPECT['bad-sky-config'] = expect_clean


def expect_policy_seed_conflict(c, r, label):
    # Evaluates (a warning for the seed key); the build-time render refuses it.
    c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
    c.check('skypilot-policy' in r['services'], f'{label}: policy unit')


EXPECT['policy-seed-conflict'] = expect_policy_seed_conflict
# `sky-config render` (with SkyPilot's schema) must refuse these, naming the key.
BAD_SKY_CONFIG = {'bad-sky-config': 'aws.region',
                  'policy-seed-conflict': 'useSpot = false conflicts with the seed key '
                                          'config.spot.enabled = true'}
# check-config must refuse these host configs, naming the key.
BAD_SETTINGS = {'bad-host-settings': 'cluster_manager.poll_interval_secs'}


# ------------------------------------------------------------------------- VM test
def check_test_script(c, script, nodes, tmp):
    path = os.path.join(tmp, 'testScript.py')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(script)
    try:
        py_compile.compile(path, doraise=True)
        c.check(True, 'testScript byte-compiles')
    except py_compile.PyCompileError as e:
        c.check(False, f'testScript does not compile: {e.msg}')
        return
    tree = ast.parse(script)
    machines = set(nodes)
    bad = []
    subtests = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and f.value.id in machines and f.attr not in MACHINE_METHODS:
            bad.append(f'{f.value.id}.{f.attr} (line {node.lineno})')
        if isinstance(f, ast.Name) and f.id == 'subtest' and node.args \
                and isinstance(node.args[0], ast.Constant):
            subtests.append(node.args[0].value)
    c.equal(bad, [], 'testScript calls only NixOS test machine methods')
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.For))
                for t in ast.walk(n.targets[0] if isinstance(n, ast.Assign) else n.target)
                if isinstance(t, ast.Name)}
    defined = {n.name for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    imported = {a.asname or a.name.split('.')[0] for n in ast.walk(tree)
                if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    params = {a.arg for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.Lambda))
              for a in n.args.args}
    comp = {t.id for n in ast.walk(tree) if isinstance(n, ast.comprehension)
            for t in ast.walk(n.target) if isinstance(t, ast.Name)}
    withs = {t.id for n in ast.walk(tree) if isinstance(n, ast.withitem) and n.optional_vars
             for t in ast.walk(n.optional_vars) if isinstance(t, ast.Name)}
    excs = {n.name for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler) and n.name}
    import builtins
    known = (machines | DRIVER_GLOBALS | assigned | defined | imported | params | comp | withs
             | excs | set(dir(builtins)))
    c.equal(sorted(names - known), [], 'testScript uses no undefined name')
    c.equal([s.lower() for s in subtests], SEED_SCENARIOS,
            'one subtest per seed Testing scenario, in order')
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            c.check(False, f'testScript line {node.lineno}: try/except hides failures')


def run_vm_checks(c, nixpkgs_lib, stub, tmp, scores):
    print('== VM test (tests/skypilot-module.nix)')
    vm = nix_eval(nixpkgs_lib, vmTest=True)
    c.equal(vm['name'], 'skypilot-module', 'VM test name')
    nodes = vm['nodes']
    c.check(len(nodes) >= 2, f'VM test nodes: {sorted(nodes)}')
    for name, r in sorted(nodes.items()):
        label = f'vm:{name}'
        c.equal(r['failedAssertions'], [], f'{label}: no failed assertion')
        if name == 'openui':
            # The seed's open web UI without users: the generated admin is named.
            c.equal(len(r['warnings']), 1, f'{label}: one warning ({r["warnings"]})')
            c.check(has_warning(r, 'no usersFile', 'web-ui-initial-admin', 'sudo cat'),
                    f'{label}: the warning names the generated admin\'s file')
        else:
            c.equal(r['warnings'], [], f'{label}: no warning')
        if r['sudoRules'] and shutil.which('visudo'):
            visudo_check(c, r['sudoRules'], tmp, label.replace(':', '-'))
        for unit, u in sorted(r['services'].items()):
            if not unit.startswith('skypilot-'):
                continue
            text = render_unit(unit, u)
            verify_unit(c, stub, label, f'{unit}.service', text, u)
            scores.setdefault(label, {})[unit] = security_score(stub, f'{unit}.service')
    check_test_script(c, vm['testScript'], nodes, tmp)
    return nodes


# ------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nixpkgs-lib', required=True, help="nixpkgs' lib directory")
    ap.add_argument('--host-bin', required=True, help='skypilot-host binary for check-config')
    ap.add_argument('--scores', help='write the exposure scores here (JSON)')
    a = ap.parse_args()
    global SEED_KEYS
    SEED_KEYS = json.loads(subprocess.run([a.host_bin, 'sky-config', 'seed-keys'],
                                          capture_output=True, text=True, check=True).stdout)
    c = Checks()
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        stub = StubRoot(tmp)
        rendered = 0
        sudoers_checked = 0
        cases = nix_eval(a.nixpkgs_lib, list=True)
        c.equal(sorted(cases), sorted(list(EXPECT) + list(EVAL_ERRORS)),
                'every case has expectations')
        for case in cases:
            print(f'== case {case}')
            if case in EVAL_ERRORS:
                p = subprocess.run(['nix-instantiate', '--eval', '--strict', '--json', EVAL,
                                    '--arg', 'nixpkgsLib', a.nixpkgs_lib, '--argstr', 'case',
                                    case], capture_output=True, text=True)
                c.check(p.returncode != 0 and all(x in p.stderr for x in EVAL_ERRORS[case]),
                        f'{case}: evaluation refused, naming {EVAL_ERRORS[case]}: '
                        f'rc={p.returncode} {p.stderr.strip()[-400:]}')
                continue
            try:
                r = nix_eval(a.nixpkgs_lib, case=case)
            except RuntimeError as e:
                c.check(False, f'{case}: {e}')
                continue
            if case in EXPECT:
                EXPECT[case](c, r, case)
            if r['failedAssertions']:
                # NixOS refuses to build these: their units are never written.
                continue
            for unit, u in sorted(r['services'].items()):
                name = f'{unit}.service'
                verify_unit(c, stub, case, name, render_unit(unit, u), u)
                scores.setdefault(case, {})[unit] = security_score(stub, name)
            if r['sudoRules']:
                if shutil.which('visudo'):
                    visudo_check(c, r['sudoRules'], tmp, case)
                    sudoers_checked += 1
            for unit, u in sorted(r['timers'].items()):
                verify_unit(c, stub, case, f'{unit}.timer', render_unit(unit, u, 'timer'), u)
            if r['skypilot']:
                rc, out = check_config(a.host_bin, r['skypilot']['settings'], tmp, case)
                if case in BAD_SETTINGS:
                    c.check(rc == 1 and BAD_SETTINGS[case] in out,
                            f'{case}: check-config refuses it naming the key: rc={rc} {out}')
                else:
                    c.check(rc == 0, f'{case}: rendered host config passes check-config: {out}')
                if os.environ.get('SKYPILOT_CONFIG_SCHEMA'):
                    rc, out, n = render_sky_config(a.host_bin, r['skypilot']['config'], tmp,
                                                   case, r['skypilot'].get('launchDefaults'))
                    if case in BAD_SKY_CONFIG:
                        c.check(rc != 0 and BAD_SKY_CONFIG[case] in out,
                                f'{case}: sky-config render refuses it naming the key: {out}')
                    else:
                        c.check(rc == 0, f'{case}: config renders and passes sky-config '
                                         f'check: {out}')
                        mine = [w for w in r['warnings'] if 'services.skypilot.config.' in w]
                        c.equal(n, len(mine), f'{case}: as many render warnings as module '
                                              'warnings about config keys')
                    rendered += 1
        run_vm_checks(c, a.nixpkgs_lib, stub, tmp, scores)
    if sudoers_checked:
        print(f'visudo -c run on the sudo rules of {sudoers_checked} cases')
    else:
        print('visudo check of the sudo rules DID NOT RUN: visudo not found')
    if rendered:
        print(f'sky-config render + check run on {rendered} cases (SKYPILOT_CONFIG_SCHEMA set)')
    else:
        print('sky-config render of the cases DID NOT RUN: SKYPILOT_CONFIG_SCHEMA is not set')

    print('== systemd-analyze security --offline=true (exposure, lower is better)')
    for label, units in sorted(scores.items()):
        for unit, (score, level) in sorted(units.items()):
            print(f'  {label:28} {unit:26} {score:4.1f} {level}')
            if unit in HOST_UNITS:
                c.check(score <= MAX_HOST_EXPOSURE,
                        f'{label}: {unit} exposure {score} > {MAX_HOST_EXPOSURE}')
    if a.scores:
        with open(a.scores, 'w', encoding='utf-8') as f:
            json.dump(scores, f, indent=1, sort_keys=True)
    print(f'nix evaluation checks: {c.passed} passed, {len(c.failures)} failed')
    return 1 if c.failures else 0


if __name__ == '__main__':
    sys.exit(main())
