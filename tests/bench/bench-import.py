#!/usr/bin/env python3
"""Benchmark of image import (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-import.py [--repeat 5] [--mib 100]

On one locally made oci-archive (--mib of file content in 5 gzip layers, half random and half
text, written by Python's tarfile into an OCI layout and turned into an archive by skopeo), prints
the median wall time of
  - `kiln from oci-archive:` as kiln-alice, into an empty layer store (the layers collected between
    runs); the same archive again; `kiln from oci:` of the same image while its layers are stored
    (each blob hashed, nothing unpacked), and that again (nothing read but the JSON);
  - `buildah from oci-archive:` with the vfs and the overlay drivers (each into a fresh store);
  - `skopeo copy oci-archive: oci:` plus `umoci unpack`;
  - the floor: `sha256sum` of the layer blobs and `tar -xzf` of each into a fresh directory;
interleaved so that drift hits all alike, kilnd's peak RSS during a kiln import, and the ratios
against issue 13's goals (kiln <= 1.3x the floor, >= 3x faster than buildah, a second `from` of the
same image <= 30 ms, kilnd RSS <= 32 MiB). Run as root from the source tree after a build.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, median_ms, rss_kib, timed  # noqa: E402

USER = 'kiln-alice'
LAYERS = 5
GOAL_FLOOR_RATIO = 1.3
GOAL_BUILDAH_SPEEDUP = 3.0
GOAL_SECOND_MS = 30.0
GOAL_RSS_MIB = 32.0


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, 'blobs', 'sha256', digest), 'wb') as f:
        f.write(data)
    return digest


def make_layer(index, nbytes):
    """One gzip layer of about @nbytes of file content: 100 KiB files, half random, half text."""
    raw = io.BytesIO()
    text = b''.join(b'line %d of a text file in layer %d\n' % (i, index) for i in range(4000))
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.PAX_FORMAT) as t:
        d = tarfile.TarInfo(f'layer{index}')
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        t.addfile(d)
        size, n = 100 * 1024, 0
        while n * size < nbytes:
            data = os.urandom(size) if n % 2 else (text * (size // len(text) + 1))[:size]
            info = tarfile.TarInfo(f'layer{index}/f{n}')
            info.size, info.mode, info.mtime = size, 0o644, 1700000000
            t.addfile(info, io.BytesIO(data))
            n += 1
    tar = raw.getvalue()
    return tar, gzip.compress(tar, compresslevel=1, mtime=0)


def make_image(work, mib):
    layout = os.path.join(work, 'layout')
    os.makedirs(os.path.join(layout, 'blobs', 'sha256'))
    with open(os.path.join(layout, 'oci-layout'), 'w') as f:
        json.dump({'imageLayoutVersion': '1.0.0'}, f)
    diff_ids, layers = [], []
    for i in range(LAYERS):
        tar, gz = make_layer(i, mib * 1024 * 1024 // LAYERS)
        diff_ids.append('sha256:' + hashlib.sha256(tar).hexdigest())
        layers.append({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip',
                       'digest': 'sha256:' + put_blob(layout, gz), 'size': len(gz)})
    config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {'Env': ['PATH=/bin']},
                         'rootfs': {'type': 'layers', 'diff_ids': diff_ids}}).encode()
    manifest = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                           'config': {'mediaType': 'application/vnd.oci.image.config.v1+json',
                                      'digest': 'sha256:' + put_blob(layout, config), 'size': len(config)},
                           'layers': layers}).encode()
    with open(os.path.join(layout, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'manifests': [{
            'mediaType': 'application/vnd.oci.image.manifest.v1+json',
            'digest': 'sha256:' + put_blob(layout, manifest), 'size': len(manifest),
            'annotations': {'org.opencontainers.image.ref.name': 'v1'}}]}, f)
    archive = os.path.join(work, 'image.tar')
    subprocess.run(['skopeo', 'copy', '-q', f'oci:{layout}:v1', f'oci-archive:{archive}:v1'], check=True)
    subprocess.run(['chmod', '-R', 'a+rX', work], check=True)
    return layout, archive, [l['digest'].split(':')[1] for l in layers]


class PeakRss:
    """kilnd's peak resident memory while a command runs, sampled every 5 ms."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def __enter__(self):
        def sample():
            while not self.stop.is_set():
                self.peak = max(self.peak, rss_kib(self.pid))
                time.sleep(0.005)
        self.thread = threading.Thread(target=sample)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--mib', type=int, default=100)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    for tool in ('buildah', 'skopeo', 'umoci'):
        if not shutil.which(tool):
            sys.exit(f'{tool} is not installed')

    with kh.Env() as env, tempfile.TemporaryDirectory(prefix='kiln-bench-import-', dir='/var/tmp') as work:
        os.chmod(work, 0o755)
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        layout, archive, blobs = make_image(work, args.mib)
        with open(os.path.join(env.dir, 'kilnd.pid')) as f:
            kilnd = int(f.read().strip())
        layers_dir = os.path.join(env.dir, 'state', 'layers')
        samples = {k: [] for k in ('kiln', 'kiln-archive-again', 'kiln-oci-stored', 'kiln-oci-again',
                                   'buildah-vfs', 'buildah-overlay', 'skopeo+umoci', 'floor')}
        peak = 0
        overlay_ok = True

        def kiln_from(source, name):
            return timed(['runuser', '-u', USER, '--', kiln, 'from', '--name', name, source],
                         env={**os.environ, 'DBUS_SYSTEM_BUS_ADDRESS': env.bus_address}, cwd='/')

        def kiln_rm(name):
            subprocess.run(['runuser', '-u', USER, '--', kiln, 'rm', name], check=True,
                           env={**os.environ, 'DBUS_SYSTEM_BUS_ADDRESS': env.bus_address}, cwd='/',
                           stdout=subprocess.DEVNULL)

        def wait_collected():
            for _ in range(600):
                if not [n for n in os.listdir(layers_dir) if not n.startswith('.')]:
                    return
                time.sleep(0.05)

        for i in range(args.repeat):
            # kiln into an empty store; then, while that builder keeps the layers: the same archive
            # again (unchanged: its verified read is recorded), the layout of the same image (its
            # blobs hashed once, nothing unpacked), and that layout again.
            wait_collected()
            with PeakRss(kilnd) as rss:
                samples['kiln'].append(kiln_from(f'oci-archive:{archive}', 'first'))
            peak = max(peak, rss.peak)
            samples['kiln-archive-again'].append(kiln_from(f'oci-archive:{archive}', 'again'))
            samples['kiln-oci-stored'].append(kiln_from(f'oci:{layout}:v1', 'layout'))
            samples['kiln-oci-again'].append(kiln_from(f'oci:{layout}:v1', 'layout-again'))
            for name in ('first', 'again', 'layout', 'layout-again'):
                kiln_rm(name)

            for driver in ('vfs', 'overlay'):
                if driver == 'overlay' and not overlay_ok:
                    continue
                store = os.path.join(work, f'buildah-{driver}-{i}')
                flags = ['--root', store + '/root', '--runroot', store + '/run', '--storage-driver', driver]
                cmd = ['buildah', *flags, 'from', '--pull-never', f'oci-archive:{archive}']
                start = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True)
                elapsed = time.perf_counter() - start
                if r.returncode != 0:
                    if driver == 'overlay':
                        print(f'buildah overlay driver unavailable here: {r.stderr.strip()[:200]}')
                        overlay_ok = False
                        continue
                    sys.exit(f'{" ".join(cmd)}: {r.stderr}')
                samples[f'buildah-{driver}'].append(elapsed)
                subprocess.run(['buildah', *flags, 'rm', '--all'], capture_output=True)
                subprocess.run(['umount', '-R', store + '/root'], capture_output=True)
                shutil.rmtree(store, ignore_errors=True)

            dst = os.path.join(work, f'skopeo-{i}')
            start = time.perf_counter()
            timed(['skopeo', 'copy', '-q', f'oci-archive:{archive}:v1', f'oci:{dst}:v1'])
            timed(['umoci', 'unpack', '--image', f'{dst}:v1', dst + '-bundle'])
            samples['skopeo+umoci'].append(time.perf_counter() - start)
            shutil.rmtree(dst)
            shutil.rmtree(dst + '-bundle')

            floor = os.path.join(work, f'floor-{i}')
            os.mkdir(floor)
            blob_paths = [os.path.join(layout, 'blobs', 'sha256', b) for b in blobs]
            start = time.perf_counter()
            timed(['sha256sum', *blob_paths])
            for b in blob_paths:
                timed(['tar', '-xzf', b, '-C', floor])
            samples['floor'].append(time.perf_counter() - start)
            shutil.rmtree(floor)

    m = {k: median_ms(v) for k, v in samples.items() if v}
    print(f'image: {args.mib} MiB of file content in {LAYERS} gzip layers; median of {args.repeat} runs')
    for k, v in m.items():
        print(f'  {k:18s} {v:9.1f} ms')
    print(f'  kilnd peak RSS during `kiln from`: {peak / 1024:.1f} MiB')
    buildah = min(v for k, v in m.items() if k.startswith('buildah'))
    goals = [
        (f'kiln <= {GOAL_FLOOR_RATIO}x floor', f'{m["kiln"] / m["floor"]:.2f}x', m['kiln'] <= GOAL_FLOOR_RATIO * m['floor']),
        (f'buildah / kiln >= {GOAL_BUILDAH_SPEEDUP:.0f}x', f'{buildah / m["kiln"]:.2f}x',
         buildah >= GOAL_BUILDAH_SPEEDUP * m['kiln']),
        (f'second from <= {GOAL_SECOND_MS:.0f} ms', f'{m["kiln-archive-again"]:.1f} ms',
         m['kiln-archive-again'] <= GOAL_SECOND_MS),
        (f'kilnd RSS <= {GOAL_RSS_MIB:.0f} MiB', f'{peak / 1024:.1f} MiB', peak / 1024 <= GOAL_RSS_MIB),
    ]
    for goal, figure, met in goals:
        print(f'  {goal:28s} {figure:>10s}  {"met" if met else "NOT met"}')


if __name__ == '__main__':
    main()
