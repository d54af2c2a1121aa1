#!/usr/bin/env python3
"""Benchmark of concurrent runs (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-throughput.py [--clients 10] [--runs 20] [--isolation oci]

N clients at once, each running `/bin/true` --runs times in its own builder, one after the other:
runs per second over the whole batch, for
  - `kiln run` (N builders of the same busybox root file system, through one kilnd);
  - `buildah run --isolation oci --runtime runc` (N scratch containers holding the same files, vfs
    storage in a private directory), the same concurrency;
in the same run, and the ratio. Also kilnd's RSS before and after. Run as root from the source tree
after a build; the build type is printed.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, buildah_container, rss_kib  # noqa: E402


def batch(commands, runs):
    """Runs every command @runs times, one thread per command, all at once; returns (seconds, failures)."""
    failures = []
    barrier = threading.Barrier(len(commands) + 1)

    def client(cmd):
        barrier.wait()
        for _ in range(runs):
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                failures.append(f'{" ".join(cmd)}: {r.returncode} {r.stderr.strip()}')

    threads = [threading.Thread(target=client, args=(c,)) for c in commands]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--clients', type=int, default=10)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--isolation', default='oci', choices=('oci', 'chroot'))
    args = parser.parse_args()
    kh.require_root()
    if not shutil.which('buildah'):
        sys.exit('buildah is not installed (apt-get install buildah)')
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    print(f'{args.clients} clients x {args.runs} runs of /bin/true, isolation {args.isolation}, '
          f'{os.cpu_count()} CPUs')

    with kh.Env() as env, tempfile.TemporaryDirectory(prefix='kiln-bench-') as work:
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        rootfs = os.path.join(work, 'rootfs')
        kh.make_busybox_rootfs(rootfs)
        names = [f'tp{i}' for i in range(args.clients)]
        for name in names:
            subprocess.run([kiln, 'from', '--name', name, rootfs], check=True, stdout=subprocess.DEVNULL)
        containers = []
        storage = None
        for _ in range(args.clients):
            storage, ctr = buildah_container(rootfs, work)
            containers.append(ctr)
        with open(os.path.join(env.dir, 'kilnd.pid')) as f:
            pid = int(f.read())

        kiln_cmds = [[kiln, 'run', '--isolation', args.isolation, n, '/bin/true'] for n in names]
        buildah_cmds = [['buildah', *storage, 'run', '--isolation',
                         'oci' if args.isolation == 'oci' else 'chroot', '--runtime', 'runc', c, '/bin/true']
                        for c in containers]
        # One warm-up of each, then the batches, kiln first and last so drift shows.
        batch(kiln_cmds, 1)
        batch(buildah_cmds, 1)
        rss_before = rss_kib(pid)
        k1, kf1 = batch(kiln_cmds, args.runs)
        b, bf = batch(buildah_cmds, args.runs)
        k2, kf2 = batch(kiln_cmds, args.runs)
        rss_after = rss_kib(pid)
        for f in (kf1 + kf2 + bf)[:5]:
            print(f'failed: {f}')
        total = args.clients * args.runs
        k = min(k1, k2)
        print(f'kiln: {total / k1:.1f} and {total / k2:.1f} runs/s ({len(kf1) + len(kf2)} failed); '
              f'buildah: {total / b:.1f} runs/s ({len(bf)} failed)')
        print(f'kiln / buildah throughput = {(total / k) / (total / b):.2f}x')
        print(f'kilnd RSS: {rss_before / 1024:.1f} MiB before, {rss_after / 1024:.1f} MiB after '
              f'{2 * total} concurrent runs')
        for c in containers:
            subprocess.run(['buildah', *storage, 'rm', c], stdout=subprocess.DEVNULL)


if __name__ == '__main__':
    main()
