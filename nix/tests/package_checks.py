#!/usr/bin/env python3
"""Runs what the package recipes render in conditions like Nix's build sandbox (run by
scripts/module-run.sh). Nothing is built with Nix here: nix/tests/packages.nix evaluates the
recipes' attributes, and this script carries out the parts that failed in the sandbox.

  SkyPilot (nix/skypilot.nix): the imports check (pythonImportsCheck) runs after fixup in the
    same shell, with HOME unwritable (/homeless-shelter in the sandbox; here a path under
    /proc, which not even root can create). Emulated: postFixup, then the import of every
    module of pythonImportsCheck with the SkyPilot venv's Python. The step of postInstall
    that applies nix/patches/ runs on a copy of the venv's released `sky` package, and the
    patched package is imported from there.
  skypilot-host (nix/package.nix): the check phase runs `cargo test <cargoTestFlags> --
    <checkFlags>` in the recipe's source (only the paths of its fileset, copied) with only
    cargo on PATH: no promtool, no curl, no contrib/, no SkyPilot.

Usage: package_checks.py --nixpkgs-lib DIR --venv DIR [--skip-cargo]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import check  # noqa: E402

UNWRITABLE_HOME = '/proc/homeless-shelter'


def evaluate(nixpkgs_lib):
    p = subprocess.run(['nix-instantiate', '--eval', '--strict', '--json',
                        os.path.join(HERE, 'packages.nix'), '--arg', 'nixpkgsLib', nixpkgs_lib],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f'package_checks.py: evaluating nix/tests/packages.nix failed:\n'
                         f'{p.stderr}')
    return json.loads(p.stdout)


def check_imports(c, attrs, venv, tmp):
    mods = attrs['pythonImportsCheck']
    c.check('sky' in mods and 'sky.server.server' in mods,
            f'skypilot: pythonImportsCheck covers sky and the server module: {mods}')
    out = os.path.join(tmp, 'out')
    os.makedirs(out)
    script = ('set -euo pipefail\n'
              f'{attrs.get("postFixup") or ""}\n'
              f'exec {venv}/bin/python3 -c "import importlib, sys; '
              '[importlib.import_module(m) for m in sys.argv[1:]]" "$@"\n')
    env = {'PATH': '/usr/bin:/bin', 'HOME': UNWRITABLE_HOME, 'TMPDIR': tmp, 'out': out,
           'LANG': 'C.UTF-8'}
    p = subprocess.run(['bash', '-c', script, 'imports-check', *mods], env=env, cwd=tmp,
                       capture_output=True, text=True)
    c.check(p.returncode == 0,
            f'skypilot: postFixup then the imports check, HOME unwritable: rc={p.returncode} '
            f'{p.stderr.strip()[-600:]}')


def check_patches(c, attrs, venv, tmp):
    python = os.path.join(venv, 'bin', 'python3')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'],
                          capture_output=True, text=True, check=True).stdout.strip()
    out = os.path.join(tmp, 'patched')
    target = os.path.join(out, 'lib', 'python3', 'site-packages')
    shutil.copytree(os.path.join(site, 'sky'), os.path.join(target, 'sky'))
    common = os.path.join(target, 'sky', 'catalog', 'common.py')
    with open(common, encoding='utf-8') as f:
        released = f.read()
    c.check('_request_cached_lookup' not in released,
            f'skypilot: {venv} holds the released SkyPilot (the patch is not in it yet)')
    # The store paths of the patches, swapped for the files they are copies of.
    patches_dir = os.path.join(os.path.dirname(HERE), 'patches')
    step = re.sub(r'/nix/store/[0-9a-z]{32}-([^/\s]+\.patch)',
                  lambda m: os.path.join(patches_dir, m.group(1)), attrs['applySitePatches'])
    in_step = set(re.findall(r'/nix/store/[0-9a-z]{32}-([^/\s]+\.patch)', attrs['applySitePatches']))
    on_disk = {f for f in os.listdir(patches_dir) if f.endswith('.patch')}
    c.check(in_step == on_disk,
            f'skypilot: the package applies every patch of nix/patches/ and no other: '
            f'applied {sorted(in_step)}, present {sorted(on_disk)}')
    script = 'set -euo pipefail\n' + step.replace('@python@', python)
    env = {'PATH': '/usr/bin:/bin', 'HOME': UNWRITABLE_HOME, 'out': out, 'LANG': 'C.UTF-8'}
    p = subprocess.run(['bash', '-c', script], env=env, cwd=tmp, capture_output=True, text=True)
    c.check(p.returncode == 0,
            f'skypilot: the patch step of postInstall runs: rc={p.returncode} '
            f'{(p.stdout + p.stderr).strip()[-600:]}')
    c.check(attrs['applySitePatches'].replace('@python@', '/python/bin/python3')
            in attrs['postInstall'], 'skypilot: postInstall applies the patches')
    for module in (('catalog', 'common'), ('server', 'requests', 'executor')):
        pycache = os.path.join(target, 'sky', *module[:-1], '__pycache__')
        pycs = ([f for f in os.listdir(pycache) if f.startswith(module[-1] + '.')]
                if os.path.isdir(pycache) else [])
        flags = []
        for f in pycs:
            with open(os.path.join(pycache, f), 'rb') as fh:
                flags.append(int.from_bytes(fh.read(8)[4:8], 'little'))
        # PEP 552: flags 0b01 = hash-based, not checked against the source.
        c.check(bool(pycs) and all(fl == 1 for fl in flags),
                f'skypilot: the patched module sky.{".".join(module)} compiled again, '
                f'unchecked-hash: {pycs} {flags}')
    home = os.path.join(tmp, 'patched-home')
    os.makedirs(home)
    probe = ('import sky.catalog.common as c, sys; '
             'assert c.__file__.startswith(sys.argv[1]), c.__file__; '
             'assert hasattr(c, "_request_cached_lookup"); '
             'assert hasattr(c.get_vcpus_mem_from_instance_type_impl, "__wrapped__"); '
             'import inspect, sky.server.requests.executor as e; '
             'assert "gc.freeze()" in inspect.getsource(e.executor_initializer)')
    p = subprocess.run([python, '-c', probe, target],
                       env={'PATH': '/usr/bin:/bin', 'HOME': home, 'PYTHONPATH': target,
                            'SKYPILOT_DISABLE_USAGE_COLLECTION': '1', 'LANG': 'C.UTF-8'},
                       capture_output=True, text=True)
    c.check(p.returncode == 0,
            f'skypilot: the patched SkyPilot imports and is the patched one: '
            f'{p.stderr.strip()[-600:]}')


def check_cargo(c, attrs, tmp):
    c.check(attrs['doCheck'], 'skypilot-host: the check phase runs')
    src = os.path.join(tmp, 'source')
    os.makedirs(src)
    root = attrs['root']
    for path in attrs['src']:
        rel = os.path.relpath(path, root)
        dst = os.path.join(src, rel)
        # Fresh modification times: the build shares the repository's target directory,
        # where an earlier check's crate (compiled in another temporary source, whose
        # paths its tests embed) would otherwise count as up to date.
        if os.path.isdir(path):
            shutil.copytree(path, dst, copy_function=shutil.copy)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(path, dst)
    c.check(not os.path.exists(os.path.join(src, 'contrib')), 'skypilot-host: no contrib/')
    cargo = shutil.which('cargo')
    rustc = shutil.which('rustc')
    if cargo is None or rustc is None:
        c.check(False, 'skypilot-host: cargo and rustc on PATH')
        return
    bins = sorted({os.path.dirname(os.path.realpath(x)) for x in (cargo, rustc)}
                  | {os.path.dirname(cargo)})
    # The stdenv's C compiler and binutils are in the sandbox too (build scripts of
    # dependencies compile C).
    linker = os.path.join(tmp, 'stdenv')
    os.makedirs(linker)
    for tool in ('cc', 'c++', 'ld', 'as', 'ar', 'ranlib', 'strip', 'nm', 'make'):
        t = shutil.which(tool)
        if t:
            os.symlink(t, os.path.join(linker, tool))
    env = {'PATH': ':'.join(bins + [linker]), 'HOME': os.environ.get('HOME', '/root'),
           'CARGO_TARGET_DIR': os.path.abspath(os.environ.get('CARGO_TARGET_DIR', 'target')),
           'LANG': 'C.UTF-8'}
    for k in ('RUSTUP_HOME', 'CARGO_HOME', 'RUSTUP_TOOLCHAIN'):
        if k in os.environ:
            env[k] = os.environ[k]
    for tool in ('promtool', 'curl'):
        c.check(shutil.which(tool, path=env['PATH']) is None,
                f'skypilot-host: {tool} is not on the check phase\'s PATH')
    argv = ['cargo', 'test', '--offline', *attrs['cargoTestFlags'], '--', *attrs['checkFlags']]
    print(f'-- {" ".join(argv)} (in the recipe\'s source, PATH={env["PATH"]})', flush=True)
    # Output to a file, not a pipe: a test that leaves a child behind must not hold the run.
    log_path = os.path.join(tmp, 'cargo-test.log')
    with open(log_path, 'w', encoding='utf-8') as log:
        p = subprocess.run(argv, cwd=src, env=env, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path, encoding='utf-8', errors='replace') as log:
        out = log.read()
    results = [ln for ln in out.splitlines() if ln.startswith('test result:')]
    failed = [ln for ln in out.splitlines() if ln.endswith('... FAILED')]
    print('\n'.join(f'    {ln}' for ln in results + failed))
    c.check(p.returncode == 0 and bool(results),
            f'skypilot-host: {" ".join(argv)} passes without promtool, curl, contrib/ and '
            f'SkyPilot: rc={p.returncode}' + (f'\n{out[-1500:]}' if p.returncode else ''))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--nixpkgs-lib', required=True)
    ap.add_argument('--venv', required=True)
    ap.add_argument('--skip-cargo', action='store_true')
    a = ap.parse_args()
    c = check.Checks()
    attrs = evaluate(a.nixpkgs_lib)
    with tempfile.TemporaryDirectory(prefix='skypilot-package-') as tmp:
        check_imports(c, attrs['skypilot'], os.path.abspath(a.venv), tmp)
        check_patches(c, attrs['skypilot'], os.path.abspath(a.venv), tmp)
        if not a.skip_cargo:
            check_cargo(c, attrs['skypilot-host'], tmp)
    print(f'package checks: {c.passed} passed, {len(c.failures)} failed')
    return 1 if c.failures else 0


if __name__ == '__main__':
    sys.exit(main())
