#!/usr/bin/env python3
"""Benchmark of the service core (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-core.py [--builders 1000] [--repeat 15]

Starts the same private environment as the integration tests (tools/kiln-env), then measures:
  - creating a builder with the CLI from an already-imported directory of 2 MB and of 200 MB
    (median wall time; creation must not grow with the size of the base);
  - kilnd's resident memory idle, and with N builders;
  - ListBuilders and GetManagedObjects latency with N builders, as seen by busctl, next to a
    Peer.Ping through the same client (the cost of the client itself).
Run as root from the source tree after a build (tools/kiln-dev test builds build/).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, median_ms, rss_kib, timed  # noqa: E402


def cpu_ms(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf('SC_CLK_TCK')


def kilnd_pid(env):
    with open(os.path.join(env.dir, 'kilnd.pid')) as f:
        return int(f.read().strip())


def make_base(path, extra_mib):
    kh.make_busybox_rootfs(path)
    if extra_mib:
        with open(os.path.join(path, 'payload.bin'), 'wb') as f:
            chunk = os.urandom(1 << 20)
            for _ in range(extra_mib):
                f.write(chunk)


def du_mib(path):
    out = subprocess.run(['du', '-sm', path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--builders', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=15)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')

    with kh.Env() as env:
        envvars = dict(os.environ)
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        pid = kilnd_pid(env)
        time.sleep(0.5)
        print(f'kilnd RSS idle: {rss_kib(pid) / 1024:.1f} MiB')

        for label, extra in (('small', 0), ('large', 198)):
            base = env.scratch_dir(f'base-{label}')
            make_base(base, extra)
            first = timed([kiln, 'from', '--name', f'first-{label}', base], env=envvars)
            samples = []
            for i in range(args.repeat):
                samples.append(timed([kiln, 'from', '--name', f'{label}-{i}', base], env=envvars))
            print(f'create from {du_mib(base)} MB base: first import {first * 1000:.0f} ms, '
                  f'then median {median_ms(samples):.1f} ms over {args.repeat}')
            subprocess.run([kiln, 'rm', '--all'], env=envvars, check=True, stdout=subprocess.DEVNULL)

        start = time.perf_counter()
        for i in range(args.builders):
            subprocess.run(['busctl', 'call', 'org.kiln.Builder1', '/org/kiln/Builder1',
                            'org.kiln.Builder1.Manager', 'CreateBuilder', 'ssa{sv}', f'b{i}', 'scratch', '0'],
                           env=envvars, check=True, stdout=subprocess.DEVNULL)
        print(f'created {args.builders} scratch builders in {time.perf_counter() - start:.1f} s')
        time.sleep(0.5)
        print(f'kilnd RSS with {args.builders} builders: {rss_kib(pid) / 1024:.1f} MiB')

        def busctl(*call):
            return ['busctl', 'call', 'org.kiln.Builder1', '/org/kiln/Builder1', *call]

        def measure(*call):
            before = cpu_ms(pid)
            walls = [timed(busctl(*call), env=envvars) for _ in range(args.repeat)]
            return walls, (cpu_ms(pid) - before) / args.repeat

        ping, _ = measure('org.freedesktop.DBus.Peer', 'Ping')
        lst, lst_cpu = measure('org.kiln.Builder1.Manager', 'ListBuilders')
        gmo, gmo_cpu = measure('org.freedesktop.DBus.ObjectManager', 'GetManagedObjects')
        print(f'busctl Ping (client cost): median {median_ms(ping):.1f} ms')
        print(f'ListBuilders with {args.builders}: median {median_ms(lst):.1f} ms '
              f'({median_ms(lst) - median_ms(ping):.1f} ms above Ping; kilnd CPU {lst_cpu:.1f} ms a call)')
        print(f'GetManagedObjects with {args.builders}: median {median_ms(gmo):.1f} ms '
              f'({median_ms(gmo) - median_ms(ping):.1f} ms above Ping; kilnd CPU {gmo_cpu:.1f} ms a call)')
        print(f'kilnd RSS after listing: {rss_kib(pid) / 1024:.1f} MiB')


if __name__ == '__main__':
    main()
