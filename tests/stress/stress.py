#!/usr/bin/env python3
"""Fault and load run of kilnd (not a test: it reports; see tests/stress/README.md).

    tests/stress/stress.py [--clients 10] [--runs 100] [--faults 2] [--state-size 64M] [--strict]

In the private environment of the integration tests (tools/kiln-env, through kiln_harness.Env),
CLIENTS threads each do RUNS runs one after another, mixed: as root and as kiln-alice (userns=auto),
isolation oci and chroot, through the `kiln run` CLI (Start and Wait) and through RunCaptured
(gdbus, which prints the D-Bus error name). Each run prints a token, writes and reads a file in the
container (on the builder's overlay, so on kilnd's state file system) and exits with a known status.
While they run, FAULTS times each (spread over the load, by progress):
  - kill -9 of kilnd, then kiln-env restart-kilnd;
  - kill -9 of a runc process of one of the runs;
  - kill -9 of a kiln-isolate process of one of the runs;
  - kill -9 of a client (the `kiln run` CLI) in the middle of its run;
  - a full state file system (DIR/state is a tmpfs of STATE_SIZE, filled to ENOSPC for 3 s);
  - a restart of polkitd.
A run that was in flight while a fault was injected is "faulted": its result is counted but not
judged. At the end, once kilnd is idle, it prints: runs attempted, wrong results (a run without a
fault whose status or output is not what it should be), errors by D-Bus error name (or the CLI's
message), and what is left over: mounts under DIR, bundle directories under DIR/run, processes of
runs (runc, runc init, kiln-isolate, the runs' own commands), zombies whose parent is kilnd,
kilnd's open descriptors and its RSS at the start and at the end.

Exit status 0 always (it reports); with --strict 1 if there were wrong results or leftovers.
Run as root from the source tree after a build (default build dir: ./build, or KILN_BUILD_ROOT).
"""
import argparse
import ast
import collections
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import kiln_harness as kh  # noqa: E402

ALICE = kh.ALICE
FAULT_KINDS = ('kill-kilnd', 'kill-runc', 'kill-isolate', 'kill-client', 'full-state', 'restart-polkitd')
MARK = 'kiln-stress'  # in every run's command line: how leftover processes of the runs are found
RUN_TIMEOUT = 60  # a run that takes longer is counted as hung ("timeout")
LINGER_SECONDS = 2


def read_file(path, default=''):
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except OSError:
        return default


def kilnd_pid(env):
    text = read_file(os.path.join(env.dir, 'kilnd.pid')).strip()
    return int(text) if text.isdigit() and os.path.exists(f'/proc/{text}') else None


def readlink(path):
    try:
        return os.readlink(path)
    except OSError:
        return ''


def proc_status(pid):
    fields = {}
    for line in read_file(f'/proc/{pid}/status').splitlines():
        key, _, value = line.partition(':')
        fields[key] = value.strip()
    return fields


def processes(cmdlines=True):
    """{pid: (comm, ppid, state, cmdline)} of every process (cmdline '' unless @cmdlines)."""
    result = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        stat = read_file(f'/proc/{name}/stat')
        if not stat:
            continue
        # comm may hold spaces and parentheses: it ends at the last ')'.
        comm = stat[stat.find('(') + 1:stat.rfind(')')]
        rest = stat[stat.rfind(')') + 2:].split()
        cmdline = read_file(f'/proc/{name}/cmdline').replace('\0', ' ').strip() if cmdlines else ''
        result[int(name)] = (comm, int(rest[1]), rest[0], cmdline)
    return result


def descendants(procs, root):
    children = collections.defaultdict(list)
    for pid, (_, ppid, _, _) in procs.items():
        children[ppid].append(pid)
    out, todo = set(), [root]
    while todo:
        for child in children[todo.pop()]:
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def fd_count(pid):
    try:
        return len(os.listdir(f'/proc/{pid}/fd'))
    except OSError:
        return -1


def rss_kib(pid):
    value = proc_status(pid).get('VmRSS', '-1 kB').split()[0]
    return int(value)


def mounts_under(directory):
    """Mount points under @directory, but not DIR/run's and DIR/state's own tmpfs."""
    own = {directory + '/run', directory + '/state'}
    found = []
    for line in read_file('/proc/self/mountinfo').splitlines():
        point = line.split()[4]
        for escaped, char in (('\\040', ' '), ('\\011', '\t'), ('\\012', '\n'), ('\\134', '\\')):
            point = point.replace(escaped, char)
        if point not in own and (point == directory or point.startswith(directory + '/')):
            found.append(point)
    return found


class Stress:
    def __init__(self, args):
        self.args = args
        self.env = kh.Env()
        self.lock = threading.Lock()
        self.total = args.clients * args.runs
        self.done = 0
        self.in_flight = {}  # run id -> set of faults injected while it ran
        self.active = set()  # faults under way: every run that starts or ends meanwhile has them
        self.changed = threading.Condition(self.lock)
        self.next_fault_at = self.total + 1  # clients wait here until the injector has begun the fault
        self.results = []    # (run id, user, isolation, via, expected, got, faults)
        self.errors = collections.Counter()
        self.faulted_errors = collections.Counter()
        self.faults = collections.Counter()
        self.fault_misses = collections.Counter()
        self.fault_log = []  # what each injection hit
        self.kill_client_wanted = 0
        self.long_run_wanted = 0  # runs that must outlive a kill of kilnd
        self.stop = threading.Event()
        self.builders = {}
        self.deadline = float('inf')  # clients start no run after it (--max-seconds)

    # -- setup --------------------------------------------------------------

    def setup(self):
        # Process objects linger only briefly, and root file systems not at all: an idle kilnd then
        # soon holds nothing, so what is left at the end is a leftover. (Not 0 s: `kiln run` calls
        # Wait after Start, and a command that exited in between would be gone.)
        self.env.setup(f'[Process]\nLingerSeconds={LINGER_SECONDS}\n[Run]\nKeepMountedSeconds=0\n',
                       state_tmpfs_size=self.args.state_size)
        base = self.env.scratch_dir('base')
        kh.make_busybox_rootfs(base)
        os.chmod(os.path.join(base, 'root'), 0o755)  # kiln-import reads the base as the caller
        for user, name in (('root', 'stress-root'), (ALICE, 'stress-alice')):
            self.env.kiln('from', '--name', name, base, user=None if user == 'root' else user, check=True)
            code, out, _ = self.gdbus(user, '/org/kiln/Builder1', 'org.kiln.Builder1.Manager.GetBuilder',
                                      name)
            if code != 0:
                raise RuntimeError(f'GetBuilder {name}: {out}')
            self.builders[user] = (name, re.search(r"objectpath '([^']+)'", out).group(1))
        # One run of each kind first: pool allotment, runc's first start, kiln-isolate's caches.
        for user in ('root', ALICE):
            for isolation in ('oci', 'chroot'):
                code, out, error = self.one_run(f'warm-{user}-{isolation}', user, isolation, 'cli', 0,
                                                judge=False)
                if code != 0 or error:
                    raise RuntimeError(f'the first {isolation} run as {user} failed: {error} (exit {code})')
        self.wait_idle()
        time.sleep(LINGER_SECONDS + 1)  # measured as the end is: with no Process object left
        self.start_pid = kilnd_pid(self.env)
        self.start_fds = fd_count(self.start_pid)
        self.start_rss = rss_kib(self.start_pid)

    def gdbus(self, user, path, method, *args, timeout=RUN_TIMEOUT):
        cmd = ['gdbus', 'call', '--system', '--dest', kh.KILN_BUS_NAME, '--object-path', path,
               '--method', method, *args]
        try:
            return self.env.run(cmd, user=None if user == 'root' else user, timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1, '', 'timeout'

    # -- one run ------------------------------------------------------------

    def command(self, run_id, status, sleep):
        token = f'{MARK}-{run_id}'
        # A long run sleeps in a loop, so that its shell (with the mark) stays in the process table.
        wait = (f'i=0; while [ $i -lt {sleep} ]; do sleep 1; i=$((i+1)); done' if sleep.isdigit()
                else f'sleep {sleep}')
        script = (f'echo {token} > /tmp/{token} && cat /tmp/{token} && rm /tmp/{token} && '
                  f'{wait} && exit {status}')
        # $0 is the mark, so the run's shell is found in the process table.
        return ['/bin/sh', '-c', script, token], token + '\n'

    def one_run(self, run_id, user, isolation, via, status, judge=True, sleep='0.1', kill_after=None):
        argv, expected_out = self.command(run_id, status, sleep)
        name, path = self.builders[user]
        with self.lock:
            self.in_flight[run_id] = set(self.active)
        code = out = err = None
        if via == 'cli':
            cmd = [self.env.kiln_cli, 'run', '--isolation', isolation, name, '--'] + argv
            if user != 'root':
                cmd = ['runuser', '-u', user, '--'] + cmd
            environ = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=environ, cwd='/', start_new_session=True)
            if kill_after is not None:
                time.sleep(kill_after)
                os.killpg(proc.pid, signal.SIGKILL)
                with self.lock:
                    self.in_flight[run_id].add('kill-client')
            try:
                out, err = proc.communicate(timeout=RUN_TIMEOUT)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                code, err = -1, 'timeout'
            error = None if code in (0, status) and not err.strip() else self.cli_error(code, err)
        else:
            gv_argv = '[' + ', '.join(repr(a) for a in argv) + ']'
            code_, text, err = self.gdbus(user, path, 'org.kiln.Builder1.Builder.RunCaptured', gv_argv,
                                          f"{{'isolation': <'{isolation}'>}}")
            error = None
            if code_ == 0:
                try:
                    code, out, _ = ast.literal_eval(text.strip())
                except (ValueError, SyntaxError):
                    code, out, error = -1, text, 'unparsable gdbus output'
            else:
                code, out = -1, ''
                m = re.search(r'GDBus\.Error:([\w.]+)', err)
                error = m.group(1) if m else f'gdbus: {err.strip()[:80]}'
        with self.lock:
            faults = self.in_flight.pop(run_id) | self.active
            if 'kill-client' in faults and kill_after is not None:
                error = None  # its own death, not an answer of kilnd's
            if error and judge:
                (self.faulted_errors if faults else self.errors)[error] += 1
            if judge:
                self.results.append((run_id, user, isolation, via, (status, expected_out), (code, out, err),
                                     faults))
                self.done += 1
                self.changed.notify_all()
        return code, out, error

    @staticmethod
    def cli_error(code, err):
        """The CLI prints messages, not error names: its own last line (after the command's stderr),
        without the variable parts."""
        lines = err.strip().splitlines()
        own = [line for line in lines if line.startswith('kiln:')]
        line = (own or lines or [f'exit {code}'])[-1]
        line = re.sub(r'[0-9a-f]{12,}', 'ID', re.sub(r'/[^ :\'"]+', 'PATH', line))
        name = re.search(r'([\w.]+\.Error\.\w+)', line)  # an error name the message quotes
        if name and len(line) > 100:
            line = line[:100 - len(name.group(1)) - 4] + f'… [{name.group(1)}]'
        return f'kiln run (exit {code}): {line[:100]}'

    def client(self, index):
        rng = random.Random(self.args.seed * 1000 + index)
        for j in range(self.args.runs):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                return
            user = 'root' if (index + j) % 2 == 0 else ALICE
            isolation = 'oci' if (j // 2) % 2 == 0 else 'chroot'
            via = 'cli' if rng.random() < 0.5 else 'captured'
            status = rng.choice((0, 0, 3, 42))
            kill_after = None
            with self.lock:
                # A fault is due: let the injector begin it, so that it always meets a load.
                while self.done >= self.next_fault_at and not self.stop.is_set():
                    self.changed.wait(0.1)
                sleep = '0.1'
                if self.kill_client_wanted:
                    self.kill_client_wanted -= 1
                    via, kill_after, sleep = 'cli', 0.5, '2'
                    self.fault_log.append(f'kill-client: run {index}-{j} ({user}, {isolation}) after 0.5 s')
                elif self.long_run_wanted:
                    self.long_run_wanted -= 1
                    sleep = '3600'
            self.one_run(f'{index}-{j}', user, isolation, via, status, sleep=sleep, kill_after=kill_after)

    # -- faults -------------------------------------------------------------

    def mark_in_flight(self, fault):
        with self.lock:
            for faults in self.in_flight.values():
                faults.add(fault)

    def window(self, fault, active):
        """A fault that lasts (kilnd down, a full file system, polkitd restarting): every run in flight
        or started meanwhile is faulted."""
        with self.lock:
            (self.active.add if active else self.active.discard)(fault)
            for faults in self.in_flight.values():
                faults.add(fault)

    def find_run_process(self, comm_prefix, timeout=10, cmdline_has=None, server=False):
        """A process of one of the runs (a descendant of kilnd) whose name starts with @comm_prefix
        (and whose command line has @cmdline_has); kilnd's isolate server only if @server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop.is_set():
            pid = kilnd_pid(self.env)
            if pid:
                procs = processes(cmdlines=bool(cmdline_has) or comm_prefix == 'kiln-isolate')
                for p in sorted(descendants(procs, pid)):
                    if p not in procs or not procs[p][0].startswith(comm_prefix):
                        continue
                    if cmdline_has and cmdline_has not in procs[p][3]:
                        continue
                    if self.is_isolate_server(procs, p) != server:
                        continue
                    return p
            time.sleep(0.01)
        return None

    def note(self, kind, what):
        with self.lock:
            self.fault_log.append(f'{kind}: {what} ({len(self.in_flight)} runs in flight)')

    def inject(self, kind):
        if kind == 'kill-kilnd':
            # With a long run's container alive (what becomes of it is the point), if it starts within
            # 20 s, and the usual runs in flight.
            with self.lock:
                self.long_run_wanted += 1
            long_run = self.find_run_process('sh', timeout=20, cmdline_has=MARK)
            pid = kilnd_pid(self.env)
            self.window(kind, True)
            self.note(kind, f'kilnd {pid}, a long run\'s shell {long_run} alive')
            os.kill(pid, signal.SIGKILL)
            while os.path.exists(f'/proc/{pid}') and proc_status(pid).get('State', 'Z')[0] != 'Z':
                time.sleep(0.05)
            try:
                self.env.restart_kilnd()
            finally:
                self.window(kind, False)
        elif kind in ('kill-runc', 'kill-isolate'):
            # These processes live for a command (create, start, delete): one may be gone between
            # finding it and killing it, so a few tries. For kiln-isolate, one serving a run's
            # command if one shows, else the server itself: the runs depend on both.
            for attempt in range(5):
                if kind == 'kill-runc':
                    pid = self.find_run_process('runc')
                else:
                    pid = self.find_run_process('kiln-isolate', timeout=3) if attempt < 4 else \
                        self.find_run_process('kiln-isolate', server=True)
                if pid is None:
                    continue
                comm = read_file(f'/proc/{pid}/comm').strip()
                server = read_file(f'/proc/{pid}/cmdline').replace('\0', ' ').strip().endswith(' serve')
                self.mark_in_flight(kind)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.note(kind, f'{comm} {pid}{" (the isolate server)" if server else ""}')
                break
            else:
                self.fault_misses[kind] += 1
                return
        elif kind == 'kill-client':
            with self.lock:
                self.kill_client_wanted += 1
        elif kind == 'full-state':
            filler = os.path.join(self.env.dir, 'state', 'stress-filler')
            self.window(kind, True)
            with open(filler, 'wb') as f:
                chunk = b'\0' * (1 << 20)
                try:
                    while True:
                        f.write(chunk)
                        f.flush()
                except OSError as e:
                    self.note(kind, f'filled to {f.tell() >> 20} MiB: {e.strerror}')
            time.sleep(3)
            os.unlink(filler)
            self.window(kind, False)
        elif kind == 'restart-polkitd':
            self.window(kind, True)
            self.note(kind, 'kiln-env restart-polkitd')
            try:
                self.env.restart_polkitd()
            finally:
                self.window(kind, False)
        self.faults[kind] += 1

    def injector(self):
        """FAULTS rounds of every kind, each at an even share of the progress of the load (the last
        one with a share still to go)."""
        plan = [kind for _ in range(self.args.faults) for kind in FAULT_KINDS]
        thresholds = [max(1, self.total * (n + 1) // (len(plan) + 2)) for n in range(len(plan))]
        with self.lock:
            self.next_fault_at = thresholds[0] if plan else self.total + 1
        for n, kind in enumerate(plan):
            with self.lock:
                while self.done < thresholds[n] and not self.stop.is_set():
                    self.changed.wait(0.1)
                if self.stop.is_set():
                    return
                self.next_fault_at = thresholds[n + 1] if n + 1 < len(plan) else self.total + 1
                self.changed.notify_all()
            try:
                self.inject(kind)
            except Exception as e:  # a failed injection is reported, the load goes on
                self.fault_misses[f'{kind} ({type(e).__name__}: {e})'] += 1

    # -- the end ------------------------------------------------------------

    def is_isolate_server(self, procs, pid):
        """kiln-isolate's server (isolate-server.c): kilnd keeps it for the life of kilnd."""
        comm, ppid, _, cmdline = procs[pid]
        return comm == 'kiln-isolate' and ppid == kilnd_pid(self.env) and cmdline.endswith(' serve')

    def run_processes(self):
        """Processes of the runs: below kilnd (but its isolate server), or elsewhere (orphans of a
        killed kilnd, runc init re-parented) when their command line, working directory or root is in
        DIR or carries the runs' mark. Other environments' runc processes on this host are not ours."""
        pid = kilnd_pid(self.env)
        procs = processes()
        under = descendants(procs, pid) if pid else set()
        found = []
        for p, (comm, ppid, state, cmdline) in sorted(procs.items()):
            if p == os.getpid() or p not in procs:
                continue
            # A `runc init` re-parented to init has only its environment to say whose it is.
            where = ' '.join(readlink(f'/proc/{p}/{link}') for link in ('cwd', 'root'))
            ours = p in under or MARK in cmdline or self.env.dir in cmdline or self.env.dir in where or \
                self.env.dir in read_file(f'/proc/{p}/environ')
            if not ours or self.is_isolate_server(procs, p) or (state == 'Z' and ppid == pid):
                continue  # (kilnd's zombies are counted as such)
            if comm in ('dbus-daemon', 'polkitd', 'unshare', 'gdbus', 'kiln', 'runuser') or 'kiln-env' in cmdline:
                continue  # the environment itself and the clients
            found.append(f'{p} {comm} (ppid {ppid}, state {state}): {cmdline[:120]}')
        return found

    def wait_idle(self, timeout=30):
        """Until no process of a run is left (or @timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if kilnd_pid(self.env) and not self.run_processes():
                return True
            time.sleep(0.2)
        return False

    def leftovers(self):
        pid = kilnd_pid(self.env)
        procs = processes()
        zombies = [f'{p} {c[0]}' for p, c in sorted(procs.items()) if c[2] == 'Z' and c[1] == pid]
        bundles_dir = os.path.join(self.env.dir, 'run', 'bundles')
        bundles = sorted(os.listdir(bundles_dir)) if os.path.isdir(bundles_dir) else []
        # Runs' cgroups are named kiln-<builder id's first 12>-<n>, under each v1 controller or v2.
        prefixes = tuple(f'kiln-{path.rsplit("/", 1)[1][:12]}-' for _, path in self.builders.values())
        cgroups = set()
        for top in ['/sys/fs/cgroup'] + [os.path.join('/sys/fs/cgroup', c) for c in os.listdir('/sys/fs/cgroup')]:
            try:
                cgroups.update(n for n in os.listdir(top) if n.startswith(prefixes))
            except OSError:
                pass
        return {
            'mounts': mounts_under(self.env.dir),
            'cgroups': sorted(cgroups),
            'bundles': bundles,
            'processes': self.run_processes(),
            'zombies': zombies,
        }

    def kill_leftovers(self):
        """After the report: the runs' processes that outlived everything would otherwise stay on
        the host (a long run sleeps for an hour)."""
        if self.env.dir is None:
            return
        for p, (_, _, _, cmdline) in processes().items():
            if MARK in cmdline or (self.env.dir in read_file(f'/proc/{p}/environ') and p != os.getpid()):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    def report(self, elapsed, idle):
        wrong = []
        faulted = 0
        for run_id, user, isolation, via, expected, got, faults in self.results:
            if faults:
                faulted += 1
                continue
            status, out = expected
            code, text, err = got
            if code != status or text != out:
                wrong.append(f'{run_id} {user} {isolation} {via}: expected exit {status}, got {code}; '
                             f'stdout {text!r}; stderr {(err or "").strip()[:160]!r}')
        left = self.leftovers()
        pid = kilnd_pid(self.env)
        end_fds, end_rss = (fd_count(pid), rss_kib(pid)) if pid else (-1, -1)

        print(f'== kiln stress: {self.args.clients} clients x {self.args.runs} runs, '
              f'{elapsed:.0f} s, build {self.env.build_root}')
        print(f'runs attempted: {len(self.results)} of {self.total} '
              f'({faulted} with a fault injected while in flight)')
        hung = sum(1 for r in self.results if r[5][2] == 'timeout')
        if hung or len(self.results) < self.total:
            print(f'hung runs (no answer in {RUN_TIMEOUT} s): {hung}; runs not started (--max-seconds '
                  f'{self.args.max_seconds} reached): {self.total - len(self.results)}')
        print('faults injected: ' + (', '.join(f'{k} {v}' for k, v in sorted(self.faults.items())) or 'none'))
        for line in self.fault_log:
            print(f'    {line}')
        if self.fault_misses:
            print('faults not injected: ' + ', '.join(f'{k} {v}' for k, v in sorted(self.fault_misses.items())))
        print(f'wrong results (no fault): {len(wrong)}')
        for line in wrong[:20]:
            print(f'    {line}')
        for title, counter in (('errors (no fault)', self.errors),
                               ('errors (runs with a fault)', self.faulted_errors)):
            print(f'{title}: {sum(counter.values())}')
            for name, n in counter.most_common():
                print(f'    {n:5d}  {name}')
        print(f'kilnd idle at the end: {"yes" if idle else "no (processes still under kilnd after 30 s)"}')
        print('leftovers:')
        for kind in ('mounts', 'bundles', 'processes', 'zombies', 'cgroups'):
            print(f'    {kind}: {len(left[kind])}')
            for line in left[kind][:15]:
                print(f'        {line}')
            if len(left[kind]) > 15:
                print(f'        ... {len(left[kind]) - 15} more')
        restarted = '' if pid == self.start_pid else f' (kilnd restarted: pid {self.start_pid} then {pid})'
        print(f'kilnd open fds: start {self.start_fds}, end {end_fds}{restarted}')
        print(f'kilnd VmRSS: start {self.start_rss} kB, end {end_rss} kB')
        return bool(wrong) or any(left[k] for k in left)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clients', type=int, default=10)
    parser.add_argument('--runs', type=int, default=100, help='runs per client')
    parser.add_argument('--faults', type=int, default=2, help='rounds of every kind of fault (0: load only)')
    parser.add_argument('--state-size', default='64M', help="size of DIR/state's tmpfs")
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--max-seconds', type=int, default=1200,
                        help='start no run after this long (runs hang when kilnd does); then report')
    parser.add_argument('--strict', action='store_true', help='exit 1 on wrong results or leftovers')
    args = parser.parse_args()
    kh.require_root()

    s = Stress(args)
    bad = False
    try:
        s.setup()
        started = time.monotonic()
        s.deadline = started + args.max_seconds
        clients = [threading.Thread(target=s.client, args=(i,)) for i in range(args.clients)]
        injector = threading.Thread(target=s.injector)
        for t in clients + [injector]:
            t.start()
        for t in clients:
            t.join()
        s.stop.set()
        injector.join()
        elapsed = time.monotonic() - started
        idle = s.wait_idle()
        time.sleep(LINGER_SECONDS + 1)  # the last Process objects go, kilnd cleans up after them
        bad = s.report(elapsed, idle)
    finally:
        s.stop.set()
        s.kill_leftovers()
        s.env.keep = bool(os.environ.get('KILN_KEEP_ENV'))
        s.env.stop()
    sys.exit(1 if bad and args.strict else 0)


if __name__ == '__main__':
    main()
