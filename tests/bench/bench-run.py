#!/usr/bin/env python3
"""Benchmark of Run (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-run.py [--repeat 21] [--leak-runs 1000]

In one run, on the same busybox root file system, prints the median wall time of
  - `kiln run B /bin/true` (the CLI, through kilnd, runc);
  - `buildah run --isolation oci --runtime runc` of a scratch container holding the same files
    (buildah from Debian, vfs storage in a private directory);
  - a bare `runc run` of the bundle kilnd generated for the same command (what a user would type);
  - a bare `runc create`, `start`, wait, `delete` of the same bundle
    (same config.json, same generated files, the same overlay root kept mounted with `kiln mount`),
    the sequence kilnd drove before it used `run --detach`, with this script as the child subreaper
    that reaps the container's process as kilnd does;
and the ratios. Then kilnd's RSS after 10 runs and after --leak-runs runs.
Run as root from the source tree after a build.
"""
import argparse
import ctypes
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, buildah_container, median_ms, rss_kib, timed  # noqa: E402


PR_SET_CHILD_SUBREAPER = 36


def bare_runc(runc_root, bundle, name):
    """create, start, wait for the container's process, delete: what kilnd did, with nothing around it."""
    pid_file = os.path.join(bundle, f'{name}.pid')
    start = time.perf_counter()
    subprocess.run(['runc', '--root', runc_root, 'create', '--bundle', bundle, '--pid-file', pid_file, '--', name],
                   check=True, stdout=subprocess.DEVNULL)
    with open(pid_file) as f:
        pid = int(f.read())
    subprocess.run(['runc', '--root', runc_root, 'start', '--', name], check=True)
    os.waitpid(pid, 0)
    subprocess.run(['runc', '--root', runc_root, 'delete', '--force', '--', name], check=True)
    elapsed = time.perf_counter() - start
    os.unlink(pid_file)
    return elapsed


def bare_runc_run(runc_root, bundle, name):
    """`runc run`: what a user would type instead of kiln, one execution of runc."""
    start = time.perf_counter()
    subprocess.run(['runc', '--root', runc_root, 'run', '--bundle', bundle, '--', name], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def bare_bundle(env, kiln, builder, work):
    """Copies the bundle kilnd writes for `sleep 30` and makes it run /bin/true."""
    proc = subprocess.Popen([kiln, 'run', builder, '--', 'sleep', '30'])
    bundles = os.path.join(env.dir, 'run', 'bundles')
    for _ in range(200):
        found = glob.glob(os.path.join(bundles, '*', 'config.json'))
        if found:
            break
        time.sleep(0.05)
    bundle = os.path.dirname(found[0])
    dest = os.path.join(work, 'bare-bundle')
    shutil.copytree(bundle, dest)
    proc.terminate()
    proc.wait()
    with open(os.path.join(dest, 'config.json')) as f:
        spec = json.load(f)
    spec['process']['args'] = ['/bin/true']
    spec['process']['terminal'] = False
    for mount in spec.get('mounts', []):
        if mount.get('source', '').startswith(bundle):
            mount['source'] = dest + mount['source'][len(bundle):]
    with open(os.path.join(dest, 'config.json'), 'w') as f:
        json.dump(spec, f)
    return dest


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=21)
    parser.add_argument('--leak-runs', type=int, default=1000)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    # The bare sequence reaps the container's process itself, as kilnd does.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if not shutil.which('buildah'):
        sys.exit('buildah is not installed (apt-get install buildah)')

    with kh.Env() as env, tempfile.TemporaryDirectory(prefix='kiln-bench-') as work:
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        rootfs = os.path.join(work, 'rootfs')
        kh.make_busybox_rootfs(rootfs)
        subprocess.run([kiln, 'from', '--name', 'bench', rootfs], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([kiln, 'mount', 'bench'], check=True, stdout=subprocess.DEVNULL)
        bundle = bare_bundle(env, kiln, 'bench', work)
        storage, ctr = buildah_container(rootfs, work)
        runc_root = os.path.join(work, 'runc-root')

        # Warm every path once, then interleave so drift hits all three alike.
        kiln_t, buildah_t, runc_t, run_t = [], [], [], []
        for i in range(args.repeat + 1):
            k = timed([kiln, 'run', 'bench', '/bin/true'])
            b = timed(['buildah', *storage, 'run', '--isolation', 'oci', '--runtime', 'runc', ctr, '/bin/true'])
            r = bare_runc(runc_root, bundle, f'bare-{i}')
            u = bare_runc_run(runc_root, bundle, f'bare-run-{i}')
            if i:
                kiln_t.append(k)
                buildah_t.append(b)
                runc_t.append(r)
                run_t.append(u)
        k, b, r, u = median_ms(kiln_t), median_ms(buildah_t), median_ms(runc_t), median_ms(run_t)
        print(f'median of {args.repeat}: kiln run {k:.1f} ms, buildah run {b:.1f} ms, '
              f'bare runc run {u:.1f} ms, bare runc create/start/delete {r:.1f} ms')
        print(f'kiln / bare runc run = {k / u:.2f}x; kiln / bare runc create/start/delete = {k / r:.2f}x; '
              f'buildah / kiln = {b / k:.2f}x')

        # Exited Process objects linger (60 s by default) so late Wait calls answer; for the memory
        # figure they must go soon, or 1,000 lingering objects would be counted as growth. Not at
        # once: a command that exits before the CLI's Wait would find no object.
        with open(os.path.join(env.dir, 'kiln.conf.extra'), 'w') as f:
            f.write('[Process]\nLingerSeconds=2\n')
        subprocess.run([kiln, 'umount', 'bench'], check=True)
        env.restart_kilnd()
        with open(os.path.join(env.dir, 'kilnd.pid')) as f:
            pid = int(f.read())
        for _ in range(10):
            timed([kiln, 'run', 'bench', '/bin/true'])
        time.sleep(1)
        after_10 = rss_kib(pid)
        for _ in range(max(args.leak_runs - 10, 0)):
            timed([kiln, 'run', 'bench', '/bin/true'])
        time.sleep(3)  # the last lingering objects gone
        after_n = rss_kib(pid)
        print(f'kilnd RSS after 10 runs: {after_10 / 1024:.1f} MiB; after {args.leak_runs}: '
              f'{after_n / 1024:.1f} MiB')
        subprocess.run(['buildah', *storage, 'rm', ctr], stdout=subprocess.DEVNULL)


if __name__ == '__main__':
    main()
