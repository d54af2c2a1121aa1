#!/usr/bin/env python3
"""Benchmark of the user-mode networks (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-network.py [--repeat 31] [--megabytes 100] [--build DIR]...

In one run, on the same busybox root file system (a builder of root's, isolation oci), prints
  - the median wall time of `kiln run --network pasta B /bin/true`, `--network slirp4netns` and
    `--network private`, interleaved so that drift hits all three alike, and what each helper adds;
    with several --build directories (e.g. an older build of the tree next to this one), each build
    gets its own kilnd and the rounds alternate between the builds too, so that all figures come
    from the same minutes of a shared machine;
  - pasta alone (same flags, no kiln): from its spawn to its readiness, and from SIGKILL to its
    reaping — what kiln cannot make faster;
  - buildah's rootless run with pasta (`buildah run --network pasta`, as kiln-alice, vfs storage
    in a private directory, the same root file system) where this buildah can do it, and otherwise
    why not;
  - the time to fetch N MB (default 100) from an HTTP server on the host's loopback: through pasta
    (wget inside, to pasta's gateway address, which pasta maps to the host's loopback), through
    slirp4netns (10.0.2.2, allow_host_loopback=true), and the same fetch on the host (busybox wget
    from the same root file system, chroot'ed, no container), with the throughput ratio (first
    build only);
  - the load average before and after;
against issue 15's goals: pasta adds at most 10 ms to a run, and fetches at least at 50% of the
host's throughput. /dev/net/tun is set to 0666 (Debian's mode) while it runs and put back.
Run as root from the source tree after a build.
"""
import argparse
import http.server
import os
import pwd
import shutil
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description, median_ms, timed  # noqa: E402

GOAL_ADDED_MS = 10.0
GOAL_THROUGHPUT = 0.5
TUN = '/dev/net/tun'
ALICE = 'kiln-alice'
NETWORKS = ('private', 'pasta', 'slirp4netns')


class Blob(http.server.BaseHTTPRequestHandler):
    size = 0
    chunk = b'\0' * (1 << 20)

    def do_GET(self):
        self.send_response(200)
        self.send_header('Content-Length', str(self.size))
        self.end_headers()
        left = self.size
        while left > 0:
            n = min(left, len(self.chunk))
            self.wfile.write(self.chunk[:n])
            left -= n

    def log_message(self, *args):
        pass


def gateway():
    with open('/proc/net/route') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == '00000000' and int(fields[3], 16) & 2:
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, 'little'))
    sys.exit('no default IPv4 route: pasta has no gateway to map')


def bare_pasta(repeat):
    """pasta alone, as kilnd starts it (same flags, as root, in a fresh user + network namespace made by
    unshare): from its spawn to its ready signal, and from SIGKILL to its reaping. What kiln cannot make
    faster."""
    ready, ends = [], []
    for _ in range(repeat):
        holder = subprocess.Popen(['unshare', '--user', '--map-root-user', '--net', 'sleep', '30'])
        time.sleep(0.05)
        userns = os.open(f'/proc/{holder.pid}/ns/user', os.O_RDONLY)
        netns = os.open(f'/proc/{holder.pid}/ns/net', os.O_RDONLY)
        r, w = os.pipe()
        start = time.perf_counter()
        pasta = subprocess.Popen(['pasta', '--config-net', '--foreground', '--quiet', '--userns',
                                  f'/proc/self/fd/{userns}', '--netns', f'/proc/self/fd/{netns}', '--no-netns-quit',
                                  '-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none', '--runas=0:0', '--pid',
                                  f'/proc/self/fd/{w}'], pass_fds=[w, userns, netns])
        os.close(w)
        os.read(r, 64)
        ready.append(time.perf_counter() - start)
        start = time.perf_counter()
        pasta.kill()
        pasta.wait()
        ends.append(time.perf_counter() - start)
        for fd in (r, userns, netns):
            os.close(fd)
        holder.kill()
        holder.wait()
    return median_ms(ready), median_ms(ends)


def buildah_rootless(rootfs, work, repeat):
    """Median seconds of `buildah run --network pasta C /bin/true` as kiln-alice (rootless, vfs storage
    under @work, a working container holding a copy of @rootfs), and of the same run with
    --network private; or None and the reason buildah gave for refusing."""
    if not shutil.which('buildah'):
        return None, 'buildah is not installed'
    user = pwd.getpwnam(ALICE)
    home = os.path.join(work, 'buildah-rootless')
    xdg = os.path.join(home, 'xdg')
    for path in (home, xdg):
        os.mkdir(path, 0o700)
        os.chown(path, user.pw_uid, user.pw_gid)
    env = {'HOME': user.pw_dir, 'XDG_RUNTIME_DIR': xdg, 'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'}
    storage = ['--root', os.path.join(home, 'root'), '--runroot', os.path.join(home, 'runroot'),
               '--storage-driver', 'vfs']

    def buildah(*argv):
        return subprocess.run(['runuser', '-u', ALICE, '--', 'env', *(f'{k}={v}' for k, v in env.items()),
                               'buildah', *storage, *argv], capture_output=True, text=True)

    def reason(r):
        lines = [l for l in r.stderr.splitlines() if 'level=warning' not in l]
        return (lines or r.stderr.splitlines() or ['(no message)'])[-1].strip()

    r = buildah('from', '--name', 'bench-rootless', 'scratch')
    if r.returncode != 0:
        return None, f'buildah from scratch: {reason(r)}'
    r = buildah('unshare', 'sh', '-c', f'm=$(buildah {" ".join(storage)} mount bench-rootless) && '
                f'{{ cp -R {rootfs}/. "$m/" 2>/dev/null; test -x "$m/bin/true"; }}')
    if r.returncode != 0:
        return None, f'buildah unshare cp: {reason(r)}'
    samples = {}
    for network in ('pasta', 'private'):
        r = buildah('run', '--network', network, 'bench-rootless', '/bin/true')
        if r.returncode != 0:
            return None, f'buildah {buildah_version()} run --network {network}: {reason(r)}'
        samples[network] = []
    for _ in range(repeat):
        for network in samples:
            start = time.perf_counter()
            buildah('run', '--network', network, 'bench-rootless', '/bin/true')
            samples[network].append(time.perf_counter() - start)
    return samples, None


def buildah_version():
    r = subprocess.run(['buildah', '--version'], capture_output=True, text=True)
    return r.stdout.split()[2] if r.returncode == 0 and len(r.stdout.split()) > 2 else '?'


def start_env(build_root):
    """An environment whose kilnd is @build_root's; its bus address is passed to each command."""
    env = kh.Env()
    env.build_root = build_root
    env.kiln_cli = os.path.join(build_root, 'cli', 'kiln')
    env.kilnd = os.path.join(build_root, 'service', 'kilnd')
    return env.setup()


def quartile_ms(samples):
    return statistics.quantiles(samples, n=4)[0] * 1000.0


def loadavg():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=31)
    parser.add_argument('--megabytes', type=int, default=100)
    parser.add_argument('--build', action='append', help='a build directory (default: this tree\'s); '
                        'give several to compare builds in the same rounds')
    args = parser.parse_args()
    kh.require_root()
    builds = [os.path.abspath(b) for b in args.build or [kh.BUILD_ROOT]]
    for b in builds:
        print(f'build: {build_description(b)}')
    print(f'load average before: {loadavg()}')

    tun_mode = stat.S_IMODE(os.stat(TUN).st_mode)
    os.chmod(TUN, 0o666)
    Blob.size = args.megabytes << 20
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Blob)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    envs = []
    try:
        with tempfile.TemporaryDirectory(prefix='kiln-bench-network-') as work:
            os.chmod(work, 0o755)
            rootfs = kh.make_busybox_rootfs(os.path.join(work, 'rootfs'), applets=['sh', 'true', 'wget'])
            commands = {}
            for b in builds:
                env = start_env(b)
                envs.append(env)
                kiln = os.path.join(b, 'cli', 'kiln')
                bus = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=env.bus_address)
                subprocess.run([kiln, 'from', '--name', 'bench', '--isolation', 'oci', rootfs], check=True,
                               stdout=subprocess.DEVNULL, env=bus)
                for network in NETWORKS:
                    commands[(b, network)] = ([kiln, 'run', '--network', network, 'bench', '/bin/true'], bus)
            samples = {key: [] for key in commands}
            for i in range(args.repeat + 1):
                for key, (cmd, bus) in commands.items():
                    t = timed(cmd, env=bus)
                    if i:
                        samples[key].append(t)
            load_runs = loadavg()

            kiln = os.path.join(builds[0], 'cli', 'kiln')
            bus = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=envs[0].bus_address)
            url = f'http://{{}}:{port}/blob'
            fetch = {
                'pasta': [kiln, 'run', '--network', 'pasta', 'bench', 'wget', '-q', '-O', '/dev/null',
                          url.format(gateway())],
                'slirp4netns': [kiln, 'run', '--network', 'slirp4netns:allow_host_loopback=true', 'bench',
                                'wget', '-q', '-O', '/dev/null', url.format('10.0.2.2')],
                'host': ['chroot', rootfs, 'wget', '-q', '-O', '/dev/null', url.format('127.0.0.1')],
            }
            fetch_samples = {name: [] for name in fetch}
            for i in range(4):
                for name, cmd in fetch.items():
                    t = timed(cmd, env=bus)
                    if i:
                        fetch_samples[name].append(t)
            buildah_samples, buildah_why = buildah_rootless(rootfs, work, min(args.repeat, 11))
            bare_ready, bare_end = bare_pasta(args.repeat)
    finally:
        for env in envs:
            env.stop()
        server.shutdown()
        os.chmod(TUN, tun_mode)

    print(f'median of {args.repeat} interleaved runs of /bin/true (kiln run, isolation oci, as root; load '
          f'average at their end {load_runs}):')
    for b in builds:
        private, pasta, slirp = (median_ms(samples[(b, n)]) for n in NETWORKS)
        q_private, q_pasta, q_slirp = (quartile_ms(samples[(b, n)]) for n in NETWORKS)
        print(f'  {b}   (median; first quartile, less hit by the machine\'s other work)')
        print(f'    --network private        {private:8.2f} ms            {q_private:8.2f} ms')
        print(f'    --network pasta          {pasta:8.2f} ms  (+{pasta - private:6.2f})  {q_pasta:8.2f} ms  '
              f'(+{q_pasta - q_private:.2f})')
        print(f'    --network slirp4netns    {slirp:8.2f} ms  (+{slirp - private:6.2f})  {q_slirp:8.2f} ms  '
              f'(+{q_slirp - q_private:.2f})')
    print(f'  pasta alone (same flags, no kiln): ready after {bare_ready:.2f} ms, reaped {bare_end:.2f} ms '
          f'after SIGKILL')
    if buildah_samples:
        bp, bq = median_ms(buildah_samples['pasta']), median_ms(buildah_samples['private'])
        print(f'  buildah {buildah_version()} rootless run as {ALICE}, vfs: --network pasta {bp:.2f} ms, '
              f'--network private {bq:.2f} ms (+{bp - bq:.2f} ms; median of {len(buildah_samples["pasta"])})')
    else:
        print(f'  buildah rootless run with pasta: cannot run here: {buildah_why}')
    mb = args.megabytes
    rates = {n: mb / (median_ms(s) / 1000.0) for n, s in fetch_samples.items()}
    print(f'{mb} MB from an HTTP server on the host\'s loopback (busybox wget, median of 3; run time '
          f'included for the kiln runs):')
    for name in ('host', 'pasta', 'slirp4netns'):
        print(f'  {name:12s} {median_ms(fetch_samples[name]):9.1f} ms  {rates[name]:8.1f} MB/s')
    private, pasta = (median_ms(samples[(builds[0], n)]) for n in ('private', 'pasta'))
    goals = [
        (f'pasta adds <= {GOAL_ADDED_MS:.0f} ms', f'{pasta - private:.2f} ms', pasta - private <= GOAL_ADDED_MS),
        (f'pasta >= {GOAL_THROUGHPUT:.0%} of host', f'{rates["pasta"] / rates["host"]:.0%}',
         rates['pasta'] >= GOAL_THROUGHPUT * rates['host']),
    ]
    for goal, figure, met in goals:
        print(f'  {goal:28s} {figure:>10s}  {"met" if met else "NOT met"}')
    print(f'load average after: {loadavg()}')


if __name__ == '__main__':
    main()
