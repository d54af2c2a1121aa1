#!/usr/bin/env python3
"""--mount type=bind as buildah and BuildKit have it, -v unchanged.

- A bind --mount without rw is read-only: a write inside fails with EROFS and the host directory
  keeps exactly what it had (root, and kiln-alice in her user namespace).
- With rw the run writes and reads back its file, and the host directory never gets it: the writes
  went to a throw-away overlay in the bundle, for root and for kiln-alice in her user namespace
  (where it used to fail), and no mount is left after the run.
- `-v SRC:DST:O` (an overlay volume) for kiln-alice: her directory is her container root's inside,
  the run writes, the host directory keeps what it had. With upperdir=U,workdir=W (her own
  directories) the writes land in U, owned by her uid on the host, and the next run sees them; an
  upper or work dir she does not own, one without O, or one without the other is InvalidArgument
  naming the volume, and nothing ran.
- -v SRC:DST still writes through to the host.
- A key outside the allow-list (or from=, not supported yet) is InvalidArgument naming mounts[0].
"""
import os
import pwd

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

    def test_rw_bind_mount_writes_are_thrown_away_for_alice(self):
        # Her own directory: root's files (host_dir) are nobody's inside, and stay unwritable there.
        b, d = self.alices_builder(), self.alices_dir('rw-src')
        out = self.sh(b, 'echo run > /m/x; cat /m/x; echo more >> /m/kept; cat /m/kept',
                      '--mount', f'type=bind,src={d},dst=/m,rw', user=kt.ALICE)
        self.assertEqual(out.split(), ['run', 'host', 'more'])
        self.assertEqual(self.listdir(d), ['kept'])
        with open(os.path.join(d, 'kept')) as f:
            self.assertEqual(f.read(), 'host\n')
        self.assertEqual(self.mounts_under(d), [])
        self.assert_nothing_left()

    # -- `O` overlay volumes for users who are not root (issue 12 item 4) --------------

    def alices_dir(self, name, kept=True):
        d = self.unique_scratch_dir(name)
        if kept:
            with open(os.path.join(d, 'kept'), 'w') as f:
                f.write('host\n')
            os.chown(os.path.join(d, 'kept'), self.alice.pw_uid, self.alice.pw_gid)
        os.chmod(d, 0o755)
        os.chown(d, self.alice.pw_uid, self.alice.pw_gid)
        return d

    @property
    def alice(self):
        return pwd.getpwnam(kt.ALICE)

    def test_overlay_volume_for_alice(self):
        b, d = self.alices_builder(), self.alices_dir('o-src')
        out = self.sh(b, 'stat -c %u:%g:%a /m; echo run > /m/x; cat /m/x /m/kept', '-v', f'{d}:/m:O',
                      user=kt.ALICE)
        self.assertEqual(out.split(), ['0:0:755', 'run', 'host'])
        self.assertEqual(self.listdir(d), ['kept'])
        self.assertEqual(self.mounts_under(d), [])
        self.assert_nothing_left()

    def test_overlay_volume_with_a_persistent_upper_for_alice(self):
        b = self.alices_builder()
        d, upper, work = self.alices_dir('o-src'), self.alices_dir('o-upper', False), self.alices_dir('o-work', False)
        volume = f'{d}:/m:O,upperdir={upper},workdir={work}'
        self.sh(b, 'echo run > /m/x; echo more >> /m/kept', '-v', volume, user=kt.ALICE)
        self.assertEqual(self.listdir(d), ['kept'])
        self.assertEqual(sorted(self.listdir(upper)), ['kept', 'x'])
        st = os.stat(os.path.join(upper, 'x'))
        self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid))
        out = self.sh(b, 'cat /m/x /m/kept', '-v', volume, user=kt.ALICE)
        self.assertEqual(out.split(), ['run', 'host', 'more'])
        self.assertEqual(self.mounts_under(d) + self.mounts_under(upper), [])
        self.assert_nothing_left()

    def test_overlay_volume_with_a_persistent_upper_for_root(self):
        b, d = self.builder(), self.host_dir()
        upper, work = self.unique_scratch_dir('o-upper'), self.unique_scratch_dir('o-work')
        self.sh(b, 'echo run > /m/x', '-v', f'{d}:/m:O,upperdir={upper},workdir={work}')
        self.assertEqual(self.listdir(d), ['kept'])
        self.assertEqual(self.listdir(upper), ['x'])

    def test_bad_persistent_uppers_are_refused(self):
        b = self.alices_builder()
        d, mine = self.alices_dir('o-src'), self.alices_dir('o-mine', False)
        roots = self.unique_scratch_dir('o-roots')
        os.chmod(roots, 0o777)
        for options, fragment in ((f'O,upperdir={roots},workdir={mine}', 'not yours'),
                                  (f'O,upperdir={mine},workdir={roots}', 'not yours'),
                                  (f'upperdir={mine},workdir={mine}', "need 'O'"),
                                  (f'O,upperdir={mine}', 'together'),
                                  (f'O,upperdir={mine}/nothing,workdir={mine}', 'upperdir'),
                                  ('O,upperdir=relative,workdir=/x', 'relative')):
            with self.subTest(options=options):
                r = self.captured(b, ['touch', '/ran'], {'volumes': [f'{d}:/m:{options}']}, user=kt.ALICE)
                self.assertError(r, kt.E_INVALID, ['volumes[0]', fragment])
                self.assertFalse(os.path.exists(os.path.join(tu.UsernsCases_oci.upper_dir(self, b), 'ran')))
                self.assertEqual(self.listdir(roots) + self.listdir(mine), [])

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
