#!/usr/bin/env python3
"""Where the time of `kiln run B /bin/true` goes (not a test: it prints figures, it asserts nothing).

    tests/bench/profile-run.py [--runs 9] [--user kiln-alice] [--build DIR] [--isolation chroot]

Starts the integration tests' private environment, creates a busybox builder (as --user if given:
a user namespace), warms it with three runs, then traces --runs runs with `perf trace -a` (the
kernel's syscall tracepoints: execve, clone, connect, sendmsg, recvmsg, exit_group, system-wide, a
small cost to every process) and splits each run into phases by the syscalls of the CLI, kilnd and
the processes kilnd starts:
  A  the CLI's start-up: its execve to its connect() to the bus;
  B  Hello and GetBuilder: connect() to the CLI's Start message;
  C  kilnd's Start up to the runtime's execve (for a user: polkit's CheckAuthorization, measured
     from kilnd's message to polkitd to its answer);
  D  the runtime (runc, or kiln-runtime-ns then runc): its execve to the CLI's Wait, which follows
     Start's answer once `run --detach` has returned (the command runs, or has already run);
  F  Wait to the CLI's exit: the exit, reaping, clean-up (a `delete`, when there is one), the answer.
With --isolation chroot, kiln-isolate's server starts the command without an execve kilnd makes:
C ends, and D starts, at the server's fork of its child; "execve below kilnd" counts every program
executed under kilnd (the container's command among them: 1 when no helper is executed).
Prints each phase's median and every sample. Needs perf (apt-get install linux-perf). Run as root from the
source tree after a build.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402
from benchlib import build_description  # noqa: E402

EVENTS = 'execve,execveat,exit_group,sendmsg,recvmsg,connect,clone,clone3'
LINE = re.compile(r'^\s*(\d+\.\d+)\s+\(\s*([\d.]*)\s*(?:ms)?\):\s+(\S+)/(\d+)\s+(.*)$')
CONT = re.compile(r'^\s*\?\s+\(\s*\):\s+(\S+)/(\d+)\s+\.\.\. \[continued\]: (\w+)\(\)\)\s+=\s+(-?\d+)')


def record(args, trace, kilnd_children):
    """Runs the environment and the traced runs; returns (kilnd's thread ids, client pids, wall ms), and
    fills @kilnd_children (pid → kilnd's thread) with what kilnd had started before."""
    with kh.Env() as env, tempfile.TemporaryDirectory(prefix='kiln-profile-') as work:
        kiln = os.path.join(kh.BUILD_ROOT, 'cli', 'kiln')
        rootfs = os.path.join(work, 'rootfs')
        kh.make_busybox_rootfs(rootfs)
        os.chmod(work, 0o755)
        os.chmod(os.path.join(rootfs, 'root'), 0o755)  # kiln-import reads the base as the caller
        pre = ['runuser', '-u', args.user, '--'] if args.user else []
        subprocess.run(pre + [kiln, 'from', '--name', 'prof', '--isolation', args.isolation, rootfs], check=True,
                       stdout=subprocess.DEVNULL)
        for _ in range(3):
            subprocess.run(pre + [kiln, 'run', 'prof', '/bin/true'], check=True)
        with open(os.path.join(env.dir, 'kilnd.pid')) as f:
            pid = int(f.read())
        perf = subprocess.Popen(['perf', 'trace', '-a', '-T', '-o', trace, '-e', EVENTS], stderr=subprocess.DEVNULL)
        time.sleep(2)
        wall, clients = [], []
        for _ in range(args.runs):
            start = time.perf_counter()
            p = subprocess.Popen(pre + [kiln, 'run', 'prof', '/bin/true'])
            clients.append(p.pid)
            p.wait()
            wall.append((time.perf_counter() - start) * 1000)
            time.sleep(0.3)
        kilnd = {int(t) for t in os.listdir(f'/proc/{pid}/task')}
        # Children started before the trace (kiln-isolate's server) are below kilnd too.
        for t in kilnd:
            with open(f'/proc/{pid}/task/{t}/children') as f:
                kilnd_children.update({int(c): t for c in f.read().split()})
        time.sleep(0.5)
        perf.send_signal(signal.SIGINT)
        perf.wait()
        return kilnd, clients, wall


def parse(trace):
    """perf trace's lines as (start ms, end ms, comm, tid, syscall, return, text); and child → parent."""
    events, parent = [], {}
    with open(trace, errors='replace') as f:
        for raw in f:
            m = LINE.match(raw)
            if m:
                t, dur, comm, tid, rest = float(m[1]), m[2], m[3], int(m[4]), m[5]
                call = rest.split('(')[0].strip()
                if '[continued]:' in call:
                    call = call.split('[continued]:')[1].strip()
                ret = (rest.rsplit('=', 1)[-1].split() or [''])[0] if '=' in rest else ''
                events.append((t, t + float(dur) if dur else t, comm, tid, call, ret, rest))
                if call in ('clone', 'clone3') and ret.isdigit() and int(ret) > 0:
                    parent[int(ret)] = tid
                continue
            m = CONT.match(raw)
            if m and m[3] in ('clone', 'clone3') and int(m[4]) > 0:
                parent[int(m[4])] = int(m[2])
    return events, parent


def descends(tid, roots, parent):
    for _ in range(64):
        if tid in roots:
            return True
        if tid not in parent:
            return False
        tid = parent[tid]
    return False


def phases(events, parent, kilnd, client):
    ev = [e for e in events if descends(e[3], {client}, parent)]
    conn = next(e for e in ev if e[4] == 'connect' and e[2] == 'kiln')
    cli = conn[3]
    cli_exec = [e for e in ev if e[4] == 'execve' and e[3] == cli and e[0] <= conn[0]][-1]
    sends = [e for e in ev if e[3] == cli and e[4] == 'sendmsg']  # AUTH, Hello, GetBuilder, Start, Wait
    end = max(e[1] for e in ev)
    ours = [e for e in events if cli_exec[0] <= e[0] <= end and descends(e[3], kilnd, parent)]
    runtime = [e for e in ours if e[4] == 'execve' and e[3] not in kilnd and parent.get(e[3]) in kilnd]
    below = [e for e in ours if e[4] == 'execve' and e[3] not in kilnd]
    # kiln-isolate's server (kilnd's child, never executed on the run's path) forks the command's child.
    server_fork = [e for e in ours if e[4] in ('clone', 'clone3') and e[3] not in kilnd
                   and e[2].startswith('kiln-isolate') and e[0] >= sends[3][0]]
    if not runtime and server_fork:
        runtime = server_fork[:1]
    exits = [e for e in ev if e[4] == 'exit_group' and e[3] == cli]
    # polkitd is asked through GDBus, whose messages go out of and come into its own thread.
    polkit_out = [e for e in ours if e[3] in kilnd and e[2] == 'gdbus' and e[4] == 'sendmsg']
    polkit_in = [e for e in ours if e[3] in kilnd and e[2] == 'gdbus' and e[4] == 'recvmsg'
                 and 'EAGAIN' not in e[6] and polkit_out and e[0] > polkit_out[0][0]]
    start, wait = sends[3][0], sends[-1][0]
    out = {'A CLI start-up': conn[0] - cli_exec[0], 'B Hello, GetBuilder': start - conn[0]}
    if runtime:
        out['C kilnd Start to runtime execve'] = runtime[0][0] - start
    if polkit_out and polkit_in:
        out['  of which polkit'] = polkit_in[-1][1] - polkit_out[0][0]
    if runtime:
        out['D runtime run --detach, answer'] = wait - runtime[0][0]
    out['F Wait to the CLI exit'] = (exits[0][0] if exits else end) - wait
    out['processes kilnd started'] = len({e[3] for e in runtime if e[4] == 'execve'})
    out['execve below kilnd'] = len(below)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--runs', type=int, default=9)
    parser.add_argument('--user')
    parser.add_argument('--build', help='build directory (default: build/ of this tree)')
    parser.add_argument('--isolation', default='oci', choices=('oci', 'chroot'))
    args = parser.parse_args()
    kh.require_root()
    if args.build:
        kh.BUILD_ROOT = os.path.abspath(args.build)
    print(f'build: {build_description(kh.BUILD_ROOT)}; as {args.user or "root"}, isolation {args.isolation}')
    print(f'load average: {" ".join(f"{x:.2f}" for x in os.getloadavg())}')
    with tempfile.TemporaryDirectory(prefix='kiln-perf-') as tmp:
        trace = os.path.join(tmp, 'trace')
        kilnd_children = {}
        kilnd, clients, wall = record(args, trace, kilnd_children)
        events, parent = parse(trace)
        for child, tid in kilnd_children.items():
            parent.setdefault(child, tid)
    rows = []
    for client in clients:
        try:
            rows.append(phases(events, parent, kilnd, client))
        except (StopIteration, IndexError):
            pass  # an event perf lost: the sample is left out
    print(f'wall (tracing included): median {statistics.median(wall):.1f} ms over {len(wall)}')
    for key in rows[0] if rows else []:
        values = [r[key] for r in rows if key in r]
        print(f'{key:34s} median {statistics.median(values):7.1f}  ' + ' '.join(f'{v:.1f}' for v in values))


if __name__ == '__main__':
    main()
