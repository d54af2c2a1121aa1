#!/usr/bin/env python3
"""Who sees what: kiln-alice's builder does not exist for kiln-bob (listing,
GetManagedObjects, busctl tree, property reads, GetBuilder, Remove, Configure,
signals), nor root's for alice; root sees and removes everyone's."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module


class Visibility(kt.KilnTestCase):

    def setUp(self):
        self.alice_path = self.create('alice-b', 'scratch', user=kt.ALICE,
                                      options={'env': ['SECRET=1'], 'labels': {'owner': 'alice'}})
        self.alice_id = self.props(self.alice_path)['Id']
        self.root_path = self.create('root-b', 'scratch')
        self.root_id = self.props(self.root_path)['Id']

    def tearDown(self):
        self.remove_all_builders()

    # -- kiln-bob sees nothing of alice's -----------------------------------------------

    def test_bob_list_is_empty(self):
        self.assertEqual(self.list_builders(user=kt.BOB), [])

    def test_bob_managed_objects_leave_it_out(self):
        objects = self.managed_objects(user=kt.BOB)
        self.assertNotIn(self.alice_path, objects)
        self.assertNotIn(self.root_path, objects)
        self.assertEqual([p for p in objects if p.startswith(kt.BUILDER_PATH_PREFIX)], [])
        # Root's view has both, so the call itself does list builders.
        root_objects = self.managed_objects()
        self.assertIn(self.alice_path, root_objects)
        self.assertIn(self.root_path, root_objects)
        self.assertEqual(root_objects[self.alice_path][kt.BUILDER_IFACE]['Name']['data'], 'alice-b')

    def test_bob_tree_leaves_it_out(self):
        tree = self.tree(user=kt.BOB)
        self.assertIn(kt.MANAGER_PATH, tree)
        self.assertNotIn(self.alice_path, tree)
        self.assertNotIn(self.root_path, tree)
        root_tree = self.tree()
        self.assertIn(self.alice_path, root_tree)
        self.assertIn(self.root_path, root_tree)

    def test_bob_introspection_of_parent_leaves_it_out(self):
        r = self.gcall(kt.BUILDER_PATH_PREFIX.rstrip('/'), 'org.freedesktop.DBus.Introspectable.Introspect',
                       user=kt.BOB)
        self.assertOk(r)
        self.assertNotIn(self.alice_id, r.out)
        self.assertNotIn(self.root_id, r.out)

    def test_bob_introspection_of_path_has_no_builder(self):
        r = self.gcall(self.alice_path, 'org.freedesktop.DBus.Introspectable.Introspect', user=kt.BOB)
        # Either an error, or a node without the Builder interface.
        if r.ok:
            self.assertNotIn(kt.BUILDER_IFACE, r.out)
        else:
            self.assertEqual(r.error_name, kt.E_UNKNOWN_OBJECT, r)

    def test_bob_property_reads_unknown_object(self):
        r = self.gcall(self.alice_path, kt.PROPERTIES_IFACE + '.Get', kt.gv_str(kt.BUILDER_IFACE),
                       kt.gv_str('Env'), user=kt.BOB)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        self.assertNotIn('SECRET', r.err)
        r = self.gcall(self.alice_path, kt.PROPERTIES_IFACE + '.GetAll', kt.gv_str(kt.BUILDER_IFACE),
                       user=kt.BOB)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        self.assertNotIn('SECRET', r.err)
        # busctl fails too.
        r = self.busctl('get-property', kt.BUS_NAME, self.alice_path, kt.BUILDER_IFACE, 'Name',
                        user=kt.BOB, check=False)
        self.assertFalse(r.ok, r)
        self.assertNotIn('alice-b', r.out)

    def test_bob_get_builder_not_found_like_missing(self):
        missing = self.get_builder('no-such-builder', user=kt.BOB)
        self.assertError(missing, kt.E_NOT_FOUND)
        for key in ('alice-b', self.alice_id, self.alice_id[:12], 'root-b', self.root_id):
            r = self.get_builder(key, user=kt.BOB)
            self.assertError(r, kt.E_NOT_FOUND)
            # Word for word what a missing builder answers.
            self.assertEqual(r.message.replace(key, 'X'), missing.message.replace('no-such-builder', 'X'), r)

    def test_bob_remove_unknown_object(self):
        before = self.snapshot()
        r = self.remove(self.alice_path, user=kt.BOB)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        r = self.remove(self.alice_path, user=kt.BOB, force=True)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        self.assertEqual(self.snapshot(), before)
        self.assertTrue(os.path.isdir(self.builder_dir(self.alice_id)))
        self.assertEqual(self.props(self.alice_path, user=kt.ALICE)['Name'], 'alice-b')

    def test_bob_configure_unknown_object(self):
        before = self.props(self.alice_path)
        r = self.configure(self.alice_path, {'env': ['PWNED=1']}, user=kt.BOB)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        self.assertEqual(self.props(self.alice_path), before)

    def test_bob_mount_unknown_object(self):
        r = self.gcall(self.alice_path, kt.BUILDER_IFACE + '.Mount', user=kt.BOB)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)

    def test_bob_gets_no_signals_about_alice(self):
        with kt.Listener(self.env, kt.BOB) as bob, kt.Listener(self.env, kt.ALICE) as alice:
            self.assertOk(self.configure(self.alice_path, {'hostname': 'h'}, user=kt.ALICE))
            path = self.create('alice-c', 'scratch', user=kt.ALICE)
            self.assertOk(self.remove(path, user=kt.ALICE))
            # Alice's own connection hears about it: the signals were sent.
            self.assertIsNotNone(alice.wait_for(lambda s: s.get('member') == 'PropertiesChanged'),
                                 f'alice got no PropertiesChanged: {alice.signals}')
            self.assertIsNotNone(alice.wait_for(lambda s: s.get('member') == 'InterfacesRemoved'),
                                 f'alice got no InterfacesRemoved: {alice.signals}')
            leaked = [s for s in bob.drain(1.0) if s.get('sender') != 'org.freedesktop.DBus'
                      and s.get('member') != 'NameAcquired']
            self.assertEqual(leaked, [], 'kilnd sent bob signals about alice\'s builders')

    # -- alice does not see root's --------------------------------------------------------

    def test_alice_sees_only_her_own(self):
        self.assertEqual([e[1] for e in self.list_builders(user=kt.ALICE)], ['alice-b'])
        self.assertError(self.get_builder('root-b', user=kt.ALICE), kt.E_NOT_FOUND)
        r = self.gcall(self.root_path, kt.PROPERTIES_IFACE + '.Get', kt.gv_str(kt.BUILDER_IFACE),
                       kt.gv_str('Name'), user=kt.ALICE)
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        self.assertError(self.remove(self.root_path, user=kt.ALICE), kt.E_UNKNOWN_OBJECT)
        objects = self.managed_objects(user=kt.ALICE)
        self.assertEqual(sorted(p for p in objects if p.startswith(kt.BUILDER_PATH_PREFIX)), [self.alice_path])
        tree = self.tree(user=kt.ALICE)
        self.assertIn(self.alice_path, tree)
        self.assertNotIn(self.root_path, tree)

    # -- root sees and acts on everyone's ---------------------------------------------------

    def test_root_sees_all(self):
        entries = {e[1]: e for e in self.list_builders()}
        self.assertEqual(sorted(entries), ['alice-b', 'root-b'])
        self.assertEqual(entries['alice-b'][2], self.uid(kt.ALICE))
        self.assertEqual(self.get_builder('alice-b').object_path(), self.alice_path)
        self.assertEqual(self.get_builder(self.alice_id[:12]).object_path(), self.alice_path)
        props = self.props(self.alice_path)
        self.assertEqual(props['Owner'], self.uid(kt.ALICE))
        self.assertEqual(props['Env'], ['SECRET=1'])

    def test_root_removes_alices_builder(self):
        self.assertOk(self.remove(self.alice_path))
        self.assertEqual([e[1] for e in self.list_builders()], ['root-b'])
        self.assertEqual(self.list_builders(user=kt.ALICE), [])
        self.assertFalse(os.path.exists(self.builder_dir(self.alice_id)))


if __name__ == '__main__':
    kt.main()
