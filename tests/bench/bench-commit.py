#!/usr/bin/env python3
"""Benchmark of images out (not a test: it prints figures).

    tests/bench/bench-commit.py [--repeat 5] [--files 1000] [--file-kib 100]

In the private environment of the integration tests (tools/kiln-env), as root, a builder's run
writes 100 MB in 1,000 files (random bytes: what compresses worst). Prints the medians of:
  - `kiln commit` of a builder whose run wrote that change, once each (fresh builders, the base layer
    already stored), against `buildah commit` of the same change (the same files copied into a buildah
    working container on the same base), with buildah's vfs driver and, where it works here, overlay
    (goal: kiln at least 3x faster); and the same builder committed again and again (its layer is
    made anew each time and dropped, since the blob is there);
  - `kiln push IMAGE oci-archive:FILE`, against `tar -c | gzip` of the same bytes, the floor of
    writing them compressed (goal: within 1.2x), and `skopeo copy` of the pushed archive to another;
  - kilnd's resident memory: the most seen while commits and pushes ran (sampled every 10 ms;
    goal: at most 32 MiB).
Run as root from the source tree after a build (default build dir: ./build).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, median_ms, rss_kib, timed  # noqa: E402


class RssWatch:
    """The highest VmRSS of @pid while the block runs."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.01)

    def __enter__(self):
        self.peak = rss_kib(self.pid)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def process_cpu(pid):
    """CPU seconds (user + system) @pid has used."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def sched_ms(pid):
    """(running, waiting for a CPU) in ms over every thread @pid has now (the kernel's schedstat). A commit
    thread is one of kilnd's pool threads, which outlive the commit."""
    run = wait = 0
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{task}/schedstat') as f:
                fields = f.read().split()
        except OSError:
            continue
        run += int(fields[0])
        wait += int(fields[1])
    return run / 1e6, wait / 1e6


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_timed(cmd, service_pid=None, **kwargs):
    """(wall seconds, CPU seconds) of one command: its own and its children's, plus what @service_pid
    used meanwhile. On a shared machine the wall time follows the load; the CPU time much less."""
    before = children_cpu() + (process_cpu(service_pid) if service_pid else 0)
    wall = timed(cmd, **kwargs)
    return wall, children_cpu() + (process_cpu(service_pid) if service_pid else 0) - before


def load_average():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def make_payload(path, files, kib):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    for i in range(files):
        with open(os.path.join(path, f'f{i:04d}'), 'wb') as f:
            f.write(os.urandom(kib * 1024))
        os.chmod(os.path.join(path, f'f{i:04d}'), 0o644)


def buildah_commit(storage_driver, base, payload, repeat, work):
    """Median seconds of `buildah commit` of a container holding @base and @payload, or the reason it
    cannot run here."""
    storage = ['--root', os.path.join(work, f'root-{storage_driver}'), '--runroot',
               os.path.join(work, f'run-{storage_driver}'), '--storage-driver', storage_driver]
    try:
        ctr = subprocess.run(['buildah', *storage, 'from', 'scratch'], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        mnt = subprocess.run(['buildah', *storage, 'mount', ctr], capture_output=True, text=True,
                             check=True).stdout.strip()
        subprocess.run(['cp', '-a', base + '/.', mnt + '/'], check=True)
        subprocess.run(['buildah', *storage, 'commit', '--quiet', ctr, 'bench-base'], check=True,
                       capture_output=True)
        subprocess.run(['buildah', *storage, 'rm', ctr], check=True, capture_output=True)
        ctr = subprocess.run(['buildah', *storage, 'from', 'bench-base'], capture_output=True, text=True,
                             check=True).stdout.strip().splitlines()[-1]
        mnt = subprocess.run(['buildah', *storage, 'mount', ctr], capture_output=True, text=True,
                             check=True).stdout.strip()
        subprocess.run(['cp', '-a', payload, os.path.join(mnt, 'data')], check=True)
        samples = [cpu_timed(['buildah', *storage, 'commit', '--quiet', ctr, f'bench-{i}']) for i in range(repeat)]
        return samples, None
    except subprocess.CalledProcessError as e:
        return None, (e.stderr or str(e)).strip().splitlines()[-1] if e.stderr else str(e)
    finally:
        subprocess.run(['buildah', *storage, 'rm', '--all'], capture_output=True)
        subprocess.run(['buildah', *storage, 'rmi', '--all', '--force'], capture_output=True)
        subprocess.run(['umount', '-R', os.path.join(work, f'root-{storage_driver}')], capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--files', type=int, default=1000)
    parser.add_argument('--file-kib', type=int, default=100)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')
    print(f'change: {args.files} files of {args.file_kib} KiB '
          f'({args.files * args.file_kib / 1024:.0f} MiB, random bytes)')
    # The machine may be shared: figures taken at different loads do not compare.
    print(f'load average at the start: {load_average()}')

    env = kh.Env().setup()
    work = tempfile.mkdtemp(prefix='kiln-bench-commit.')
    try:
        envvars = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=env.bus_address)
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        with open(os.path.join(env.dir, 'kilnd.pid')) as f:
            kilnd = int(f.read().strip())
        base = env.scratch_dir('base')
        kh.make_busybox_rootfs(base, applets=['sh', 'cp', 'true'])
        payload = env.scratch_dir('payload')
        make_payload(payload, args.files, args.file_kib)

        timed([kiln, 'from', '--name', 'bench', base], env=envvars)
        timed([kiln, 'run', '--volume', f'{payload}:/src:ro', 'bench', '--', 'cp', '-a', '/src', '/data'],
              env=envvars)
        idle = rss_kib(kilnd)

        # The first commit also writes the base layer (kept for later commits on it): shown apart.
        first = timed([kiln, 'commit', 'bench', 'bench/first'], env=envvars)
        with RssWatch(kilnd) as commit_rss:
            commits = [timed([kiln, 'commit', 'bench', f'bench/img:{i}'], env=envvars)
                       for i in range(args.repeat)]
        again = median_ms(commits)
        print(f'kiln commit: first {first * 1000:.0f} ms (with the base layer), then the same builder again: '
              f'median {again:.0f} ms over {args.repeat} (its layer made anew and dropped: the blob is there)')
        # What a build does: a builder whose run wrote the change, committed once. Each builder's change
        # differs (a marker file), so each commit stores a layer of its own; the base layer is there.
        fresh = []
        for i in range(args.repeat):
            name = f'bench-fresh-{i}'
            timed([kiln, 'from', '--name', name, base], env=envvars)
            timed([kiln, 'run', '--volume', f'{payload}:/src:ro', name, '--', 'sh', '-c',
                   f'cp -a /src /data && echo {i} > /marker'], env=envvars)
            kilnd_cpu = process_cpu(kilnd)
            client_cpu = children_cpu()
            sched = sched_ms(kilnd)
            with RssWatch(kilnd) as fresh_rss:
                fresh.append(cpu_timed([kiln, 'commit', name, f'bench/fresh:{i}'], kilnd, env=envvars))
            # Where the wall time went: kilnd's CPU, its threads waiting for a CPU, the client's CPU; the rest
            # is kilnd asleep (the disk, the bus) and the client's start. schedstat counts the threads alive
            # after the commit: a layer's writing and hashing threads have ended by then (their CPU is in
            # kilnd's CPU, not in these two).
            ran, waited = (b - a for a, b in zip(sched, sched_ms(kilnd)))
            print(f'  fresh commit {i}: wall {fresh[-1][0] * 1000:.0f} ms; kilnd CPU '
                  f'{(process_cpu(kilnd) - kilnd_cpu) * 1000:.0f} ms (its lasting threads on a CPU {ran:.0f} ms, '
                  f'waiting for one {waited:.0f} ms); client CPU {(children_cpu() - client_cpu) * 1000:.0f} ms; '
                  f'load {load_average()}', flush=True)
            commit_rss.peak = max(commit_rss.peak, fresh_rss.peak)
        k = median_ms([w for w, _ in fresh])
        k_cpu = median_ms([c for _, c in fresh])
        print(f'kiln commit of a fresh change: median {k:.0f} ms over {args.repeat}; CPU (kilnd and the '
              f'client) {k_cpu:.0f} ms')
        for driver in ('vfs', 'overlay'):
            samples, why = buildah_commit(driver, base, payload, args.repeat, work)
            if samples is None:
                print(f'buildah commit ({driver}): cannot run here: {why}')
            else:
                b = median_ms([w for w, _ in samples])
                b_cpu = median_ms([c for _, c in samples])
                print(f'buildah commit ({driver}): median {b:.0f} ms over {args.repeat}; '
                      f'kiln is {b / k:.1f}x faster (a fresh change; the same builder again: '
                      f'{b / again:.1f}x; goal: at least 3x); CPU {b_cpu:.0f} ms, {b_cpu / k_cpu:.1f}x kiln\'s')

        # Layers are stored as tar: the first push of an image compresses them (and keeps the result),
        # later pushes copy. Each image pushed once: the first-push figure, against the floor.
        archive = os.path.join(work, 'push.tar')
        bases = os.path.join(env.dir, 'state', 'images', 'bases')

        def first_push():
            # The images share their layers' bytes: forget the compressed blobs, so each push makes them.
            # Their blobs too: a blob already there is not written again.
            for name in os.listdir(bases):
                if name.endswith('-gzip'):
                    with open(os.path.join(bases, name)) as f:
                        digest = json.load(f)['digest']
                    os.unlink(os.path.join(bases, name))
                    blob = os.path.join(env.dir, 'state', 'images', 'blobs', 'sha256', digest.split(':')[1])
                    if os.path.exists(blob):
                        os.unlink(blob)
            return timed([kiln, 'push', 'bench/img:0', f'oci-archive:{archive}'], env=envvars)

        with RssWatch(kilnd) as push_rss:
            firsts = [first_push() for _ in range(args.repeat)]
            later = [timed([kiln, 'push', 'bench/img:0', f'oci-archive:{archive}'], env=envvars)
                     for _ in range(args.repeat)]
        p = median_ms(firsts)
        size = os.path.getsize(archive)
        # The change itself (the builders hold it several times over now).
        floor = [timed(['sh', '-c', f'tar -C "$1" -cf - . | gzip > "$2"', 'sh',
                        payload, os.path.join(work, 'floor.tar.gz')])
                 for _ in range(args.repeat)]
        f = median_ms(floor)
        print(f'kiln push oci-archive ({size / 1048576:.0f} MiB), first push of an image (compresses): '
              f'median {p:.0f} ms over {args.repeat}; a later push (a copy): median {median_ms(later):.0f} ms')
        print(f'tar -c | gzip of the change (the floor): median {f:.0f} ms; push/floor {p / f:.2f}x '
              f'(goal: at most 1.2x)')
        copies = [timed(['skopeo', 'copy', '--quiet', f'oci-archive:{archive}',
                         f'oci-archive:{work}/copy-{i}.tar']) for i in range(args.repeat)]
        print(f'skopeo copy oci-archive → oci-archive of the same image: median {median_ms(copies):.0f} ms')
        print(f'kilnd RSS: idle {idle / 1024:.1f} MiB, peak during commits {commit_rss.peak / 1024:.1f} MiB, '
              f'during pushes {push_rss.peak / 1024:.1f} MiB (goal: at most 32 MiB)')
        print(f'load average at the end: {load_average()}')
    finally:
        env.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
