#!/usr/bin/env python3
"""Benchmark of the chroot isolation end to end (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-chroot.py [--repeat 51]

In one run, on the same busybox root file system, prints the median wall time of
  - `kiln run --isolation chroot B /bin/true`: the CLI, through a private bus, polkitd and kilnd
    (tools/kiln-env, as the integration tests start them), kiln-isolate;
  - `buildah run --isolation chroot` of a scratch working container holding the same files
    (buildah from Debian, vfs storage in a private directory, no network);
  - a bare `unshare --mount --pid --fork --uts --ipc --net chroot ROOTFS /bin/true`;
interleaved so that drift hits all three alike, and the ratios against issue 5's goals: kiln at most
15 ms and at most 3x the bare unshare, and at least 20x faster than buildah's chroot.
Run as root from the source tree after a build.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, buildah_container, median_ms, timed  # noqa: E402

GOAL_MS = 15.0
GOAL_BARE_RATIO = 3.0
GOAL_BUILDAH_SPEEDUP = 20.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=51)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    if not shutil.which('buildah'):
        sys.exit('buildah is not installed (apt-get install buildah)')

    with kh.Env() as env, tempfile.TemporaryDirectory(prefix='kiln-bench-chroot-') as work:
        os.chmod(work, 0o755)
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        rootfs = kh.make_busybox_rootfs(os.path.join(work, 'rootfs'))
        subprocess.run([kiln, 'from', '--name', 'bench', rootfs], check=True, stdout=subprocess.DEVNULL)
        storage, ctr = buildah_container(rootfs, work)

        commands = {
            'kiln': [kiln, 'run', '--isolation', 'chroot', 'bench', '/bin/true'],
            'buildah': ['buildah', *storage, 'run', '--isolation', 'chroot', ctr, '/bin/true'],
            'bare': ['unshare', '--mount', '--pid', '--fork', '--uts', '--ipc', '--net', 'chroot', rootfs,
                     '/bin/true'],
        }
        # Warm every path once (kiln-isolate's seccomp filter cache included), then interleave.
        samples = {name: [] for name in commands}
        for i in range(args.repeat + 1):
            for name, cmd in commands.items():
                t = timed(cmd)
                if i:
                    samples[name].append(t)
        subprocess.run(['buildah', *storage, 'rm', ctr], stdout=subprocess.DEVNULL)

    k, b, u = (median_ms(samples[n]) for n in ('kiln', 'buildah', 'bare'))
    print(f'median of {args.repeat} interleaved runs of /bin/true on the same root file system:')
    print(f'  kiln run --isolation chroot     {k:7.2f} ms')
    print(f'  buildah run --isolation chroot  {b:7.2f} ms')
    print(f'  unshare ... chroot (bare)       {u:7.2f} ms')
    goals = [
        (f'kiln <= {GOAL_MS:.0f} ms', f'{k:.2f} ms', k <= GOAL_MS),
        (f'kiln <= {GOAL_BARE_RATIO:.0f}x bare', f'{k / u:.2f}x', k <= GOAL_BARE_RATIO * u),
        (f'buildah / kiln >= {GOAL_BUILDAH_SPEEDUP:.0f}x', f'{b / k:.1f}x', b >= GOAL_BUILDAH_SPEEDUP * k),
    ]
    for goal, figure, met in goals:
        print(f'  {goal:24s} {figure:>10s}  {"met" if met else "NOT met"}')
    print(f'issue 5 goals: {"all met" if all(m for _, _, m in goals) else "NOT all met"}')


if __name__ == '__main__':
    main()
