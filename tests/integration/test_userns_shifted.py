#!/usr/bin/env python3
"""The user namespace tests again where layers are not ID-mapped ([UserNamespace]
IdMappedLayers=false, as on a kernel or file system that refuses ID-mapped mounts): builders with
a user namespace are made from copies of their bases with the owners shifted, and everything a user
sees is the same. Plus what only this mode has: the copy itself."""
import os

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu


def setUpModule():
    tu.setup_with('IdMappedLayers=false\n')


def tearDownModule():
    tu.tearDownModule()


# kr.parametrize left only the per-isolation classes in test_userns; their common base is the cases
# (not bound to a name here, or unittest would find it too).
class ShiftedCases(tu.UsernsCases_oci.__bases__[0]):

    def test_base_is_a_shifted_copy(self):
        b = self.alices_builder()
        with open(os.path.join(self.env.dir, 'state', 'builders', b.id, 'builder.json')) as f:
            self.assertIn('"layer_shifted" : true', f.read())
        layers = os.path.join(self.env.dir, 'state', 'layers')
        owners = {os.stat(os.path.join(layers, d, 'bin', 'busybox')).st_uid
                  for d in os.listdir(layers) if not d.startswith('.') and
                  os.path.exists(os.path.join(layers, d, 'bin', 'busybox'))}
        # The imported base (root's files) and alice's copy (her uid for container root).
        self.assertIn(0, owners)
        self.assertIn(self.alice.pw_uid, owners)
        # Made once: a second builder from the same base shares the copy.
        before = sorted(os.listdir(layers))
        self.alices_builder_from(b.rootfs)
        self.assertEqual(sorted(os.listdir(layers)), before)

    def test_shifted_base_survives_a_restart(self):
        b = self.alices_builder()
        self.sh(b, 'touch /before', user=kt.ALICE)
        self.env.restart_kilnd()
        self.fd_baseline = self.kilnd_fds()
        out = self.sh(b, 'stat -c %u /before /bin/busybox; cat /proc/self/uid_map', user=kt.ALICE)
        lines = out.split('\n')
        self.assertEqual(lines[:2], ['0', '0'])
        self.assertEqual(tu.read_map(lines[2]), [(0, self.alice.pw_uid, 1)])

    def test_root_builder_with_userns_auto_uses_the_pool(self):
        # Made with a user namespace from the start: its base is shifted to root's pool range.
        name = self.unique_name('root-auto')
        rootfs = kr.default_rootfs()
        self.env.kiln('from', '--name', name, '--userns', 'auto', '--isolation', self.isolation, rootfs,
                      check=True)
        out = self.run_ok(name, 'sh', '-c', 'cat /proc/self/uid_map; stat -c %u /bin/busybox')
        lines = out.strip().splitlines()
        self.assertEqual(tu.read_map(lines[0]), [(0, 0, 1)])
        self.assertEqual(lines[2], '0')

    def test_userns_configured_later_needs_a_new_builder(self):
        # Made without a user namespace, there is no shifted copy to run in one: a clear refusal.
        b = self.builder()
        self.assertTrue(self.configure(b.path, {'userns': 'auto'}).ok)
        code, out, err = self.krun(b.name, 'true')
        self.assertEqual(code, 125, err)
        self.assertIn('make a new builder with userns=auto', err)

    def alices_builder_from(self, rootfs):
        name = self.unique_name('alice')
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs, user=kt.ALICE, check=True)


kr.parametrize(globals(), ShiftedCases)

if __name__ == '__main__':
    kt.main()
