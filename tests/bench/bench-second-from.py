#!/usr/bin/env python3
"""Benchmark of a second `kiln from` of the same image (not a test: it prints figures).

    tests/bench/bench-second-from.py [--repeat 15] [--mib 40] [--compare OTHER_BUILD_ROOT]

As kiln-alice, with the image's layers stored by a first `from` (and a builder keeping them), the
median wall time of `kiln from` of: the same oci-archive again, the same oci: layout again, a stored
image by name (made by `kiln commit`) again, and scratch; and, as floors, `runuser -u kiln-alice --
true` (what the harness adds to every figure) and `kiln --help` (the CLI's own start). With
--compare, a second service from OTHER_BUILD_ROOT (for instance the code before a change, built from
`git archive`) runs beside this one, and every case alternates between the two, so that the load of
the machine hits both alike. Run as root from the source tree after a build.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402

USER = 'kiln-alice'


def load_bench_import():
    spec = importlib.util.spec_from_file_location('bench_import', os.path.join(HERE, 'bench-import.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Service:
    """One kilnd (of @build_root) with its bus, and a kiln CLI of the same build."""

    def __init__(self, label, build_root):
        self.label = label
        self.env = kh.Env()
        self.env.build_root = build_root
        self.env.kiln_cli = os.path.join(build_root, 'cli', 'kiln')
        self.env.kilnd = os.path.join(build_root, 'service', 'kilnd')

    def kiln(self, *args, check=True):
        return subprocess.run(['runuser', '-u', USER, '--', self.env.kiln_cli, *args],
                              env={**os.environ, 'DBUS_SYSTEM_BUS_ADDRESS': self.env.bus_address}, cwd='/',
                              capture_output=True, text=True, check=check)

    def timed(self, *args):
        start = time.perf_counter()
        self.kiln(*args)
        return (time.perf_counter() - start) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=15)
    parser.add_argument('--mib', type=int, default=40)
    parser.add_argument('--compare', metavar='OTHER_BUILD_ROOT')
    args = parser.parse_args()
    kh.require_root()
    bench_import = load_bench_import()
    services = [Service('this', kh.BUILD_ROOT)]
    if args.compare:
        services.append(Service('other', os.path.abspath(args.compare)))

    with tempfile.TemporaryDirectory(prefix='kiln-bench-second-', dir='/var/tmp') as work:
        os.chmod(work, 0o755)
        layout, archive, _ = bench_import.make_image(work, args.mib)
        cases = {'archive again': f'oci-archive:{archive}', 'oci layout again': f'oci:{layout}:v1',
                 'stored image again': 'bench/stored:v1', 'scratch': 'scratch'}
        samples = {(s.label, c): [] for s in services for c in list(cases) + ['kiln --help']}
        floor = []
        try:
            for s in services:
                s.env.__enter__()
                # The first of each: layers stored, kept by builders for the whole run.
                s.kiln('from', '--name', 'keep-archive', cases['archive again'])
                s.kiln('from', '--name', 'keep-layout', cases['oci layout again'])
                s.kiln('commit', 'keep-archive', 'bench/stored:v1')
                s.kiln('from', '--name', 'keep-stored', 'bench/stored:v1')
            for i in range(args.repeat):
                for case, source in cases.items():
                    for s in services:
                        samples[(s.label, case)].append(s.timed('from', '--name', f'b{i}', source))
                        s.kiln('rm', f'b{i}')
                for s in services:
                    samples[(s.label, 'kiln --help')].append(s.timed('--help'))
                start = time.perf_counter()
                subprocess.run(['runuser', '-u', USER, '--', 'true'], check=True)
                floor.append((time.perf_counter() - start) * 1000)
        finally:
            for s in services:
                s.env.__exit__(None, None, None)

    print(f'image: {args.mib} MiB in 5 gzip layers; median (min) of {args.repeat} runs, ms; as {USER}')
    print(f'  {"runuser -u … true":22s} {statistics.median(floor):7.1f} ({min(floor):.1f})')
    header = ''.join(f'{s.label:>20s}' for s in services)
    print(f'  {"":22s}{header}')
    for case in list(cases) + ['kiln --help']:
        row = ''.join(f'{statistics.median(samples[(s.label, case)]):11.1f} ({min(samples[(s.label, case)]):5.1f})'
                      for s in services)
        print(f'  {case:22s}{row}')


if __name__ == '__main__':
    main()
