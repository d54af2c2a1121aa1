#!/usr/bin/env python3
"""What one user can make kilnd keep, and what kilnd does when the bus or its descriptors run out
(issue "Hardening", items 3 and 4).

- argv and env past [Limits] ArgumentBytes: LimitExceeded naming argv, nothing started;
- a user's lingering Process objects with large argvs: GetManagedObjects still answers and kilnd
  stays on the bus, the same process (before, 140 exited runs of 240 KB made the reply pass the
  bus's 32 MiB message limit and dbus-daemon dropped kilnd);
- GetManagedObjects that would pass the bus limit anyway (limits raised by the administrator):
  LimitExceeded, kilnd still on the bus;
- the same through images (issue "Images out"): a user's committed images with large configs are
  counted in GetManagedObjects' estimate (LimitExceeded, kilnd stays, another user still lists), and
  names per image stay bounded when the same commit is repeated under new names;
- descriptors: a user's detached runs up to the limit leave root able to run (kilnd started with
  the soft limit systemd gives services, 1024), kilnd's descriptors per run are bounded, and a run
  past [Limits] DescriptorsPerUser answers LimitExceeded; kilnd's soft limit is raised, a helper it
  executes gets the original one back;
- kilnd exits non-zero when it loses the bus (dbus-daemon goes away), so Restart=on-failure
  restarts it.
"""
import json
import os
import resource
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

# kilnd inherits the test's limits through kiln-env: start it with systemd's default soft limit.
SOFT_NOFILE = 1024
# A run with its three stdio descriptors counts 18 against DescriptorsPerUser: alice reaches it
# with DESCRIPTOR_RUNS runs, before ProcessesPerUser.
DESCRIPTOR_RUNS = 40
DESCRIPTORS_PER_USER = 18 * DESCRIPTOR_RUNS
# The DESCRIPTOR_RUNS clients start at once: their polkit checks may all be in flight together.
EXTRA_CONF = f"""[Limits]
ProcessesPerUser=70
DescriptorsPerUser={DESCRIPTORS_PER_USER}
AuthorizationsPerUser={DESCRIPTOR_RUNS + 10}
"""
# Descriptors kilnd keeps per running `kiln run` with pipes: measured 1 (its pidfd; the caller's
# stdio went to the runtime), 7 before the caller's descriptors were closed once the container ran.
MAX_FDS_PER_RUN = 2

ARGUMENT_BYTES = 262144          # the default
PROCESS_BYTES_PER_USER = 4194304  # the default


def setUpModule():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * SOFT_NOFILE:
        raise unittest.SkipTest(f'the hard descriptor limit ({hard}) is too low for this test')
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, hard))
    try:
        kr.setup_module(EXTRA_CONF)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


tearDownModule = kr.teardown_module
_ALICE_ROOTFS = None


def big_argv(strings, length=4000, command='no-such-command'):
    """A command line of @strings strings of @length bytes after @command."""
    return [command] + [chr(ord('a') + i % 26) * length for i in range(strings)]


def argv_bytes(argv):
    return sum(len(a) + 1 for a in argv)


def nofile_limits(pid):
    with open(f'/proc/{pid}/limits') as f:
        for line in f:
            if line.startswith('Max open files'):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f'no "Max open files" in /proc/{pid}/limits')


class BusLimits(kr.RunTestCase):
    isolation = 'oci'

    def setUp(self):
        super().setUp()
        self.pid = self.kilnd_pid()

    def alice_builder(self):
        global _ALICE_ROOTFS
        if _ALICE_ROOTFS is None:
            # kiln-import reads it as alice: everything readable.
            _ALICE_ROOTFS = kr.make_run_rootfs(self.unique_scratch_dir('alice-rootfs'),
                                               extra=lambda path: os.chmod(os.path.join(path, 'root'), 0o755))
        name = self.unique_name('alice')
        code, out, err = self.env.kiln('from', '--name', name, _ALICE_ROOTFS, user=kt.ALICE)
        self.assertEqual(code, 0, f'kiln from as alice: {err}')
        return self.get_builder(name, user=kt.ALICE).object_path()

    def busctl_run(self, path, argv, user=kt.ALICE, method='Run', options=(), n_options=None):
        """Run (or Start) through busctl: each argv string is an argument of its own, so a
        command line of a MiB passes where gdbus's one GVariant text argument could not.
        @options in busctl's spelling (KEY TYPE VALUE...), @n_options entries (default: triples)."""
        return self.busctl(*self.run_args(path, argv, method, options, n_options), user=user, check=False)

    @staticmethod
    def run_args(path, argv, method, options, n_options):
        options = list(options)
        if n_options is None:
            n_options = len(options) // 3
        return ['call', kt.BUS_NAME, path, kt.BUILDER_IFACE, method, 'asa{sv}', str(len(argv)), *argv,
                str(n_options), *options]

    def raw(self, path, member, argv, options=None, user=kt.ALICE):
        """Run or Start through kiln_testlib's own client, its call read from stdin (a command
        line of a MiB is no single argument), so the reply's error name is seen: busctl prints
        only the message. The reply as a dict (type, error_name, body)."""
        return self.raw_call(path, kt.BUILDER_IFACE, member, 'asa{sv}', [argv, options or {}], user=user)

    def raw_call(self, path, interface, member, signature, args, user=kt.ALICE):
        """Any call through that client, read from stdin; variants as [signature, value]."""
        with open(kt.__file__) as f:
            source = f.read() + '\nsys.exit(_call_main(sys.argv[1], sys.stdin.read()))\n'
        spec = {'path': path, 'interface': interface, 'member': member, 'signature': signature,
                'args': args}
        code, out, err = self.env.run([kt.USER_PYTHON, '-c', source, self.env.bus_address],
                                      user=user, input=json.dumps(spec))
        self.assertEqual(code, 0, f'raw {member} as {user or "root"} failed: {err}')
        return json.loads(out)

    def run_refused(self, path, argv, method='Run', options=None, names=('argv',)):
        """Asserts LimitExceeded, with a message that contains each of @names."""
        reply = self.raw(path, method, argv, options)
        self.assertEqual(reply['type'], 'error', reply['type'])
        self.assertEqual(reply.get('error_name'), kt.E_LIMIT, reply.get('body'))
        message = reply['body'][0]
        for fragment in names:
            self.assertIn(fragment, message)
        return message

    def tearDown(self):
        if self.fd_baseline is not None:
            super().tearDown()

    def processes_of(self, user):
        objects = self.managed_objects(user=user)
        return {p: o[kr.PROCESS_IFACE] for p, o in objects.items() if kr.PROCESS_IFACE in o}

    def assert_kilnd_same(self):
        self.assertTrue(self.env.name_has_owner(kt.BUS_NAME), 'kilnd is no longer on the bus')
        self.assertEqual(self.kilnd_pid(), self.pid)
        self.assertTrue(os.path.exists(f'/proc/{self.pid}'), 'kilnd exited')

    # -- (a) ------------------------------------------------------------------------

    def test_argv_past_argument_bytes(self):
        b = self.alice_builder()
        argv = big_argv(80)  # 320 KB
        self.assertGreater(argv_bytes(argv), ARGUMENT_BYTES)
        before = self.processes_of(kt.ALICE)
        self.run_refused(b, argv, names=('argv', str(ARGUMENT_BYTES)))
        self.run_refused(b, argv, method='Start', options={'detach': ['b', True]})
        # env counts too: argv within the bound, env past it.
        self.run_refused(b, big_argv(40), options={'env': ['as', ['E=' + 'x' * 4000] * 40]},
                         names=('argv and env',))
        self.assertEqual(self.processes_of(kt.ALICE), before, 'a refused run left a Process object')
        self.assertEqual(self.leftovers(), {})
        # Just below the bound runs (and ends 127: the command does not exist).
        r = self.busctl_run(b, big_argv(60))
        self.assertEqual(r.code, 0, r.err)
        self.remove(b, user=kt.ALICE)

    # -- (b) ------------------------------------------------------------------------

    def test_lingering_argvs_stay_listable(self):
        b = self.alice_builder()
        argv = big_argv(60)  # 240 KB, within ArgumentBytes
        runs = 140  # 33.6 MB of argv in all: more than a bus message may carry
        for i in range(runs):
            r = self.busctl_run(b, argv)
            self.assertEqual(r.code, 0, f'run {i}: {r.err}')
            self.assertIn('127', r.out, r.out)
        # Root sees every process: its listing is the largest.
        self.assert_kilnd_same()
        mine = self.processes_of(None)
        self.assert_kilnd_same()
        kept = [p for p, props in mine.items() if props['Owner']['data'] == self.uid(kt.ALICE)]
        self.assertGreater(len(kept), 0)
        self.assertLessEqual(len(kept) * argv_bytes(argv), PROCESS_BYTES_PER_USER,
                             f'{len(kept)} exited processes of {argv_bytes(argv)} bytes kept')
        # The newest are the ones kept: the last run's object is there.
        self.assertEqual(len(self.processes_of(kt.ALICE)), len(kept))
        self.remove(b, user=kt.ALICE)

    def test_managed_objects_past_the_bus_limit_refused(self):
        """With the per-user bounds raised past the bus's limit, the reply's size is checked
        before it is sent: LimitExceeded, and kilnd stays."""
        self.restart_kilnd_with('ArgumentBytes=16777216\nProcessBytesPerUser=1000000000\n'
                                'LingeringProcessesPerUser=1000\n')
        try:
            b = self.alice_builder()
            argv = big_argv(255)  # 1 MB
            for i in range(34):
                r = self.busctl_run(b, argv)
                self.assertEqual(r.code, 0, f'run {i}: {r.err}')
            for user in (None, kt.ALICE):  # root's view, and the caller's own as large
                reply = self.rawcall(kt.MANAGER_PATH, kt.OBJECT_MANAGER_IFACE, 'GetManagedObjects', user=user)
                self.assertEqual(reply['type'], 'error', reply['type'])
                self.assertEqual(reply.get('error_name'), kt.E_LIMIT, reply.get('body'))
                self.assertIn('bus message', reply['body'][0])
                self.assert_kilnd_same()
            self.assert_kilnd_same()
            self.assertEqual(len(self.list_builders(user=kt.ALICE)), 1)
            self.assertTrue(self.remove(b, user=kt.ALICE).ok)
        finally:
            self.restart_kilnd_with('')

    def test_managed_objects_with_images_past_the_bus_limit_refused(self):
        """Images are objects of GetManagedObjects too: each one's Config, Names and Layers count in
        the reply's estimate. Nine images of about 4 MiB of config each (a builder's Env, Cmd,
        Entrypoint and Labels at their bounds) would make a 36 MiB reply, which dbus-daemon answers
        by dropping kilnd: LimitExceeded instead, kilnd stays, and another user's listing, which
        holds none of them, still answers."""
        self.restart_kilnd_with('MaxArrayLength=16\nMaxStringLength=65536\nImageConfigBytes=8388608\n')
        images = []
        try:
            b = self.alice_builder()
            big = [f'{i:02d}' + 'x' * 64000 for i in range(16)]
            reply = self.raw_call(b, kt.BUILDER_IFACE, 'Configure', 'a{sv}', [{
                'env': ['as', [f'E{i:02d}={v}' for i, v in enumerate(big)]],
                'cmd': ['as', big], 'entrypoint': ['as', big],
                'labels': ['a{ss}', {f'k{i:02d}': v for i, v in enumerate(big)}]}])
            self.assertEqual(reply['type'], 'method_return', reply)
            for i in range(9):
                reply = self.raw_call(b, kt.BUILDER_IFACE, 'Commit', 'sa{sv}',
                                      [f'example/big:{i}', {'timestamp': ['t', i]}])
                self.assertEqual(reply['type'], 'method_return', f'commit {i}: {reply}')
                images.append(reply['body'][0])
            self.assertEqual(len(set(images)), 9)
            for user in (None, kt.ALICE):
                reply = self.rawcall(kt.MANAGER_PATH, kt.OBJECT_MANAGER_IFACE, 'GetManagedObjects', user=user)
                self.assertEqual(reply['type'], 'error', f'{reply["type"]} as {user or "root"}')
                self.assertEqual(reply.get('error_name'), kt.E_LIMIT, reply.get('body'))
                self.assertIn('ListImages', reply['body'][0])
                self.assert_kilnd_same()
            # bob sees none of alice's objects: his listing is small and answers.
            self.assertEqual(self.managed_objects(user=kt.BOB), {})
            # The images are still there, one by one and in ListImages.
            self.assertEqual(len(self.bcall(kt.MANAGER_PATH, kt.MANAGER_IFACE, 'ListImages', user=kt.ALICE)[0]),
                             9)
            self.assert_kilnd_same()

            # Names per image: Tag up to MaxArrayLength (16), then neither Tag nor a repeated commit
            # (the same image under a new name) adds one.
            for i in range(1, 16):
                reply = self.raw_call(images[0], 'org.kiln.Builder1.Image', 'Tag', 's', [f'example/tag:{i}'])
                self.assertEqual(reply['type'], 'method_return', f'tag {i}: {reply}')
            reply = self.raw_call(images[0], 'org.kiln.Builder1.Image', 'Tag', 's', ['example/tag:over'])
            self.assertEqual(reply.get('error_name'), kt.E_LIMIT, reply)
            self.assertIn('MaxArrayLength', reply['body'][0])
            reply = self.raw_call(b, kt.BUILDER_IFACE, 'Commit', 'sa{sv}',
                                  ['example/again:over', {'timestamp': ['t', 0]}])
            self.assertEqual(reply.get('error_name'), kt.E_LIMIT, reply)
            self.assertIn('MaxArrayLength', reply['body'][0])
            names = self.bcall(images[0], 'org.freedesktop.DBus.Properties', 'Get', 'ss',
                               'org.kiln.Builder1.Image', 'Names', user=kt.ALICE)[0]['data']
            self.assertEqual(len(names), 16)
            self.assertNotIn('example/again:over', names)
            self.assert_kilnd_same()
            self.assertTrue(self.remove(b, user=kt.ALICE).ok)
        finally:
            for path in images:
                self.raw_call(path, 'org.kiln.Builder1.Image', 'Remove', 'a{sv}', [{'force': ['b', True]}])
            self.restart_kilnd_with('')

    def restart_kilnd_with(self, limits):
        with open(os.path.join(self.env.dir, 'kiln.conf.extra'), 'w') as f:
            f.write(EXTRA_CONF + limits)
        resource_limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_NOFILE, resource_limits[1]))
        try:
            self.env.restart_kilnd()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, resource_limits)
        self.pid = self.kilnd_pid()
        self.fd_baseline = self.kilnd_fds()

    # -- (d) ------------------------------------------------------------------------

    def test_descriptors(self):
        soft, hard = nofile_limits(self.pid)
        self.assertEqual(soft, hard, 'kilnd did not raise its soft descriptor limit')
        self.assertGreater(soft, SOFT_NOFILE)
        b = self.alice_builder()
        name = self.props(b)['Name']
        before = len(self.kilnd_fds())
        try:
            # Runs as a user starts them: kiln run, its stdio pipes handed to kilnd, the client waiting.
            clients = [self.spawn(name, 'sleep', '1000', stdin=subprocess.PIPE, user=kt.ALICE)
                       for _ in range(DESCRIPTOR_RUNS)]
            def all_running():
                paths = self.running_processes()
                return len(paths) == DESCRIPTOR_RUNS and \
                    all(self.process_props(p)['State'] == 'running' for p in paths)
            self.wait_until(all_running, 120, f'{DESCRIPTOR_RUNS} runs did not all start')
            per_run = (len(self.kilnd_fds()) - before) / DESCRIPTOR_RUNS
            print(f'kilnd holds {per_run:.1f} descriptors per running process', file=sys.stderr)
            self.assertLessEqual(per_run, MAX_FDS_PER_RUN)
            # One more: past DescriptorsPerUser (below ProcessesPerUser), refused before anything runs.
            self.run_refused(b, ['sleep', '1000'], method='Start', options={'detach': ['b', True]},
                             names=('Descriptors', str(DESCRIPTORS_PER_USER)))
            code, out, err = self.env.kiln('run', name, 'true', user=kt.ALICE)
            self.assertNotEqual(code, 0)
            self.assertIn('Descriptors', err)
            # Root still runs (and is counted apart).
            rb = self.builder()
            self.assertEqual(self.run_ok(rb.name, 'echo', 'root-ok').strip(), 'root-ok')
            self.assertTrue(self.remove(rb.path).ok)
            self.assertEqual(len(self.running_processes()), DESCRIPTOR_RUNS)
            self.assertTrue(all(c.poll() is None for c in clients), 'a run ended early')
        finally:
            self.assertTrue(self.remove(b, user=kt.ALICE, force=True).ok)

    def test_helpers_get_the_original_limit(self):
        """kiln-isolate's server, a helper kilnd executes and keeps, has the soft limit kilnd was
        started with, not kilnd's raised one."""
        children = []
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open(f'/proc/{pid}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
                exe = os.readlink(f'/proc/{pid}/exe')
            except OSError:
                continue
            if ppid == self.pid and os.path.basename(exe) == 'kiln-isolate':
                children.append(int(pid))
        if not children:
            self.skipTest('kilnd has no kiln-isolate server running')
        for pid in children:
            self.assertEqual(nofile_limits(pid)[0], SOFT_NOFILE)
        self.assertGreater(nofile_limits(self.pid)[0], SOFT_NOFILE)

    # -- (c), last: it takes the bus away ----------------------------------------------

    def test_zz_exit_status_when_the_bus_goes(self):
        # kiln-env's kilnd is not our child: stop it and start one that is, on the same bus.
        # Nothing to check after the test: the environment will have no bus.
        self.fd_baseline = None
        os.kill(self.pid, signal.SIGTERM)
        self.wait_until(lambda: not kt.is_running(self.pid), 15, 'kilnd did not stop')
        self.wait_until(lambda: not self.env.name_has_owner(kt.BUS_NAME), 10, 'the name stayed owned')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        with open(os.path.join(self.env.dir, 'kilnd.log'), 'a') as log:
            kilnd = subprocess.Popen([self.env.kilnd, '--config', os.path.join(self.env.dir, 'kiln.conf')],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        try:
            self.wait_until(lambda: self.env.name_has_owner(kt.BUS_NAME) or kilnd.poll() is not None, 15)
            self.assertIsNone(kilnd.poll(), 'kilnd did not start')
            with open(os.path.join(self.env.dir, 'dbus.pid')) as f:
                bus_pid = int(f.read())
            os.kill(bus_pid, signal.SIGTERM)
            status = kilnd.wait(timeout=30)
        finally:
            if kilnd.poll() is None:
                kilnd.kill()
                kilnd.wait()
        self.assertNotEqual(status, 0, 'kilnd exited 0 after losing the bus: Restart=on-failure '
                                       'would leave it stopped')
        self.assertGreater(status, 0, f'kilnd died of signal {-status}')


if __name__ == '__main__':
    kt.main()
