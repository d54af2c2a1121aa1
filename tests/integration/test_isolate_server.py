#!/usr/bin/env python3
"""kiln-isolate's server: chroot runs are forked by one long-running `kiln-isolate serve`, kilnd's
child, instead of kilnd executing kiln-isolate for each (docs/isolate.md, "The server").

kilnd here takes its helpers from a directory of links to the build's, so that a test can take
kiln-isolate away: runs that still work then cannot have executed it. A user's run (in a user
namespace) is served too: the server's child makes kiln-runtime-ns's mount namespace itself.
"""
import os
import pwd
import signal
import tempfile
import unittest

import kiln_harness as kh
import kiln_runlib as kr
import kiln_testlib as kt
import test_userns
from test_userns import ALICE_SUBGID, ALICE_SUBUID, SUBID_COUNT, read_map

_HELPERS = None
HELPER_NAMES = ('kiln-isolate', 'kiln-runtime-ns', 'kiln-import')


def setUpModule():
    global _HELPERS
    _HELPERS = tempfile.mkdtemp(prefix='kiln-helpers-')
    os.chmod(_HELPERS, 0o755)
    link_helpers()
    # test_userns's environment (kiln-alice's subordinate ids), with kilnd's helpers taken from here.
    test_userns.setup_with(f'[Paths]\nHelperDirectory={_HELPERS}\n')


def tearDownModule():
    test_userns.tearDownModule()
    for name in HELPER_NAMES:
        unlink_helper(name)
    os.rmdir(_HELPERS)


def link_helpers():
    build_helpers = os.path.join(kh.BUILD_ROOT, 'service')
    for name in HELPER_NAMES:
        path = os.path.join(_HELPERS, name)
        if not os.path.lexists(path):
            os.symlink(os.path.join(build_helpers, name), path)


def unlink_helper(name):
    try:
        os.unlink(os.path.join(_HELPERS, name))
    except FileNotFoundError:
        pass


def parent_of(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            return int(kr.parse_status(f.read())['PPid'])
    except (OSError, KeyError, ValueError):
        return None


def cmdline(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return [a.decode() for a in f.read().split(b'\0')[:-1]]
    except OSError:
        return []


class IsolateServer(kr.RunTestCase):
    isolation = 'chroot'

    @classmethod
    def setUpClass(cls):
        pass  # one mode only: not parametrized

    def tearDown(self):
        link_helpers()
        super().tearDown()

    def servers(self):
        """kilnd's children that are kiln-isolate servers: {pid: argv}. Children only: a server's own
        child, forked for a command, has the server's command line until it is done."""
        found = {}
        kilnd = self.kilnd_pid()
        for pid in kt.processes_below(kilnd):
            argv = cmdline(pid)
            if argv and os.path.basename(argv[0]) == 'kiln-isolate' and argv[-1] == 'serve' \
                    and parent_of(pid) == kilnd:
                found[pid] = argv
        return found

    def the_server(self):
        servers = self.servers()
        self.assertEqual(len(servers), 1, f'kiln-isolate servers below kilnd: {servers}')
        return next(iter(servers.items()))

    def test_one_server_with_kilnds_options(self):
        pid, argv = self.the_server()
        self.assertEqual(argv, [os.path.join(_HELPERS, 'kiln-isolate'),
                                '--cache-dir', os.path.join(self.run_dir, 'isolate-cache'),
                                '--root', os.path.join(self.run_dir, 'isolate'),
                                '--log-format', 'json', 'serve'])
        b = self.builder()
        for i in range(3):
            self.assertEqual(self.sh(b, f'echo run-{i}'), f'run-{i}\n')
        self.assertEqual(self.the_server()[0], pid, 'the server is the same after three runs')

    def test_runs_do_not_execute_kiln_isolate(self):
        b = self.builder()
        unlink_helper('kiln-isolate')
        self.assertEqual(self.sh(b, 'echo served; exit 0'), 'served\n')
        code, out, err = self.krun(b, 'sh', '-c', 'echo out; echo err >&2; exit 7')
        self.assertEqual((code, out, err), (7, 'out\n', 'err\n'))
        # An OCI runtime's run is not the server's business, nor a chroot run with runtime_args: those
        # execute their program, which is gone.
        code, out, err = self.krun('--runtime-flag', 'debug', b, 'true')
        self.assertNotEqual(code, 0, 'a run with runtime_args must execute kiln-isolate, which is gone')
        self.assertIn('kiln-isolate', err)

    def alices_builder(self):
        name = self.unique_name('alice')

        def readable(path):
            os.chmod(os.path.join(path, 'root'), 0o755)  # kiln-import reads it as the caller
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=readable)
        self.env.kiln('from', '--name', name, '--isolation', 'chroot', rootfs, user=kt.ALICE, check=True)
        path = self.get_builder(name, user=kt.ALICE).object_path()
        return kr.Builder(name, path, self.props(path)['Id'], rootfs)

    def test_users_runs_execute_neither_helper(self):
        """A run in a user namespace used to execute kiln-runtime-ns, which executed kiln-isolate: the
        server's child now makes kiln-runtime-ns's namespace itself. Taking both programs away shows
        it; the container is what it was (her mapping, the default capabilities, NoNewPrivs and
        seccomp), and the server's own mount namespace is left as it was."""
        alice = pwd.getpwnam(kt.ALICE)
        b = self.alices_builder()
        self.assertEqual(self.props(b.path)['UserNamespace'], 'auto')
        server, _ = self.the_server()
        unlink_helper('kiln-isolate')
        unlink_helper('kiln-runtime-ns')
        out = self.sh(b, 'id -u; id -g; echo; cat /proc/self/uid_map; echo; cat /proc/self/gid_map; echo; '
                         'cat /proc/self/status', user=kt.ALICE)
        ids, uid_map, gid_map, status = out.split('\n\n')
        self.assertEqual(ids.split(), ['0', '0'])
        self.assertEqual(read_map(uid_map), [(0, alice.pw_uid, 1), (1, ALICE_SUBUID, SUBID_COUNT)])
        self.assertEqual(read_map(gid_map), [(0, alice.pw_gid, 1), (1, ALICE_SUBGID, SUBID_COUNT)])
        status = kr.parse_status(status)
        default = kr.cap_mask(kr.DEFAULT_CAPS)
        self.assertEqual({k: int(status[k], 16) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')},
                         {'CapInh': 0, 'CapPrm': default, 'CapEff': default, 'CapBnd': default, 'CapAmb': 0})
        self.assertEqual((status['NoNewPrivs'], status['Seccomp']), ('0', '2'))  # kilnd's defaults
        # Her run's writes land as her mapped root, through the namespace made in the server's child.
        self.sh(b, 'touch /by-alice', user=kt.ALICE)
        st = os.stat(os.path.join(self.env.dir, 'state', 'builders', b.id, 'upper', 'by-alice'))
        self.assertEqual((st.st_uid, st.st_gid), (alice.pw_uid, alice.pw_gid))
        # The namespace was the child's alone: the server's mounts and namespace are kilnd's still.
        self.assertEqual(self.the_server()[0], server)
        self.assertEqual(os.readlink(f'/proc/{server}/ns/mnt'), os.readlink(f'/proc/{self.kilnd_pid()}/ns/mnt'))
        with open(f'/proc/{server}/mountinfo') as f:
            covers = [line for line in f if line.split()[4] == self.run_dir and ' - tmpfs ' in line
                      and 'size=64k' in line]
        self.assertEqual(covers, [], 'the tmpfs over kilnd\'s runtime directory is in the server\'s namespace')

    def test_server_killed_is_started_again(self):
        b = self.builder()
        pid, _ = self.the_server()
        os.kill(pid, signal.SIGKILL)
        self.wait_until(lambda: pid not in self.servers(), 10, f'server {pid} did not go away')
        self.assertEqual(self.sh(b, 'echo again'), 'again\n')
        new_pid, _ = self.the_server()
        self.assertNotEqual(new_pid, pid)
        # Gone, not a zombie kilnd forgot to reap.
        self.wait_until(lambda: not os.path.exists(f'/proc/{pid}'), 10, f'server {pid} was not reaped')

    def test_server_that_cannot_start_fails_the_run_clearly(self):
        b = self.builder()
        pid, _ = self.the_server()
        unlink_helper('kiln-isolate')
        os.kill(pid, signal.SIGKILL)
        self.wait_until(lambda: pid not in self.servers(), 10, f'server {pid} did not go away')
        code, out, err = self.krun(b, 'echo', 'nothing')
        self.assertNotEqual(code, 0)
        self.assertEqual(out, '')
        self.assertIn('kiln-isolate', err)
        self.assertEqual(self.servers(), {})
        link_helpers()
        self.assertEqual(self.sh(b, 'echo back'), 'back\n')
        self.the_server()

    def test_run_outlives_its_server(self):
        # Once the command runs it is kilnd's child: the server's death does not touch it.
        b = self.builder()
        child = self.spawn(b, 'sh', '-c', 'echo started; sleep 1; echo finished; exit 3')
        self.assertEqual(child.stdout.readline(), 'started\n')
        pid, _ = self.the_server()
        os.kill(pid, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
        self.assertEqual((child.returncode, out), (3, 'finished\n'), err)
        self.assertEqual(self.sh(b, 'echo next'), 'next\n')
        self.assertNotEqual(self.the_server()[0], pid)

    def test_server_ends_with_kilnd(self):
        pid, _ = self.the_server()
        self.env.restart_kilnd()
        self.wait_until(lambda: not os.path.exists(f'/proc/{pid}'), 10,
                        f'the old kilnd\'s server {pid} is still there')
        self.the_server()
        self.fd_baseline = self.kilnd_fds()


if __name__ == '__main__':
    unittest.main()
