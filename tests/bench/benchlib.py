"""What the benchmarks share: timing a command, medians, a process's resident memory, a buildah container."""
import json
import os
import statistics
import subprocess
import sys
import time


def timed(cmd, **kwargs):
    """Wall time of one command; a failure ends the benchmark with the command's message."""
    start = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kwargs)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed ({result.returncode}): {result.stderr.strip()}')
    return elapsed


def median_ms(samples):
    return statistics.median(samples) * 1000.0


def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return -1


def buildah_container(rootfs, work):
    """A buildah working container from scratch holding a copy of @rootfs, with buildah's storage (vfs)
    private under @work: no registry, no network. Returns (buildah's storage flags, container name)."""
    storage = ['--root', os.path.join(work, 'buildah-root'), '--runroot', os.path.join(work, 'buildah-run'),
               '--storage-driver', 'vfs']
    ctr = subprocess.run(['buildah', *storage, 'from', 'scratch'], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    mnt = subprocess.run(['buildah', *storage, 'mount', ctr], capture_output=True, text=True,
                         check=True).stdout.strip()
    subprocess.run(['cp', '-a', rootfs + '/.', mnt + '/'], check=True)
    subprocess.run(['buildah', *storage, 'umount', ctr], check=True, stdout=subprocess.DEVNULL)
    return storage, ctr


def build_description(build_root):
    """"BUILD_ROOT (buildtype X)": which build the figures are of (meson's own record)."""
    try:
        with open(os.path.join(build_root, 'meson-info', 'intro-buildoptions.json')) as f:
            options = {o['name']: o['value'] for o in json.load(f)}
        return f'{build_root} (buildtype {options.get("buildtype")}, optimization {options.get("optimization")})'
    except (OSError, ValueError, KeyError):
        return f'{build_root} (buildtype unknown)'
