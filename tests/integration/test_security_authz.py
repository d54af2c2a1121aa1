#!/usr/bin/env python3
"""Limits around authorization, tried as a member of group kiln (kiln-alice) would.

- ProcessesPerUser is a limit: a burst of Start calls, all in flight at polkit at once, starts no
  more processes than the limit (counted on the bus and in the host's process table), and every
  slot comes back (refusal, a caller that leaves, a process that ends).
- One user's burst of calls that need polkit neither makes kilnd exceed the bus's pending-reply
  limit nor turns another user's call into AccessDenied: past AuthorizationsPerUser (and
  MaxAuthorizations) calls answer LimitExceeded, naming the limit.
- A hung polkitd costs a caller at most AuthorizationTimeoutSeconds, answered Busy naming polkit;
  a polkitd that dies while asked is asked again once, of the next polkitd.
- kilnd logs no "No such cancellation_id" when a client lists builders and leaves.

polkitd is stopped (SIGSTOP) where a test needs calls to stay in flight: then what kilnd lets
through to polkit is exact, not a race with polkitd's answers."""
import json
import os
import pwd
import select
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

PROCESSES_PER_USER = 4
AUTHORIZATIONS_PER_USER = 16
BASE_CONF = ('[Limits]\n'
             f'ProcessesPerUser={PROCESSES_PER_USER}\n'
             f'AuthorizationsPerUser={AUTHORIZATIONS_PER_USER}\n'
             'MaxAuthorizations=100\n'
             'AuthorizationTimeoutSeconds=60\n')

# A third user in group kiln, made for this module: kiln-bob is not in kiln, and changing his
# groups would change what other tests see.
CAROL = 'kiln-carol'

E_POLKIT_REFUSED = (kt.E_INTERACTIVE, kt.E_ACCESS_DENIED)
# The header flag ALLOW_INTERACTIVE_AUTHORIZATION.
FLAG_ALLOW_INTERACTIVE = 0x4


def setUpModule():
    if os.geteuid() == 0 and not _user_exists(CAROL):
        subprocess.run(['useradd', '--create-home', '--shell', '/bin/bash', '-K', 'SUB_UID_COUNT=0',
                        '-K', 'SUB_GID_COUNT=0', '--groups', 'kiln', CAROL],
                       check=True, capture_output=True)
    kt.setup_module(BASE_CONF)


def tearDownModule():
    try:
        kt.teardown_module()
    finally:
        if os.geteuid() == 0 and _user_exists(CAROL):
            subprocess.run(['userdel', '--remove', CAROL], capture_output=True)


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# -- a client that pipelines calls --------------------------------------------------------------

# Run by a test user after kiln_testlib's own source (its minimal D-Bus client): sends every call
# of the spec at once over one or more connections, then prints one JSON line per reply as it
# arrives. Method calls from one connection beyond the bus's 128 pending replies would be refused
# by the bus itself, so a burst bigger than that uses several connections.
_PIPELINE = r'''
def _pipeline_main(address, spec_json):
    spec = json.loads(spec_json)
    conns = []
    for _ in range(spec.get('connections', 1)):
        c = _Connection(address)
        hello, _ = c.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
        conns.append(c)
    index = {}
    for i, call in enumerate(spec['calls']):
        k = i % len(conns)
        serial = conns[k].call(BUS_NAME, call['path'], call['interface'], call['member'],
                               call.get('signature', ''), call.get('args', []), flags=call.get('flags', 0))
        index[(k, serial)] = i
    print(json.dumps({'sent': len(index)}), flush=True)
    if spec.get('leave'):
        return 0
    left = len(index)
    deadline = time.monotonic() + spec.get('timeout', 120)
    while left and time.monotonic() < deadline:
        ready, _, _ = select.select([c.sock for c in conns], [], [], max(0.0, deadline - time.monotonic()))
        for k, c in enumerate(conns):
            if c.sock not in ready:
                continue
            chunk = c.sock.recv(65536)
            if not chunk:
                raise EOFError('bus closed the connection')
            c.inbuf += chunk
            m = c._parse()
            while m is not None:
                i = index.get((k, m.get('reply_serial')))
                if m['type'] in ('method_return', 'error') and i is not None:
                    print(json.dumps({'i': i, 'type': m['type'], 'error_name': m.get('error_name'),
                                      'sender': m.get('sender'), 'body': m.get('body')}, default=str), flush=True)
                    left -= 1
                m = c._parse()
    print(json.dumps({'done': left == 0}), flush=True)
    # Stays on the bus until told to go (stdin closes): a caller that leaves drops its checks.
    sys.stdin.buffer.read()
    return 0

sys.exit(_pipeline_main(sys.argv[2], sys.argv[3]))
'''


class Pipeline:
    """@calls sent at once by @user (see _PIPELINE); replies collected by index."""

    def __init__(self, env, user, calls, connections=1, leave=False):
        with open(kt.__file__) as f:
            source = f.read() + _PIPELINE
        spec = {'calls': calls, 'connections': connections, 'leave': leave}
        cmd = ['runuser', '-u', user, '--', kt.USER_PYTHON, '-c', source, 'pipeline', env.bus_address,
               json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd='/')
        self.n = len(calls)
        self._buffer = b''
        self.replies = {}
        self.done = False
        first = self._line(30)
        if not first or first.get('sent') != self.n:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ''
            self.close()
            raise RuntimeError(f'pipeline as {user} did not send its calls: {first!r} {err}')

    def _line(self, timeout):
        """The next JSON line within @timeout seconds, or None. Reads the pipe itself: a buffered
        reader would hold lines that select() no longer sees."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b'\n' not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b'\n', 1)
        return json.loads(line)

    def collect(self, timeout, quiet=None):
        """Reads replies until all are in or @timeout passes; with @quiet, also stops once no reply
        came for that many seconds. Returns the replies so far."""
        deadline = time.monotonic() + timeout
        while len(self.replies) < self.n and not self.done:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            m = self._line(min(left, quiet) if quiet else left)
            if m is None:
                break
            if 'done' in m:
                self.done = True
            elif 'i' in m:
                self.replies[m['i']] = m
        return self.replies

    def close(self):
        kt.close_client(self.proc, timeout=10)


def start_call(path, argv, options=None):
    options = dict({'detach': ('b', True)}, **(options or {}))
    return {'path': path, 'interface': kt.BUILDER_IFACE, 'member': 'Start', 'signature': 'asa{sv}',
            'args': [argv, options]}


def mount_call(path):
    return {'path': path, 'interface': kt.BUILDER_IFACE, 'member': 'Mount'}


class AuthzLimits(kt.KilnTestCase):

    def setUp(self):
        self.stopped_polkitd = None
        self.conf_changed = False
        self.pipelines = []

    def tearDown(self):
        if self.stopped_polkitd:
            os.kill(self.stopped_polkitd, signal.SIGCONT)
        for p in self.pipelines:
            p.close()
        if self.conf_changed:
            self.reconfigure(BASE_CONF)
        for entry in self.list_builders():
            r = self.remove(entry[4], force=True)
            self.assertTrue(r.ok, f'cleanup: Remove(force) {entry[1]}: {r}')
        self.assertEqual(self.sleeps(), [], 'processes left after the test')

    # -- helpers ------------------------------------------------------------------------------

    def pipeline(self, user, calls, **kwargs):
        p = Pipeline(self.env, user, calls, **kwargs)
        self.pipelines.append(p)
        return p

    def reconfigure(self, conf):
        with open(os.path.join(self.env.dir, 'kiln.conf.extra'), 'w') as f:
            f.write(conf)
        self.env.restart_kilnd()
        self.conf_changed = conf != BASE_CONF

    def polkitd_pid(self):
        with open(os.path.join(self.env.dir, 'polkitd.pid')) as f:
            return int(f.read().strip())

    def kilnd_pid(self):
        with open(os.path.join(self.env.dir, 'kilnd.pid')) as f:
            return int(f.read().strip())

    def stop_polkitd(self):
        self.stopped_polkitd = self.polkitd_pid()
        os.kill(self.stopped_polkitd, signal.SIGSTOP)

    def continue_polkitd(self):
        os.kill(self.stopped_polkitd, signal.SIGCONT)
        self.stopped_polkitd = None

    def sleeps(self):
        """The sleep commands of containers: processes named sleep below kilnd (a subreaper)."""
        return sorted(pid for pid, (comm, state) in kt.processes_below(self.kilnd_pid()).items()
                      if comm == 'sleep' and state not in 'ZX')

    def live_processes(self, owner):
        """Process objects of @owner that have not exited, as root sees them on the bus."""
        found = []
        for path, interfaces in self.managed_objects().items():
            props = interfaces.get(kr.PROCESS_IFACE)
            if props and props['Owner']['data'] == owner and props['State']['data'] != 'exited':
                found.append(path)
        return found

    def alices_builder(self, name, run=True):
        if run:
            # Her own tree, as a user hands kiln one: she must be able to read all of it.
            rootfs = kt.kh.make_busybox_rootfs(self.unique_scratch_dir('rootfs'), owner=kt.ALICE)
            self.env.kiln('from', '--name', name, rootfs, user=kt.ALICE, check=True)
        else:
            self.create(name, 'scratch', user=kt.ALICE)
        return self.get_builder(name, user=kt.ALICE).object_path()

    def kill_all(self, owner):
        for path in self.live_processes(owner):
            self.gcall(path, kr.PROCESS_IFACE + '.Kill', kt.gv_str('SIGKILL'))
        deadline = time.monotonic() + 30
        while (self.live_processes(owner) or self.sleeps()) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.live_processes(owner), [])

    def burst_of_starts(self, path, n):
        """@n Start calls of `sleep 30` from one connection of alice at once: (ok paths, refusals)."""
        p = self.pipeline(kt.ALICE, [start_call(path, ['sleep', '30']) for _ in range(n)])
        replies = p.collect(120)
        self.assertEqual(len(replies), n, f'replies: {replies}')
        ok = [r['body'][0] for r in replies.values() if r['type'] == 'method_return']
        refused = [r for r in replies.values() if r['type'] == 'error']
        return ok, refused

    def assert_limit_refusals(self, refused, names):
        for r in refused:
            self.assertEqual(r['error_name'], kt.E_LIMIT, r)
            self.assertTrue(any(name in r['body'][0] for name in names), r)

    # -- ProcessesPerUser -----------------------------------------------------------------------

    def test_processes_per_user_is_a_limit(self):
        alice = self.uid(kt.ALICE)
        path = self.alices_builder('burst')
        for round_ in range(2):
            # Thirty Starts at once: every one of them passes the count before polkit answers the
            # first, unless the count includes the calls still being authorized.
            ok, refused = self.burst_of_starts(path, 30)
            self.assertEqual(len(ok), PROCESSES_PER_USER, f'round {round_}: started {ok}; refused {refused}')
            self.assert_limit_refusals(refused, ['ProcessesPerUser'])
            deadline = time.monotonic() + 30
            while len(self.sleeps()) < PROCESSES_PER_USER and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(len(self.live_processes(alice)), PROCESSES_PER_USER)
            self.assertEqual(len(self.sleeps()), PROCESSES_PER_USER, 'sleep processes on the host')
            # The processes' slots come back when they end: the next round gets as many again.
            self.kill_all(alice)

    def test_process_slots_come_back(self):
        alice = self.uid(kt.ALICE)
        path = self.alices_builder('slots')
        # Refused by polkit (network=host needs run-privileged, which alice lacks): each refusal
        # gives its slot back.
        p = self.pipeline(kt.ALICE, [start_call(path, ['sleep', '30'], {'network': ('s', 'host')})
                                     for _ in range(3 * PROCESSES_PER_USER)])
        replies = p.collect(60)
        self.assertTrue(all(r['error_name'] in E_POLKIT_REFUSED + (kt.E_LIMIT,) for r in replies.values()),
                        replies)
        self.assertTrue(any(r['error_name'] in E_POLKIT_REFUSED for r in replies.values()), replies)
        # A caller that leaves while polkit is asked: its calls are dropped, and their slots go.
        self.stop_polkitd()
        Pipeline(self.env, kt.ALICE, [start_call(path, ['sleep', '30']) for _ in range(PROCESSES_PER_USER)],
                 leave=True).close()
        time.sleep(1)
        self.continue_polkitd()
        ok, refused = self.burst_of_starts(path, PROCESSES_PER_USER + 2)
        self.assertEqual(len(ok), PROCESSES_PER_USER, refused)
        self.assert_limit_refusals(refused, ['ProcessesPerUser'])
        self.kill_all(alice)

    # -- a burst of authorization checks ----------------------------------------------------------

    def test_burst_does_not_starve_other_users(self):
        path = self.alices_builder('mounts', run=False)
        self.stop_polkitd()
        # 300 Mount calls (alice lacks the mount action: polkit refuses each, but it must be asked)
        # over three connections, while polkitd does not answer.
        p = self.pipeline(kt.ALICE, [mount_call(path) for _ in range(300)], connections=3)
        early = dict(p.collect(20, quiet=2))
        # Another member of kiln creates a builder meanwhile.
        carol = subprocess.Popen(
            ['runuser', '-u', CAROL, '--', 'gdbus', 'call', '--system', '--dest', kt.BUS_NAME, '--object-path',
             kt.MANAGER_PATH, '--method', kt.MANAGER_IFACE + '.CreateBuilder', kt.gv_str('carols'), kt.gv_str('scratch'),
             '@a{sv} {}'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd='/',
            env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address))
        time.sleep(1)
        self.continue_polkitd()
        out, err = carol.communicate(timeout=60)
        replies = p.collect(60)
        self.assertEqual(carol.returncode, 0, f'carol\'s CreateBuilder: {out} {err}')
        self.assertIn('carols', [e[1] for e in self.list_builders()])

        self.assertEqual(len(replies), 300)
        names = {}
        for r in replies.values():
            names[r['error_name']] = names.get(r['error_name'], 0) + 1
            self.assertNotEqual(r['error_name'], kt.E_ACCESS_DENIED, r)
            # Every reply is kilnd's (none from the bus refusing alice's own calls).
            self.assertNotEqual(r['sender'], 'org.freedesktop.DBus', r)
        # Exactly AuthorizationsPerUser reached polkit; the rest were refused at once, naming the
        # limit, without waiting for polkitd.
        self.assertEqual(names, {kt.E_INTERACTIVE: AUTHORIZATIONS_PER_USER,
                                 kt.E_LIMIT: 300 - AUTHORIZATIONS_PER_USER}, names)
        self.assertEqual(len(early), 300 - AUTHORIZATIONS_PER_USER, 'refusals did not come at once')
        self.assert_limit_refusals([r for r in replies.values() if r['error_name'] == kt.E_LIMIT],
                                   ['AuthorizationsPerUser'])

    def test_max_authorizations(self):
        self.reconfigure(BASE_CONF.replace(f'AuthorizationsPerUser={AUTHORIZATIONS_PER_USER}',
                                           'AuthorizationsPerUser=1000')
                         .replace('MaxAuthorizations=100', 'MaxAuthorizations=20'))
        path = self.alices_builder('mounts-all', run=False)
        self.stop_polkitd()
        p = self.pipeline(kt.ALICE, [mount_call(path) for _ in range(100)])
        early = dict(p.collect(20, quiet=2))
        r = self.create_call('carol-busy', user=CAROL)
        self.assertError(r, kt.E_LIMIT, 'MaxAuthorizations')
        self.continue_polkitd()
        replies = p.collect(60)
        names = {}
        for reply in replies.values():
            names[reply['error_name']] = names.get(reply['error_name'], 0) + 1
        self.assertEqual(names, {kt.E_INTERACTIVE: 20, kt.E_LIMIT: 80}, names)
        self.assertEqual(len(early), 80)
        self.assert_limit_refusals([r for r in replies.values() if r['error_name'] == kt.E_LIMIT],
                                   ['MaxAuthorizations'])
        # Once polkitd has answered, there is room again.
        self.create('carol-ok', user=CAROL)

    # -- polkitd hung, gone, restarted ------------------------------------------------------------

    def test_hung_polkitd_is_bounded(self):
        self.reconfigure(BASE_CONF.replace('AuthorizationTimeoutSeconds=60', 'AuthorizationTimeoutSeconds=2\n'
                                           'InteractiveAuthorizationTimeoutSeconds=3'))
        self.stop_polkitd()
        before = time.monotonic()
        r = self.gcall(kt.MANAGER_PATH, kt.MANAGER_IFACE + '.CreateBuilder', kt.gv_str('hung'), kt.gv_str('scratch'), '@a{sv} {}',
                       user=kt.ALICE, timeout=20)
        elapsed = time.monotonic() - before
        self.assertError(r, kt.E_BUSY, 'polkit')
        self.assertIn('2 s', r.message)
        self.assertLess(elapsed, 8, f'answered after {elapsed:.1f} s')
        self.assertGreater(elapsed, 1.5)
        self.assertEqual(self.list_builders(), [])
        # A call that lets polkit ask for a password has its own bound.
        before = time.monotonic()
        p = self.pipeline(kt.ALICE, [{'path': kt.MANAGER_PATH, 'interface': kt.MANAGER_IFACE,
                                      'member': 'CreateBuilder', 'signature': 'ssa{sv}',
                                      'args': ['hung-interactive', 'scratch', {}],
                                      'flags': FLAG_ALLOW_INTERACTIVE}])
        reply = p.collect(20).get(0, {})
        elapsed = time.monotonic() - before
        self.assertEqual((reply['type'], reply.get('error_name')), ('error', kt.E_BUSY), reply)
        self.assertIn('polkit', reply['body'][0])
        self.assertIn('3 s', reply['body'][0])
        self.assertLess(elapsed, 9, f'answered after {elapsed:.1f} s')
        self.assertGreater(elapsed, 2.5)
        self.assertEqual(self.list_builders(), [])
        self.continue_polkitd()
        # kilnd still serves, and the late answer to the abandoned question changes nothing.
        self.create('after-hang', user=kt.ALICE)
        self.assertEqual([e[1] for e in self.list_builders()], ['after-hang'])

    def test_polkitd_restarted_between_calls(self):
        self.create('before-restart', user=kt.ALICE)
        self.env.restart_polkitd()
        self.create('after-restart', user=kt.ALICE)

    def test_polkitd_dies_while_asked(self):
        # polkitd dies with the question in flight: the bus answers kilnd NoReply, and kilnd asks
        # the next polkitd once it owns the name.
        self.stop_polkitd()
        pid = self.stopped_polkitd
        caller = subprocess.Popen(
            ['runuser', '-u', kt.ALICE, '--', 'gdbus', 'call', '--system', '--dest', kt.BUS_NAME, '--object-path',
             kt.MANAGER_PATH, '--method', kt.MANAGER_IFACE + '.CreateBuilder', kt.gv_str('retried'), kt.gv_str('scratch'),
             '@a{sv} {}'],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd='/',
            env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address))
        time.sleep(1)
        os.kill(pid, signal.SIGKILL)
        self.stopped_polkitd = None
        deadline = time.monotonic() + 10
        while kt.is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        self.env.restart_polkitd()
        out, err = caller.communicate(timeout=60)
        self.assertEqual(caller.returncode, 0, f'{out} {err}')
        self.assertIn('retried', [e[1] for e in self.list_builders()])

    # -- noise in the logs ----------------------------------------------------------------------

    def test_no_cancellation_id_errors(self):
        # Root's builder: alice's listing touches someone else's builder, so kilnd asks polkit
        # about manage-all for her connection, which leaves right after.
        self.create('roots')
        for _ in range(5):
            self.env.kiln('containers', user=kt.ALICE, check=True)
        time.sleep(1)
        for name in ('kilnd.log', 'polkitd.log'):
            with open(os.path.join(self.env.dir, name), errors='replace') as f:
                noise = [line for line in f if 'cancellation_id' in line]
            self.assertEqual(noise, [], name)


if __name__ == '__main__':
    kt.main()
