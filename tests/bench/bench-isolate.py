#!/usr/bin/env python3
"""Benchmark of kiln-isolate, the chroot isolation's executor (not a test: it prints figures).

    KILN_BUILD_ROOT=BUILD tests/bench/bench-isolate.py [--repeat 21]

On one busybox root file system and one bundle written by the project's generator (kilnd's defaults:
private namespaces, the default seccomp profile, generated /etc files), prints the median wall time of
  - `kiln-isolate run` of /bin/true (seccomp filter from the cache, as every run after the first);
  - the same without the cache (the filter compiled by libseccomp each time);
  - `kiln-isolate create`, `start`, wait, `delete`: runc's sequence, with this script as the child
    subreaper, as kilnd is;
  - `kiln-isolate run --detach`, wait, remove the state: what kilnd's runtime driver does;
  - `runc run` of the same bundle, when runc is installed;
  - a bare `unshare --mount --pid --fork --uts --ipc --net chroot ROOTFS /bin/true`;
and the ratios against issue 5's goal (chroot isolation at most 15 ms and 3x the bare unshare).
Run as root after a build (default build dir: ./build).
"""
import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, median_ms, timed  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36


def isolate_sequence(isolate, root, cache, bundle, name):
    """create, start, wait for the init, delete: runc's sequence, with nothing around it."""
    pid_file = os.path.join(bundle, f'{name}.pid')
    start = time.perf_counter()
    subprocess.run([isolate, '--root', root, '--cache-dir', cache, 'create', '--bundle', bundle,
                    '--pid-file', pid_file, '--', name], check=True, stdout=subprocess.DEVNULL)
    with open(pid_file) as f:
        pid = int(f.read())
    subprocess.run([isolate, '--root', root, 'start', '--', name], check=True)
    os.waitpid(pid, 0)
    subprocess.run([isolate, '--root', root, 'delete', '--force', '--', name], check=True)
    elapsed = time.perf_counter() - start
    os.unlink(pid_file)
    return elapsed


def isolate_detached(isolate, root, cache, bundle, name):
    """run --detach, wait for the command as its subreaper, remove the state: what kilnd's driver does."""
    pid_file = os.path.join(bundle, f'{name}.pid')
    start = time.perf_counter()
    subprocess.run([isolate, '--root', root, '--cache-dir', cache, 'run', '--detach', '--bundle', bundle,
                    '--pid-file', pid_file, '--', name], check=True, stdout=subprocess.DEVNULL)
    with open(pid_file) as f:
        pid = int(f.read())
    os.waitpid(pid, 0)
    shutil.rmtree(os.path.join(root, name))
    elapsed = time.perf_counter() - start
    os.unlink(pid_file)
    return elapsed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=21)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    isolate = os.path.join(kh.BUILD_ROOT, 'service', 'kiln-isolate')
    make_bundle = os.path.join(kh.BUILD_ROOT, 'tests', 'isolate', 'make-bundle')
    profile = os.path.join(kh.SOURCE_ROOT, 'data', 'seccomp', 'default.json')
    for path in (isolate, make_bundle):
        if not os.access(path, os.X_OK):
            sys.exit(f'{path} is missing: build first (ninja -C {kh.BUILD_ROOT})')
    runc = shutil.which('runc')

    with tempfile.TemporaryDirectory(prefix='kiln-bench-isolate-') as work:
        os.chmod(work, 0o755)
        rootfs = kh.make_busybox_rootfs(os.path.join(work, 'rootfs'))
        bundle = os.path.join(work, 'bundle')
        subprocess.run([make_bundle, '--seccomp', profile, rootfs, bundle, '--', '/bin/true'], check=True)
        root, cache = os.path.join(work, 'state'), os.path.join(work, 'cache')
        runc_root = os.path.join(work, 'runc-state')

        run_cached = [isolate, '--root', root, '--cache-dir', cache, 'run', '--bundle', bundle, '--', 'bench']
        run_uncached = [isolate, '--root', root, '--cache-dir', 'none', 'run', '--bundle', bundle, '--', 'bench']
        bare = ['unshare', '--mount', '--pid', '--fork', '--uts', '--ipc', '--net', 'chroot', rootfs, '/bin/true']

        # Warm every path once (and fill the filter cache), then interleave so drift hits all alike.
        samples = {'run': [], 'run-uncached': [], 'sequence': [], 'detached': [], 'runc': [], 'bare': []}
        for i in range(args.repeat + 1):
            times = {
                'run': timed(run_cached),
                'run-uncached': timed(run_uncached),
                'sequence': isolate_sequence(isolate, root, cache, bundle, f'bench-{i}'),
                'detached': isolate_detached(isolate, root, cache, bundle, f'detached-{i}'),
                'bare': timed(bare),
            }
            if runc:
                times['runc'] = timed([runc, '--root', runc_root, 'run', '--bundle', bundle, '--', f'runc-{i}'])
            if i:
                for k, v in times.items():
                    samples[k].append(v)

    m = {k: median_ms(v) for k, v in samples.items() if v}
    print(f'median of {args.repeat} runs of /bin/true on the same root file system and config.json:')
    print(f'  kiln-isolate run (cached filter)      {m["run"]:7.2f} ms   {m["run"] / m["bare"]:.2f}x bare')
    print(f'  kiln-isolate run (filter compiled)    {m["run-uncached"]:7.2f} ms   '
          f'{m["run-uncached"] / m["bare"]:.2f}x bare')
    print(f'  kiln-isolate create/start/delete      {m["sequence"]:7.2f} ms   {m["sequence"] / m["bare"]:.2f}x bare')
    print(f'  kiln-isolate run --detach, wait       {m["detached"]:7.2f} ms   {m["detached"] / m["bare"]:.2f}x bare')
    if 'runc' in m:
        print(f'  runc run                              {m["runc"]:7.2f} ms   {m["runc"] / m["bare"]:.2f}x bare')
    print(f'  unshare ... chroot (bare)             {m["bare"]:7.2f} ms')
    ok = m['run'] <= 15.0 and m['run'] <= 3 * m['bare']
    print(f'goal (<= 15 ms and <= 3x bare) for kiln-isolate run: {"met" if ok else "NOT met"}')


if __name__ == '__main__':
    main()
