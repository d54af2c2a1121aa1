#!/usr/bin/env python3
"""--mount type=bind as buildah and BuildKit have it, -v unchanged.

- A bind --mount without rw is read-only: a write inside fails with EROFS and the host directory
  keeps exactly what it had (root, and kiln-alice in her user namespace).
- With rw the run writes and reads back its file, and the host directory never gets it: the writes
  went to a throw-away overlay in the bundle. In a user namespace (kiln-alice) that overlay is not
  available yet: InvalidArgument naming mounts[0], nothing written.
- -v SRC:DST still writes through to the host.
- A key outside the allow-list (or from=, not supported yet) is InvalidArgument naming mounts[0].
"""
import os

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

setUpModule = tu.setUpModule
tearDownModule = tu.tearDownModule


class RunMountsCases(kr.RunTestCase):

    def setUp(self):
        super().setUp()
        self.set_trusted(False)

    def tearDown(self):
        self.set_trusted(False)
        super().tearDown()

    set_trusted = tu.UsernsCases_oci.set_trusted
    alices_builder = tu.UsernsCases_oci.alices_builder

    def host_dir(self):
        d = self.unique_scratch_dir('mount-src')
        with open(os.path.join(d, 'kept'), 'w') as f:
            f.write('host\n')
        os.chmod(d, 0o777)  # writable by anyone: only the mount may stop a write
        return d

    def assert_read_only(self, b, user=None):
        d = self.host_dir()
        code, out, err = self.krun('--mount', f'type=bind,src={d},dst=/m', b, '--', 'sh', '-c',
                                   'cat /m/kept; echo x > /m/x', user=user)
        self.assertNotEqual(code, 0, out)
        self.assertIn('host', out)
        self.assertIn('Read-only file system', err)
        self.assertEqual(self.listdir(d), ['kept'])

    def test_bind_mount_is_read_only_by_default(self):
        self.assert_read_only(self.builder())

    def test_bind_mount_is_read_only_for_alice(self):
        self.assert_read_only(self.alices_builder(), user=kt.ALICE)

    def test_rw_bind_mount_writes_are_thrown_away(self):
        b, d = self.builder(), self.host_dir()
        out = self.sh(b, 'echo run > /m/x; cat /m/x; echo more >> /m/kept; cat /m/kept',
                      '--mount', f'type=bind,src={d},dst=/m,rw')
        self.assertEqual(out.split(), ['run', 'host', 'more'])
        self.assertEqual(self.listdir(d), ['kept'])
        with open(os.path.join(d, 'kept')) as f:
            self.assertEqual(f.read(), 'host\n')
        self.assertEqual(self.mounts_under(d), [])
        self.assert_nothing_left()

    def test_rw_bind_mount_is_refused_in_a_user_namespace(self):
        b, d = self.alices_builder(), self.host_dir()
        r = self.captured(b, ['sh', '-c', 'echo x > /m/x'], {'mounts': [f'type=bind,src={d},dst=/m,rw']},
                          user=kt.ALICE)
        self.assertError(r, kt.E_INVALID, ['mounts[0]', 'user namespace'])
        self.assertEqual(self.listdir(d), ['kept'])

    def test_overlay_source_with_a_separator_is_refused(self):
        # overlayfs would read lowerdir=/x/a:b as two lower dirs.
        b, d = self.builder(), self.unique_scratch_dir('mount-sep')
        src = os.path.join(d, 'a:b')
        os.mkdir(src)
        r = self.captured(b, ['touch', '/m/x'], {'mounts': [f'type=bind,src={src},dst=/m,rw']})
        self.assertError(r, kt.E_INVALID, ['mounts[0]', "':'"])
        self.assertEqual(self.listdir(src), [])

    def test_volume_still_writes_through(self):
        b, d = self.builder(), self.host_dir()
        self.sh(b, 'echo run > /m/x', '-v', f'{d}:/m')
        self.assertEqual(self.listdir(d), ['kept', 'x'])

    def test_unknown_keys_are_refused(self):
        b, d = self.builder(), self.host_dir()
        for key, fragment in (('bogus=1', 'bogus'), ('from=busybox', 'from'), ('uid=0', 'uid'),
                              ('bind-nonrecursive', 'bind-nonrecursive')):
            with self.subTest(key=key):
                r = self.captured(b, ['touch', '/m/x'], {'mounts': [f'type=bind,src={d},dst=/m,{key}']})
                self.assertError(r, kt.E_INVALID, ['mounts[0]', fragment])
                self.assertEqual(self.listdir(d), ['kept'])


kr.parametrize(globals(), RunMountsCases)

if __name__ == '__main__':
    kt.main()
