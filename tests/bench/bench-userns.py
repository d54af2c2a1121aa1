#!/usr/bin/env python3
"""Benchmark of runs for callers that are not root (not a test: it prints figures).

    tests/bench/bench-userns.py [--repeat 21]

In the private environment of the integration tests (tools/kiln-env), as kiln-alice (user
namespace, ID-mapped layers, kiln-runtime-ns) and as root (no user namespace), prints:
  - the median wall time of `kiln from` as kiln-alice from an already-imported base of 2 MB and
    of 200 MB (creation must stay flat: the layers are ID-mapped, never copied or chowned);
  - the median wall time of `kiln run B /bin/true` as kiln-alice and as root, interleaved, each
    through runuser so both pay the same client start-up, and their ratio (goal: at most 1.2x).
Run as root from the source tree after a build (default build dir: ./build).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, median_ms, timed  # noqa: E402

ALICE = 'kiln-alice'


def make_base(path, extra_mib):
    kh.make_busybox_rootfs(path)
    os.chmod(os.path.join(path, 'root'), 0o755)  # kiln-import reads the base as the caller
    if extra_mib:
        with open(os.path.join(path, 'payload.bin'), 'wb') as f:
            chunk = os.urandom(1 << 20)
            for _ in range(extra_mib):
                f.write(chunk)
        os.chmod(os.path.join(path, 'payload.bin'), 0o644)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=21)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')

    env = kh.Env().setup('[Process]\nLingerSeconds=0\n')
    try:
        envvars = dict(os.environ)
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')

        def as_user(user, *argv):
            return ['runuser', '-u', user, '--', kiln, *argv]

        client = [timed(['runuser', '-u', ALICE, '--', 'true'], env=envvars) for _ in range(args.repeat)]
        print(f'runuser -u {ALICE} true (client start-up, in every figure below): '
              f'median {median_ms(client):.1f} ms')

        for label, extra in (('2 MB', 0), ('200 MB', 198)):
            base = env.scratch_dir(f'base-{extra}')
            make_base(base, extra)
            first = timed(as_user(ALICE, 'from', '--name', f'first-{extra}', base), env=envvars)
            samples = [timed(as_user(ALICE, 'from', '--name', f'b{extra}-{i}', base), env=envvars)
                       for i in range(args.repeat)]
            print(f'create as {ALICE} (userns=auto) from a {label} base: first import {first * 1000:.0f} ms, '
                  f'then median {median_ms(samples):.1f} ms over {args.repeat}')

        base = env.scratch_dir('base-run')
        make_base(base, 0)
        timed(as_user(ALICE, 'from', '--name', 'alice-run', base), env=envvars)
        timed([kiln, 'from', '--name', 'root-run', base], env=envvars)
        alice_run = as_user(ALICE, 'run', 'alice-run', '/bin/true')
        root_run = as_user('root', 'run', 'root-run', '/bin/true')
        timed(alice_run, env=envvars)  # warm: the pool allotment, runc's first start
        timed(root_run, env=envvars)
        alice, root = [], []
        for _ in range(args.repeat):
            alice.append(timed(alice_run, env=envvars))
            root.append(timed(root_run, env=envvars))
        a, r = median_ms(alice), median_ms(root)
        print(f'kiln run B /bin/true as {ALICE} (userns=auto): median {a:.1f} ms')
        print(f'kiln run B /bin/true as root (userns=host):      median {r:.1f} ms')
        print(f'ratio: {a / r:.2f}x (goal: at most 1.2x)')
    finally:
        env.stop()


if __name__ == '__main__':
    main()
