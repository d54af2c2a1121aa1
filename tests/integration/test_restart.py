#!/usr/bin/env python3
"""kilnd restarts on the same state: every builder comes back with the same id,
name, owner, source, creation time and configuration; what a crash left
half-created is removed on start-up."""
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module


class Restart(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def everything(self):
        """Every builder as root sees it: the list entry and all properties."""
        return {e[0]: (e, self.props(e[4])) for e in self.list_builders()}

    def test_builders_survive_restart(self):
        rootfs = self.make_rootfs('restart-src')
        a = self.create('r-root', 'scratch', options={'env': ['A=1'], 'labels': {'x': 'y'}})
        b = self.create('r-alice', rootfs, user=kt.ALICE)
        c = self.create('', 'scratch', user=kt.ALICE)
        self.assertOk(self.configure(b, {
            'env': ['PATH=/bin', 'B=2'], 'working_dir': '/w', 'user': 'builder', 'hostname': 'hb',
            'entrypoint': ['/bin/sh', '-c'], 'cmd': ['echo hi'], 'shell': ['/bin/sh', '-c'],
            'volumes': ['/srv:/srv:ro'], 'labels': {'k1': 'v1', 'k2': ''}, 'cap_add': ['CAP_NET_RAW'],
            'cap_drop': ['CAP_CHOWN'], 'ulimits': ['nofile=10:20'], 'isolation': 'chroot', 'userns': 'auto',
        }, user=kt.ALICE))
        before = self.everything()
        alice_before = self.list_builders(user=kt.ALICE)
        dirs_before = self.listdir(self.builders_dir)
        self.assertEqual(len(before), 3)

        self.env.restart_kilnd()

        self.assertEqual(self.everything(), before)
        self.assertEqual(self.list_builders(user=kt.ALICE), alice_before)
        self.assertEqual(self.listdir(self.builders_dir), dirs_before)
        # Still usable: alice configures and removes hers, GetBuilder finds them.
        self.assertEqual(self.get_builder('r-alice', user=kt.ALICE).object_path(), b)
        self.assertOk(self.configure(b, {'hostname': 'after'}, user=kt.ALICE))
        self.assertEqual(self.props(b)['Hostname'], 'after')
        # Visibility holds after a restart.
        self.assertError(self.get_builder('r-root', user=kt.ALICE), kt.E_NOT_FOUND)
        self.assertEqual(self.list_builders(user=kt.BOB), [])
        # Names stay taken, and generated names continue past them.
        self.assertError(self.create_call('r-root', 'scratch'), kt.E_EXISTS)
        self.assertEqual(self.props(c)['Name'], 'working-container')
        d = self.create('', 'scratch')
        self.assertEqual(self.props(d)['Name'], 'working-container-2')
        self.assertOk(self.remove(a))
        self.assertOk(self.remove(c, user=kt.ALICE))

    def test_configuration_saved_across_restart(self):
        path = self.create('r-conf', 'scratch', user=kt.ALICE)
        self.assertOk(self.configure(path, {'env': ['ONE=1']}, user=kt.ALICE))
        self.assertOk(self.configure(path, {'env': ['TWO=2'], 'cmd': ['x']}, user=kt.ALICE))
        self.env.restart_kilnd()
        props = self.props(path)
        self.assertEqual(props['Env'], ['TWO=2'])
        self.assertEqual(props['Cmd'], ['x'])

    def test_removed_builder_stays_removed(self):
        keep = self.create('r-keep', 'scratch')
        gone = self.create('r-gone', 'scratch')
        gone_id = self.props(gone)['Id']
        self.assertOk(self.remove(gone))
        self.env.restart_kilnd()
        self.assertEqual([e[1] for e in self.list_builders()], ['r-keep'])
        self.assertFalse(os.path.exists(self.builder_dir(gone_id)))
        self.assertEqual(self.props(keep)['Name'], 'r-keep')

    def test_half_created_builder_removed_on_start(self):
        keep = self.create('r-whole', 'scratch')
        keep_id = self.props(keep)['Id']
        # What a crash between the builder's directory and its builder.json leaves.
        half_id = secrets.token_hex(32)
        half = self.builder_dir(half_id)
        os.makedirs(os.path.join(half, 'upper', 'etc'), mode=0o700)
        os.makedirs(os.path.join(half, 'work'), mode=0o700)
        with open(os.path.join(half, 'upper', 'etc', 'file'), 'w') as f:
            f.write('left over\n')
        self.env.restart_kilnd()
        self.assertFalse(os.path.exists(half), f'{half} was not removed on start-up')
        self.assertEqual(self.listdir(self.builders_dir), [keep_id])
        self.assertEqual([e[0] for e in self.list_builders()], [keep_id])
        self.assertNotIn(kt.BUILDER_PATH_PREFIX + half_id, self.tree())
        self.assertError(self.get_builder(half_id), kt.E_NOT_FOUND)

    def test_stale_import_removed_on_start(self):
        # An import in progress when kilnd died: STATE/layers/.tmp-*.
        os.makedirs(self.layers_dir, exist_ok=True)
        stale = os.path.join(self.layers_dir, '.tmp-' + secrets.token_hex(8))
        os.makedirs(os.path.join(stale, 'etc'))
        self.env.restart_kilnd()
        self.assertFalse(os.path.exists(stale), f'{stale} was not removed on start-up')

    def test_mount_gone_after_restart(self):
        # kilnd unmounts what it mounted when it stops; the builder can be mounted again.
        path = self.create('r-mount', 'scratch')
        r = self.assertOk(self.gcall(path, kt.BUILDER_IFACE + '.Mount'))
        mountpoint = r.string()
        self.assertTrue(os.path.ismount(mountpoint))
        self.env.restart_kilnd()
        self.assertFalse(os.path.ismount(mountpoint), f'{mountpoint} still mounted after kilnd stopped')
        r = self.assertOk(self.gcall(path, kt.BUILDER_IFACE + '.Mount'))
        self.assertTrue(os.path.ismount(r.string()))
        self.assertOk(self.gcall(path, kt.BUILDER_IFACE + '.Unmount'))


if __name__ == '__main__':
    kt.main()
