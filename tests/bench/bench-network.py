#!/usr/bin/env python3
"""Benchmark of the user-mode networks (not a test: it prints figures, it asserts nothing).

    tests/bench/bench-network.py [--repeat 31] [--megabytes 100]

In one run, on the same busybox root file system (a builder of root's, isolation oci), prints
  - the median wall time of `kiln run --network pasta B /bin/true`, `--network slirp4netns` and
    `--network private`, interleaved so that drift hits all three alike, and what each helper adds;
  - the time to fetch N MB (default 100) from an HTTP server on the host's loopback: through pasta
    (wget inside, to pasta's gateway address, which pasta maps to the host's loopback), through
    slirp4netns (10.0.2.2, allow_host_loopback=true), and the same fetch on the host (busybox wget
    from the same root file system, chroot'ed, no container), with the throughput ratio;
against issue 15's goals: pasta adds at most 10 ms to a run, and fetches at least at 50% of the
host's throughput. /dev/net/tun is set to 0666 (Debian's mode) while it runs and put back.
Run as root from the source tree after a build.
"""
import argparse
import http.server
import os
import socket
import stat
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--repeat', type=int, default=31)
    parser.add_argument('--megabytes', type=int, default=100)
    args = parser.parse_args()
    kh.require_root()
    print(f'build: {build_description(kh.BUILD_ROOT)}')

    tun_mode = stat.S_IMODE(os.stat(TUN).st_mode)
    os.chmod(TUN, 0o666)
    Blob.size = args.megabytes << 20
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Blob)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with kh.Env() as env, tempfile.TemporaryDirectory(prefix='kiln-bench-network-') as work:
            os.chmod(work, 0o755)
            kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
            rootfs = kh.make_busybox_rootfs(os.path.join(work, 'rootfs'), applets=['sh', 'true', 'wget'])
            subprocess.run([kiln, 'from', '--name', 'bench', '--isolation', 'oci', rootfs], check=True,
                           stdout=subprocess.DEVNULL)
            commands = {
                'private': [kiln, 'run', '--network', 'private', 'bench', '/bin/true'],
                'pasta': [kiln, 'run', '--network', 'pasta', 'bench', '/bin/true'],
                'slirp4netns': [kiln, 'run', '--network', 'slirp4netns', 'bench', '/bin/true'],
            }
            samples = {name: [] for name in commands}
            for i in range(args.repeat + 1):
                for name, cmd in commands.items():
                    t = timed(cmd)
                    if i:
                        samples[name].append(t)

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
                    t = timed(cmd)
                    if i:
                        fetch_samples[name].append(t)
        bare_ready, bare_end = bare_pasta(args.repeat)
    finally:
        server.shutdown()
        os.chmod(TUN, tun_mode)

    private, pasta, slirp = (median_ms(samples[n]) for n in ('private', 'pasta', 'slirp4netns'))
    print(f'median of {args.repeat} interleaved runs of /bin/true (kiln run, isolation oci, as root):')
    print(f'  --network private        {private:8.2f} ms')
    print(f'  --network pasta          {pasta:8.2f} ms  (+{pasta - private:.2f} ms)')
    print(f'  --network slirp4netns    {slirp:8.2f} ms  (+{slirp - private:.2f} ms)')
    print(f'  pasta alone (same flags, no kiln): ready after {bare_ready:.2f} ms, reaped {bare_end:.2f} ms '
          f'after SIGKILL')
    mb = args.megabytes
    rates = {n: mb / (median_ms(s) / 1000.0) for n, s in fetch_samples.items()}
    print(f'{mb} MB from an HTTP server on the host\'s loopback (busybox wget, median of 3; run time '
          f'included for the kiln runs):')
    for name in ('host', 'pasta', 'slirp4netns'):
        print(f'  {name:12s} {median_ms(fetch_samples[name]):9.1f} ms  {rates[name]:8.1f} MB/s')
    goals = [
        (f'pasta adds <= {GOAL_ADDED_MS:.0f} ms', f'{pasta - private:.2f} ms', pasta - private <= GOAL_ADDED_MS),
        (f'pasta >= {GOAL_THROUGHPUT:.0%} of host', f'{rates["pasta"] / rates["host"]:.0%}',
         rates['pasta'] >= GOAL_THROUGHPUT * rates['host']),
    ]
    for goal, figure, met in goals:
        print(f'  {goal:28s} {figure:>10s}  {"met" if met else "NOT met"}')


if __name__ == '__main__':
    main()
