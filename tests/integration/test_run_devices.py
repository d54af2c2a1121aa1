#!/usr/bin/env python3
"""Devices of a run (kiln run --device, the `devices` option), as buildah's; both executors, as root
and as kiln-alice in her user namespace (test_userns.py's environment, plus a CDI directory of its own).

- A device renamed (/dev/null:/dev/mynull) is there under its new name, a character device 1:3, that
  takes writes and reads empty; for kiln-alice too, where a node cannot be made and the host's is bound.
- A directory of devices (one made here with mknod: a node, a node in a subdirectory, a symlink to a
  node, a regular file) gives every node under it at the renamed prefix, and nothing else: the symlink
  and the file are not there. Without a container path, at the same path (oci only: kiln-isolate makes
  nodes only under /dev).
- A CDI name (kind kiln.test/dev in the test's spec directory) gives its device node (renamed by the
  spec), its bind mount (read-only, as the spec says) and its environment, the spec-wide edits too.
- An unknown CDI name, or a device path that is none: InvalidArgument naming devices[N]; more than
  1024 nodes in a run: LimitExceeded naming devices[N]; nothing ran.
- kiln-alice without run-privileged: refused (InteractiveAuthorizationRequired: polkit would ask an
  administrator, and the caller allows no interaction), for a path, a directory and a CDI name, and the
  message lists the device nodes the authorization judged (the resolved list, not the option).
"""
import json
import os
import shutil
import stat
import tempfile

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

_DIR = None


def setUpModule():
    global _DIR
    # World-traversable: in a user namespace the runtime opens the sources as the container's root.
    _DIR = tempfile.mkdtemp(prefix='kiln-devices.')
    os.chmod(_DIR, 0o755)
    make_device_tree(os.path.join(_DIR, 'devs'))
    many = os.path.join(_DIR, 'many')
    os.makedirs(many)
    for i in range(1025):
        os.mknod(os.path.join(many, f'n{i}'), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    tu.setup_with()
    # The environment's own spec directory (tools/kiln-env), read at each run that names a CDI device.
    make_cdi(os.path.join(kt.ENV.dir, 'cdi'), os.path.join(_DIR, 'cdi-mount'))


def tearDownModule():
    tu.tearDownModule()
    shutil.rmtree(_DIR)


def make_device_tree(top):
    os.makedirs(os.path.join(top, 'sub'))
    os.mknod(os.path.join(top, 'null'), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(top, 'sub', 'zero'), 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.symlink('null', os.path.join(top, 'link'))
    with open(os.path.join(top, 'file'), 'w') as f:
        f.write('not a device\n')
    for d in (top, os.path.join(top, 'sub')):
        os.chmod(d, 0o755)
    # mknod's mode went through the umask; in a user namespace the nodes' host owner is nobody.
    for node in ('null', 'sub/zero'):
        os.chmod(os.path.join(top, node), 0o666)


def cdi_hook_log(mount_source):
    return os.path.join(os.path.dirname(mount_source), 'cdi-hook.log')


def make_cdi(directory, mount_source):
    log = cdi_hook_log(mount_source)
    os.makedirs(mount_source)
    os.chmod(mount_source, 0o755)
    with open(os.path.join(mount_source, 'file'), 'w') as f:
        f.write('from the CDI mount\n')
    spec = {
        'cdiVersion': '0.6.0',
        'kind': 'kiln.test/dev',
        'devices': [
            {'name': 'one',
             'containerEdits': {
                 'deviceNodes': [{'path': '/dev/cdi-null', 'hostPath': '/dev/null', 'permissions': 'rw'}],
                 'mounts': [{'hostPath': mount_source, 'containerPath': '/cdi-mnt',
                             'options': ['ro', 'nosuid', 'nodev', 'bind']}],
                 'env': ['CDI_ONE=yes'],
                 # Run by the runtime (kiln-isolate for chroot) with the container's state on stdin.
                 'hooks': [{'hookName': 'createRuntime', 'path': '/bin/sh',
                            'args': ['sh', '-c', f'cat >> {log}; echo >> {log}']}]}},
            {'name': 'two', 'containerEdits': {'deviceNodes': [{'path': '/dev/zero'}]}},
        ],
        'containerEdits': {'env': ['CDI_SPEC=wide']},
    }
    with open(os.path.join(directory, 'kiln-test.json'), 'w') as f:
        json.dump(spec, f)
    # Not a spec: left alone, without failing the runs.
    with open(os.path.join(directory, 'README'), 'w') as f:
        f.write('not json\n')


CHECK_CDI = ('echo "$CDI_ONE $CDI_SPEC"; stat -c "%F %t:%T" /dev/cdi-null; echo data > /dev/cdi-null; '
             'cat /cdi-mnt/file; touch /cdi-mnt/new 2>/dev/null && echo wrote || echo read-only')


class RunDevicesCases(kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder
    upper_dir = tu.UsernsCases_oci.upper_dir
    set_trusted = tu.UsernsCases_oci.set_trusted

    def trusted(self):
        """kiln-alice may run-privileged until the test ends."""
        self.set_trusted(True)
        self.addCleanup(self.set_trusted, False)

    # -- a device renamed -------------------------------------------------------------------

    def assert_renamed(self, b, user=None):
        out = self.sh(b, 'stat -c "%F %t:%T" /dev/mynull; echo data > /dev/mynull && echo written; '
                         'wc -c < /dev/mynull', '--device', '/dev/null:/dev/mynull:rw', user=user)
        self.assertEqual(out.split('\n'), ['character special file 1:3', 'written', '0', ''])

    def test_renamed_device(self):
        self.assert_renamed(self.builder())

    def test_renamed_device_in_a_user_namespace(self):
        self.trusted()
        self.assert_renamed(self.alices_builder(), user=kt.ALICE)

    # -- a directory of devices ---------------------------------------------------------------

    def assert_directory(self, b, user=None):
        devs = os.path.join(_DIR, 'devs')
        script = ('cd /dev/mydevs && find . | sort; stat -c "%F %t:%T" null sub/zero; '
                  'echo data > null && head -c 3 sub/zero | wc -c')
        out = self.sh(b, script, '--device', f'{devs}:/dev/mydevs', user=user)
        self.assertEqual(out.split('\n'), ['.', './null', './sub', './sub/zero', 'character special file 1:3',
                                           'character special file 1:5', '3', ''])
        # Without a container path: the same path inside (kiln-isolate makes nodes only under /dev).
        if self.isolation == 'chroot':
            return
        out = self.sh(b, f'ls {devs} {devs}/sub', '--device', devs, user=user)
        self.assertEqual(out.split(), [f'{devs}:', 'null', 'sub', f'{devs}/sub:', 'zero'])

    def test_directory_of_devices(self):
        self.assert_directory(self.builder())

    def test_directory_of_devices_in_a_user_namespace(self):
        self.trusted()
        self.assert_directory(self.alices_builder(), user=kt.ALICE)

    # -- CDI ----------------------------------------------------------------------------------

    def cdi_hook_states(self):
        try:
            with open(cdi_hook_log(os.path.join(_DIR, 'cdi-mount'))) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def assert_cdi(self, b, user=None):
        before = len(self.cdi_hook_states())
        out = self.sh(b, CHECK_CDI, '--device', 'kiln.test/dev=one', user=user)
        self.assertEqual(out.split('\n'), ['yes wide', 'character special file 1:3', 'from the CDI mount',
                                           'read-only', ''])
        # The device's hook ran once, for this builder's container, with a live pid.
        states = self.cdi_hook_states()
        self.assertEqual(len(states), before + 1, states)
        self.assertGreater(states[-1]['pid'], 0)
        self.assertIn(states[-1]['status'], ('creating', 'created'))
        self.assertFalse(os.path.exists(os.path.join(_DIR, 'cdi-mount', 'new')))
        # Two names of one kind, and a plain path next to them; the spec-wide edits come once.
        out = self.sh(b, 'echo "$CDI_SPEC"; stat -c "%t:%T" /dev/cdi-null /dev/zero /dev/mynull',
                      '--device', 'kiln.test/dev=one', '--device', 'kiln.test/dev=two',
                      '--device', '/dev/null:/dev/mynull', user=user)
        self.assertEqual(out, 'wide\n1:3\n1:5\n1:3\n')

    def test_cdi_device(self):
        self.assert_cdi(self.builder())

    def test_cdi_device_in_a_user_namespace(self):
        self.trusted()
        self.assert_cdi(self.alices_builder(), user=kt.ALICE)

    def test_unknown_devices_are_refused(self):
        b = self.builder()
        for devices, arg, fragment in ((['kiln.test/dev=nope'], 'devices[0]', 'kiln.test/dev=nope'),
                                       (['/dev/null', 'other.test/dev=one'], 'devices[1]', 'other.test/dev'),
                                       (['/dev/null', f'{_DIR}/devs/file'], 'devices[1]', 'not a device'),
                                       (['kiln.test/dev=one:/dev/x'], 'devices[0]', 'kiln.test/dev=one:/dev/x')):
            with self.subTest(devices=devices):
                r = self.captured(b, ['touch', '/ran'], {'devices': devices})
                self.assertError(r, kt.E_INVALID, [arg, fragment])
                self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))

    def test_too_many_devices_are_refused(self):
        # One more node than a run may have (KILN_RUN_DEVICES_MAX): LimitExceeded, nothing ran.
        b = self.builder()
        r = self.captured(b, ['touch', '/ran'], {'devices': ['/dev/null', os.path.join(_DIR, 'many')]})
        self.assertError(r, kt.E_LIMIT, ['devices[1]', '1024 device nodes'])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))

    # -- authorization --------------------------------------------------------------------------

    def test_devices_need_run_privileged(self):
        self.set_trusted(False)
        b = self.alices_builder()
        devs = os.path.join(_DIR, 'devs')
        for devices, judged in ((['/dev/null:/dev/mynull'], ['/dev/null']),
                                ([devs], [f'{devs}/null', f'{devs}/sub/zero']),
                                (['kiln.test/dev=one'], ['kiln.test/dev=one', '/dev/null', '/cdi-mnt'])):
            with self.subTest(devices=devices):
                r = self.captured(b, ['touch', '/ran'], {'devices': devices}, user=kt.ALICE)
                # Refused without asking (the caller allows no interaction), the judged list named.
                self.assertError(r, kt.E_INTERACTIVE, ['org.kiln.builder1.run-privileged'] + judged)
                self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))


kr.parametrize(globals(), RunDevicesCases)

if __name__ == '__main__':
    kt.main()
