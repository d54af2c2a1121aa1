#!/usr/bin/env python3
"""Runs for callers that are not root: user namespaces, ID-mapped layers, run-privileged.

kiln-alice (group "kiln": may create and run) has an entry in the environment's subuid and subgid
files (SubUidFile/SubGidFile point into the test's own directory); root has none, so a root
builder with userns=auto gets ids from kilnd's pool. The test rules grant run-privileged to a
user with a marker in the environment (none, except while a test makes one for kiln-alice:
KilnEnv.set_trusted). kiln-bob may do
nothing but look.
"""
import glob
import os
import pwd
import subprocess
import tempfile
import unittest

import kiln_runlib as kr
import kiln_testlib as kt

ALICE_SUBUID = 200000
ALICE_SUBGID = 300000
SUBID_COUNT = 65536

_SUBID_DIR = None


def setup_with(extra=''):
    """The environment of these tests, with @extra lines in [UserNamespace] (test_userns_shifted)."""
    global _SUBID_DIR
    _SUBID_DIR = tempfile.mkdtemp(prefix='kiln-subid.')
    with open(os.path.join(_SUBID_DIR, 'subuid'), 'w') as f:
        f.write(f'# test entries\n{kt.ALICE}:{ALICE_SUBUID}:{SUBID_COUNT}\n')
    with open(os.path.join(_SUBID_DIR, 'subgid'), 'w') as f:
        f.write(f'{pwd.getpwnam(kt.ALICE).pw_uid}:{ALICE_SUBGID}:{SUBID_COUNT}\n')
    kr.setup_module(extra_conf=f'[UserNamespace]\nSubUidFile={_SUBID_DIR}/subuid\n'
                               f'SubGidFile={_SUBID_DIR}/subgid\n{extra}')


def setUpModule():
    setup_with()


def tearDownModule():
    kr.teardown_module()
    for name in ('subuid', 'subgid'):
        os.unlink(os.path.join(_SUBID_DIR, name))
    os.rmdir(_SUBID_DIR)


def shared_rootfs(path):
    """The run rootfs, readable by everyone (kiln-import reads it as the caller)."""
    os.chmod(os.path.join(path, 'root'), 0o755)


def read_map(text):
    return [tuple(int(x) for x in line.split()) for line in text.strip().splitlines()]


class UsernsCases(kr.RunTestCase):

    def setUp(self):
        super().setUp()
        self.alice = pwd.getpwnam(kt.ALICE)
        self.set_trusted(False)

    def tearDown(self):
        self.set_trusted(False)
        super().tearDown()

    def set_trusted(self, member):
        self.env.set_trusted(kt.ALICE, member)

    def alices_builder(self):
        name = self.unique_name('alice')
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=shared_rootfs)
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs, user=kt.ALICE, check=True)
        path = self.get_builder(name, user=kt.ALICE).object_path()
        return kr.Builder(name, path, self.props(path)['Id'], rootfs)

    def upper_dir(self, b):
        return os.path.join(self.env.dir, 'state', 'builders', b.id, 'upper')

    # -- the namespace -------------------------------------------------------------------

    def test_alice_is_root_inside_with_her_mapping(self):
        b = self.alices_builder()
        self.assertEqual(self.props(b.path)['UserNamespace'], 'auto')
        out = self.sh(b, 'id -u; id -g; echo; cat /proc/self/uid_map; echo; cat /proc/self/gid_map',
                      user=kt.ALICE)
        ids, uid_map, gid_map = out.split('\n\n')
        self.assertEqual(ids.split(), ['0', '0'])
        self.assertEqual(read_map(uid_map), [(0, self.alice.pw_uid, 1), (1, ALICE_SUBUID, SUBID_COUNT)])
        self.assertEqual(read_map(gid_map), [(0, self.alice.pw_gid, 1), (1, ALICE_SUBGID, SUBID_COUNT)])

    def test_layer_files_keep_their_owners_inside(self):
        b = self.alices_builder()
        out = self.sh(b, 'stat -c "%u:%g" /bin/busybox /home/builder', user=kt.ALICE)
        self.assertEqual(out.split(), ['0:0', '1000:1000'])
        # The layer itself is untouched: still root's on the host.
        layer_owner = os.stat(os.path.join(b.rootfs, 'bin', 'busybox'))
        self.assertEqual((layer_owner.st_uid, layer_owner.st_gid), (0, 0))

    def test_generated_files_are_readable_and_container_roots(self):
        """/etc/hosts, /etc/resolv.conf, /etc/hostname and /run/.containerenv: 0644 and owned by the
        container's root, so a user other than root inside reads them (name resolution)."""
        b = self.alices_builder()
        files = '/etc/hosts /etc/resolv.conf /etc/hostname /run/.containerenv'
        out = self.sh(b, f'stat -c "%n %a %u:%g" {files}', user=kt.ALICE)
        self.assertEqual(out.splitlines(), [f'{f} 644 0:0' for f in files.split()])
        out = self.run_ok('--user', 'builder', b, 'cat', '/etc/hostname', '/run/.containerenv', user=kt.ALICE)
        self.assertIn('engine="kiln-', out)

    def test_writes_are_owned_by_the_mapped_ids_on_the_host(self):
        b = self.alices_builder()
        self.sh(b, 'touch /by-root && touch /tmp/by-one && chown 1:1 /tmp/by-one && '
                   'mkdir -p /home/builder/x && chown 1000:1000 /home/builder/x', user=kt.ALICE)
        upper = self.upper_dir(b)
        st = os.stat(os.path.join(upper, 'by-root'))
        self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid))
        st = os.stat(os.path.join(upper, 'tmp', 'by-one'))
        self.assertEqual((st.st_uid, st.st_gid), (ALICE_SUBUID, ALICE_SUBGID))
        st = os.stat(os.path.join(upper, 'home', 'builder', 'x'))
        self.assertEqual((st.st_uid, st.st_gid), (ALICE_SUBUID + 999, ALICE_SUBGID + 999))

    def test_volume_files_are_owned_by_alice_and_her_subordinates(self):
        b = self.alices_builder()
        vol = self.unique_scratch_dir('vol')
        os.chown(vol, self.alice.pw_uid, self.alice.pw_gid)
        os.chmod(vol, 0o777)
        self.sh(b, 'touch /v/by-root', '-v', f'{vol}:/v', user=kt.ALICE)
        self.sh(b, 'touch /v/by-one', '--user', '1:1', '-v', f'{vol}:/v', user=kt.ALICE)
        st = os.stat(os.path.join(vol, 'by-root'))
        self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid))
        st = os.stat(os.path.join(vol, 'by-one'))
        self.assertEqual((st.st_uid, st.st_gid), (ALICE_SUBUID, ALICE_SUBGID))

    def test_root_builder_with_userns_auto_uses_the_pool(self):
        b = self.builder()
        r = self.configure(b.path, {'userns': 'auto'})
        self.assertTrue(r.ok, r)
        out = self.sh(b, 'cat /proc/self/uid_map; stat -c %u /bin/busybox')
        lines = out.strip().splitlines()
        allotments = open(os.path.join(self.env.dir, 'state', 'userns-allotments')).read()
        entry = [line for line in allotments.splitlines() if line.startswith('0:')]
        self.assertEqual(len(entry), 1, allotments)
        _, start, count = (int(x) for x in entry[0].split(':'))
        self.assertEqual(read_map('\n'.join(lines[:2])), [(0, 0, 1), (1, start, count)])
        self.assertEqual(lines[2], '0')
        # Disjoint from every subordinate range of the files.
        self.assertFalse(start < ALICE_SUBUID + SUBID_COUNT and ALICE_SUBUID < start + count)

    def test_mount_shows_the_files_as_runs_write_them(self):
        b = self.alices_builder()
        self.sh(b, 'touch /by-root', user=kt.ALICE)
        # Mount needs org.kiln.builder1.mount: not alice's without a rule, root's always.
        code, out, err = self.env.kiln('mount', b.name, user=kt.ALICE)
        self.assertEqual(code, 125, err)
        self.assertIn('org.kiln.builder1.mount', err)
        code, out, err = self.env.kiln('mount', b.name)
        self.assertEqual(code, 0, err)
        mnt = out.strip()
        try:
            st = os.stat(os.path.join(mnt, 'by-root'))
            self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid))
            st = os.stat(os.path.join(mnt, 'home', 'builder'))
            self.assertEqual(st.st_uid, ALICE_SUBUID + 999)
            # A run while it is mounted shares the mapped mount.
            self.assertEqual(self.sh(b, 'stat -c %u /by-root', user=kt.ALICE), '0\n')
        finally:
            self.env.kiln('umount', b.name, check=True)

    def test_run_of_the_other_kind_while_held_is_busy(self):
        b = self.alices_builder()
        self.env.kiln('mount', b.name, check=True)  # held with alice's mapping
        try:
            self.set_trusted(True)
            r = self.captured(b, ['true'], {'userns': 'host'}, user=kt.ALICE)
            self.assertError(r, kt.E_BUSY, ['userns=host'])
        finally:
            self.env.kiln('umount', b.name, check=True)
        r = self.captured(b, ['true'], {'userns': 'host'}, user=kt.ALICE)
        self.assertTrue(r.ok, r)

    # -- other users ---------------------------------------------------------------------

    def test_bob_cannot_see_or_touch_alices_builder_or_process(self):
        b = self.alices_builder()
        proc = self.start(b, ['sleep', '30'], user=kt.ALICE)
        self.wait_running(proc)
        self.assertError(self.get_builder(b.name, user=kt.BOB), kt.E_NOT_FOUND)
        for method, args in (('Run', [kt.gv_strv(['true']), kt.gv_dict()]),
                             ('RunCaptured', [kt.gv_strv(['true']), kt.gv_dict()]),
                             ('Remove', [kt.gv_dict()])):
            r = self.gcall(b.path, f'{kt.BUILDER_IFACE}.{method}', *args, user=kt.BOB)
            self.assertError(r, kt.E_UNKNOWN_OBJECT)
        for method, args in (('Kill', ['"KILL"']), ('Wait', [])):
            r = self.gcall(proc, f'{kr.PROCESS_IFACE}.{method}', *args, user=kt.BOB)
            self.assertError(r, kt.E_UNKNOWN_OBJECT)
        r = self.gcall(proc, f'{kt.PROPERTIES_IFACE}.GetAll', f'"{kr.PROCESS_IFACE}"', user=kt.BOB)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        code, out, err = self.krun(b.name, 'true', user=kt.BOB)
        self.assertNotEqual(code, 0)
        self.assertEqual(self.process_props(proc)['State'], 'running')
        self.kill_process(proc, 'KILL')
        self.wait_process(proc)

    # -- run-privileged ------------------------------------------------------------------

    def privileged_requests(self):
        requests = [('--network', 'host'), ('--cap-add', 'SYS_ADMIN'), ('--device', '/dev/fuse'),
                    ('-v', '/root:/r'), ('--mount', 'type=bind,src=/root,dst=/r')]
        if self.isolation == 'oci':
            requests.append(('--runtime', '/usr/sbin/runc'))
        return requests

    def test_privileged_requests_need_run_privileged(self):
        b = self.alices_builder()
        for option in self.privileged_requests():
            with self.subTest(option=option):
                self.set_trusted(False)
                code, out, err = self.krun(*option, b.name, 'true', user=kt.ALICE)
                self.assertEqual(code, 125, err)
                self.assertIn('org.kiln.builder1.run-privileged', err)
                self.set_trusted(True)
                code, out, err = self.krun(*option, b.name, 'true', user=kt.ALICE)
                self.assertEqual(code, 0, f'{option}: {err}')

    def test_userns_host_needs_run_privileged_even_when_configured_earlier(self):
        b = self.alices_builder()
        r = self.configure(b.path, {'userns': 'host'}, user=kt.ALICE)
        self.assertTrue(r.ok, r)
        code, out, err = self.krun(b.name, 'id', '-u', user=kt.ALICE)
        self.assertEqual(code, 125, err)
        self.assertIn('userns=host', err)
        self.set_trusted(True)
        self.assertEqual(self.run_ok(b.name, 'cat', '/proc/self/uid_map', user=kt.ALICE).split(),
                         ['0', '0', '4294967295'])

    def test_unconfined_seccomp_needs_run_privileged(self):
        b = self.alices_builder()
        r = self.captured(b, ['true'], {'seccomp_profile': 'unconfined'}, user=kt.ALICE)
        self.assertError(r, kt.E_INTERACTIVE, ['run-privileged'])
        self.set_trusted(True)
        r = self.captured(b, ['true'], {'seccomp_profile': 'unconfined'}, user=kt.ALICE)
        self.assertTrue(r.ok, r)

    def test_noninteractive_caller_gets_interactive_authorization_required(self):
        b = self.alices_builder()
        r = self.captured(b, ['true'], {'network': 'host'}, user=kt.ALICE)
        self.assertError(r, kt.E_INTERACTIVE, ['run-privileged'])
        self.assertEqual(self.props(b.path)['Processes'], [])

    def test_interactive_caller_without_agent_gets_access_denied(self):
        b = self.alices_builder()
        # busctl sets ALLOW_INTERACTIVE_AUTHORIZATION; with no agent to ask through, polkit says no.
        r = self.busctl('--allow-interactive-authorization=yes', 'call', kt.BUS_NAME, b.path, kt.BUILDER_IFACE,
                        'RunCaptured', 'asa{sv}', '1', 'true', '1', 'network', 's', 'host', user=kt.ALICE,
                        check=False)
        self.assertFalse(r.ok, r)
        self.assertIn('Access denied', r.err)  # busctl's words for AccessDenied
        self.assertEqual(self.props(b.path)['Processes'], [])

    @unittest.skipUnless(os.access(kt.PKTTYAGENT, os.X_OK), f'{kt.PKTTYAGENT} is not installed')
    def test_client_leaving_while_polkit_asks_leaves_nothing(self):
        b = self.alices_builder()
        term = kt.TerminalKiln(self.env, kt.ALICE, 'run', '--network', 'host', b.name, 'true')
        self.addCleanup(term.close)
        # The agent kiln started shows what the password would allow: polkit got the details.
        self.assertTrue(term.read_until('Password:'), f'no password prompt: {term.screen!r}')
        self.assertIn('org.kiln.builder1.run-privileged', term.screen)
        self.assertIn('network=host', term.screen)
        self.assertIn(b.name, term.screen)
        term.kill()  # kiln and its agent go while polkit still waits for the password
        term.proc.communicate()
        # Killing the agent mid-conversation can wedge polkitd 122 (about one run in fifteen here);
        # what follows, and the tests after, get a fresh one.
        self.env.restart_polkitd()
        # Nothing was prepared before authorization; tearDown checks mounts, bundles, runtime
        # state and kilnd's descriptors. kilnd goes on serving.
        self.assertEqual(self.props(b.path)['Processes'], [])
        self.assertEqual(self.sh(b, 'echo still here', user=kt.ALICE), 'still here\n')

    def test_unprivileged_options_need_only_run(self):
        b = self.alices_builder()
        vol = self.unique_scratch_dir('readable')
        out = self.sh(b, 'ls /v; echo ok', '-v', f'{vol}:/v:ro', '--cap-drop', 'ALL', '--network', 'none',
                      user=kt.ALICE)
        self.assertEqual(out, 'ok\n')

    def test_volume_of_a_path_alice_cannot_read_is_privileged(self):
        b = self.alices_builder()
        secret = self.unique_scratch_dir('secret')
        os.chmod(secret, 0o700)
        code, out, err = self.krun('-v', f'{secret}:/s', b.name, 'true', user=kt.ALICE)
        self.assertEqual(code, 125, err)
        self.assertIn('cannot read', err)

    # -- one execution of the runtime (issue 16) -----------------------------------------

    def test_a_run_executes_the_runtime_once_and_leaves_no_state(self):
        """`run --detach` is the one execution: once the command is reaped kilnd removes the runtime's
        state and the run's cgroup itself instead of executing `delete`, for root and in a user
        namespace, and nothing of them is left when the caller gets the answer."""
        if self.isolation != 'oci':
            self.skipTest('kiln-isolate never had a delete')
        real = subprocess.run(['sh', '-c', 'command -v runc'], capture_output=True, text=True).stdout.strip()
        self.assertTrue(real, 'runc not found')
        # kilnd's runtime detection at start-up runs a probe container in the runtime's default cgroup,
        # which only the runtime's `delete` knows to remove: none of it may be left.
        probes = glob.glob(f'/sys/fs/cgroup/**/kiln-detect-{self.kilnd_pid()}-*', recursive=True)
        self.assertEqual(probes, [])
        state_root = os.path.join(self.run_dir, 'runtime')
        for user, b in ((None, self.builder()), (kt.ALICE, self.alices_builder())):
            with self.subTest(user=user or 'root'):
                scratch = self.unique_scratch_dir('runtime')
                log = os.path.join(scratch, 'executions')
                wrapper = os.path.join(scratch, 'runc-wrapper')
                with open(log, 'w'):
                    pass
                os.chmod(log, 0o666)
                with open(wrapper, 'w') as f:
                    f.write(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
                os.chmod(wrapper, 0o755)
                self.set_trusted(True)  # another runtime than the configured ones is run-privileged
                code, out, err = self.krun('--runtime', wrapper, b.name, 'echo', 'ran', user=user)
                self.assertEqual((code, out), (0, 'ran\n'), err)
                # Read at once: what the answer found done, not what may follow it.
                left = self.listdir(state_root)
                listed = subprocess.run([real, '--root', state_root, 'list', '-q'], capture_output=True,
                                        text=True).stdout.split()
                with open(log) as f:
                    executions = f.read().splitlines()
                # The run's cgroup, in every hierarchy (on a hybrid host the unified one too, where runc
                # makes it as well): what `delete` removed, kilnd removes.
                cgroups = glob.glob(f'/sys/fs/cgroup/**/run-kiln-{b.id[:12]}-*', recursive=True)
                self.assertEqual(len(executions), 1, executions)
                self.assertIn(' run --detach ', executions[0])
                self.assertEqual(left, [])
                self.assertEqual(listed, [])
                self.assertEqual(cgroups, [])

    def test_root_is_unaffected(self):
        b = self.builder()
        out = self.sh(b, 'id -u; cat /proc/self/uid_map', '--network', 'host', '--cap-add', 'SYS_ADMIN',
                      '-v', '/root:/r:ro')
        lines = out.split('\n')
        self.assertEqual(lines[0], '0')
        self.assertEqual(read_map(lines[1]), [(0, 0, 4294967295)])


kr.parametrize(globals(), UsernsCases)

if __name__ == '__main__':
    kt.main()
