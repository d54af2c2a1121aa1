#!/usr/bin/env python3
"""Builders through the bus: CreateBuilder (scratch, a directory), ListBuilders,
GetBuilder, properties, Configure with PropertiesChanged, Remove; as root and as
kiln-alice, against a real kilnd."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module

# A value for every Configure key, and the property it must show up in.
FULL_CONFIG = {
    'env': (['PATH=/usr/bin:/bin', 'A=1', 'EMPTY='], 'Env', ['PATH=/usr/bin:/bin', 'A=1', 'EMPTY=']),
    'working_dir': ('/work', 'WorkingDir', '/work'),
    'user': ('builder:builder', 'User', 'builder:builder'),
    'hostname': ('kiln-test', 'Hostname', 'kiln-test'),
    'entrypoint': (['/bin/sh', '-c'], 'Entrypoint', ['/bin/sh', '-c']),
    'cmd': (['echo', 'hello world'], 'Cmd', ['echo', 'hello world']),
    'shell': (['/bin/sh', '-c'], 'Shell', ['/bin/sh', '-c']),
    'volumes': (['/srv/data:/data:ro,nosuid', '/tmp:/scratch'], 'Volumes',
                ['/srv/data:/data:ro,nosuid', '/tmp:/scratch']),
    'labels': ({'org.example.a': 'x', 'b': ''}, 'Labels', {'org.example.a': 'x', 'b': ''}),
    'cap_add': (['CAP_NET_RAW'], 'CapAdd', ['CAP_NET_RAW']),
    'cap_drop': (['CAP_CHOWN', 'CAP_MKNOD'], 'CapDrop', ['CAP_CHOWN', 'CAP_MKNOD']),
    'ulimits': (['nofile=1024:2048', 'nproc=100'], 'Ulimits', ['nofile=1024:2048', 'nproc=100']),
    'isolation': ('chroot', 'Isolation', 'chroot'),
    'userns': ('auto', 'UserNamespace', 'auto'),
}


class Builders(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def check_new_builder(self, path, name, owner, source, before_us, after_us):
        self.assertTrue(path.startswith(kt.BUILDER_PATH_PREFIX), path)
        id_ = path[len(kt.BUILDER_PATH_PREFIX):]
        self.assertRegex(id_, kt.ID_RE)
        props = self.props(path)
        self.assertEqual(self.prop_types(path), kt.BUILDER_PROPERTIES)
        self.assertEqual(props['Id'], id_)
        self.assertEqual(props['Name'], name)
        self.assertEqual(props['Owner'], owner)
        self.assertEqual(props['From'], source)
        # Created is µs since the epoch, taken while the call ran.
        self.assertGreaterEqual(props['Created'], before_us - 2_000_000)
        self.assertLessEqual(props['Created'], after_us + 2_000_000)
        self.assertEqual(props['Processes'], [])
        for empty in ('Env', 'Entrypoint', 'Cmd', 'Shell', 'Volumes', 'CapAdd', 'CapDrop', 'Ulimits'):
            self.assertEqual(props[empty], [], empty)
        self.assertEqual(props['Labels'], {})
        # Defaults recorded at creation (docs/decisions.md): the service's isolation, and a user
        # namespace for everyone but root.
        default_isolation = self.busctl('get-property', kt.BUS_NAME, kt.MANAGER_PATH, kt.MANAGER_IFACE,
                                        'DefaultIsolation')['data']
        self.assertEqual(props['Isolation'], default_isolation)
        self.assertEqual(props['UserNamespace'], 'host' if owner == 0 else 'auto')
        # The builder is on disk, with its metadata.
        self.assertTrue(os.path.isfile(os.path.join(self.builder_dir(id_), 'builder.json')),
                        f'{self.builder_dir(id_)}/builder.json missing')
        return id_

    def create_checked(self, name, source, user=None, expect_name=None):
        before = int(time.time() * 1e6)
        path = self.create(name, source, user=user)
        after = int(time.time() * 1e6)
        id_ = self.check_new_builder(path, expect_name or name, self.uid(user), source, before, after)
        return path, id_

    # -- create ----------------------------------------------------------------

    def test_create_scratch_as_root(self):
        path, id_ = self.create_checked('root-scratch', 'scratch')
        self.assertEqual(self.list_builders(), [(id_, 'root-scratch', 0, 'scratch', path)])

    def test_create_scratch_as_alice(self):
        path, id_ = self.create_checked('alice-scratch', 'scratch', user=kt.ALICE)
        alice = self.uid(kt.ALICE)
        self.assertEqual(self.list_builders(user=kt.ALICE), [(id_, 'alice-scratch', alice, 'scratch', path)])
        # Alice reads her own builder's properties.
        self.assertEqual(self.props(path, user=kt.ALICE)['Owner'], alice)

    def test_create_from_directory_as_root_and_alice(self):
        rootfs = self.make_rootfs('dir-source')
        path, id_ = self.create_checked('from-dir-root', rootfs)
        apath, aid = self.create_checked('from-dir-alice', rootfs, user=kt.ALICE)
        self.assertNotEqual(id_, aid)
        self.assertEqual(self.props(apath, user=kt.ALICE)['From'], rootfs)

    def test_create_with_options(self):
        options = {key: value for key, (value, _, _) in FULL_CONFIG.items()}
        path = self.create('with-options', 'scratch', options=options, user=kt.ALICE)
        props = self.props(path, user=kt.ALICE)
        for key, (_, prop, expected) in FULL_CONFIG.items():
            self.assertEqual(props[prop], expected, f'option {key} → property {prop}')

    def test_generated_names(self):
        # As buildah: working-container, then -2, -3 for scratch; <dir>-working-container for a directory.
        p1 = self.create('', 'scratch')
        p2 = self.create('', 'scratch', user=kt.ALICE)
        p3 = self.create('', 'scratch')
        self.assertEqual(self.props(p1)['Name'], 'working-container')
        self.assertEqual(self.props(p2)['Name'], 'working-container-2')
        self.assertEqual(self.props(p3)['Name'], 'working-container-3')
        rootfs = self.make_rootfs('rootfs')
        self.assertEqual(os.path.basename(rootfs), 'rootfs')
        p4 = self.create('', rootfs, user=kt.ALICE)
        p5 = self.create('', rootfs, user=kt.ALICE)
        self.assertEqual(self.props(p4)['Name'], 'rootfs-working-container')
        self.assertEqual(self.props(p5)['Name'], 'rootfs-working-container-2')
        # A freed name is used again.
        self.assertOk(self.remove(p1))
        p6 = self.create('', 'scratch')
        self.assertEqual(self.props(p6)['Name'], 'working-container')

    def test_object_path_is_id(self):
        path = self.create('pathcheck', 'scratch')
        id_ = self.props(path)['Id']
        self.assertEqual(path, kt.BUILDER_PATH_PREFIX + id_)
        self.assertEqual(self.listdir(self.builders_dir), [id_])

    # -- list and get --------------------------------------------------------------

    def test_list_builders(self):
        alice = self.uid(kt.ALICE)
        rootfs = self.make_rootfs('list-src')
        made = {}
        for name, source, user in (('zeta', 'scratch', None), ('alpha', rootfs, kt.ALICE),
                                   ('mid', 'scratch', kt.ALICE)):
            made[name] = self.create(name, source, user=user)
        entries = self.list_builders()
        # Sorted by name, each (id, name, owner, from, path) matching the object.
        self.assertEqual([e[1] for e in entries], ['alpha', 'mid', 'zeta'])
        for id_, name, owner, source, path in entries:
            self.assertEqual(path, made[name])
            props = self.props(path)
            self.assertEqual((id_, name, owner, source), (props['Id'], props['Name'], props['Owner'], props['From']))
        self.assertEqual({e[1]: e[2] for e in entries}, {'alpha': alice, 'mid': alice, 'zeta': 0})
        self.assertEqual({e[1]: e[3] for e in entries}, {'alpha': rootfs, 'mid': 'scratch', 'zeta': 'scratch'})

    def test_get_builder_by_name_id_and_prefix(self):
        for user in (None, kt.ALICE):
            name = f'get-{user or "root"}'
            path = self.create(name, 'scratch', user=user)
            id_ = self.props(path)['Id']
            for key in (name, id_, id_[:12], id_[:20], id_[:63]):
                r = self.get_builder(key, user=user)
                self.assertTrue(r.ok, f'GetBuilder({key!r}) as {user}: {r}')
                self.assertEqual(r.object_path(), path, key)
            # Shorter than 12 characters is not an id prefix.
            self.assertError(self.get_builder(id_[:11], user=user), kt.E_NOT_FOUND)
            self.assertError(self.get_builder(id_ + '0', user=user), kt.E_NOT_FOUND)

    def test_get_builder_missing(self):
        self.assertError(self.get_builder('no-such-builder'), kt.E_NOT_FOUND, 'no-such-builder')
        self.assertError(self.get_builder('0' * 64), kt.E_NOT_FOUND)

    # -- configure -----------------------------------------------------------------

    def test_configure_every_key(self):
        path = self.create('conf-all', 'scratch', user=kt.ALICE)
        before = self.props(path, user=kt.ALICE)
        changes = {key: value for key, (value, _, _) in FULL_CONFIG.items()}
        self.assertOk(self.configure(path, changes, user=kt.ALICE))
        after = self.props(path, user=kt.ALICE)
        for key, (_, prop, expected) in FULL_CONFIG.items():
            self.assertEqual(after[prop], expected, f'Configure {key} → {prop}')
        # The constant properties did not move.
        for prop in ('Id', 'Name', 'Owner', 'From', 'Created'):
            self.assertEqual(after[prop], before[prop], prop)

    def test_configure_replaces_only_given_keys(self):
        path = self.create('conf-partial', 'scratch', options={'env': ['A=1'], 'hostname': 'h1'})
        self.assertOk(self.configure(path, {'env': ['B=2', 'C=3']}))
        props = self.props(path)
        self.assertEqual(props['Env'], ['B=2', 'C=3'])
        self.assertEqual(props['Hostname'], 'h1')
        # An empty value clears.
        self.assertOk(self.configure(path, {'env': [], 'hostname': ''}))
        props = self.props(path)
        self.assertEqual(props['Env'], [])
        self.assertEqual(props['Hostname'], '')
        # An empty change set changes nothing and succeeds.
        self.assertOk(self.configure(path, {}))
        self.assertEqual(self.props(path), props)

    def test_root_configures_alices_builder(self):
        path = self.create('conf-by-root', 'scratch', user=kt.ALICE)
        self.assertOk(self.configure(path, {'labels': {'set-by': 'root'}}))
        self.assertEqual(self.props(path, user=kt.ALICE)['Labels'], {'set-by': 'root'})

    def test_properties_changed_reaches_owner(self):
        path = self.create('signals', 'scratch', user=kt.ALICE)
        with kt.Listener(self.env, kt.ALICE) as listener:
            self.assertOk(self.configure(path, {'env': ['X=1'], 'working_dir': '/x'}, user=kt.ALICE))
            signal = listener.wait_for(lambda s: s.get('member') == 'PropertiesChanged' and s.get('path') == path)
            self.assertIsNotNone(signal, f'no PropertiesChanged for {path} reached alice\'s connection; '
                                         f'got {listener.signals}')
            self.assertEqual(signal['interface'], kt.PROPERTIES_IFACE)
            self.assertEqual(signal['destination'], listener.unique_name)
            self.assertEqual(signal['body'][0], kt.BUILDER_IFACE)
            changed = signal['body'][1]
            self.assertEqual(changed.get('Env'), ['X=1'], signal)
            self.assertEqual(changed.get('WorkingDir'), '/x', signal)
            self.assertNotIn('Hostname', changed, 'a property that did not change was announced')

            # A change made by root reaches the owner too.
            listener.signals.clear()
            self.assertOk(self.configure(path, {'hostname': 'by-root'}))
            signal = listener.wait_for(lambda s: s.get('member') == 'PropertiesChanged' and s.get('path') == path)
            self.assertIsNotNone(signal, 'PropertiesChanged of a change by root did not reach the owner')
            self.assertEqual(signal['body'][1].get('Hostname'), 'by-root')

    def test_failed_configure_announces_nothing(self):
        path = self.create('no-signal', 'scratch', user=kt.ALICE)
        with kt.Listener(self.env, kt.ALICE) as listener:
            r = self.configure(path, {'env': ['GOOD=1'], 'cap_add': ['CAP_NOPE']}, user=kt.ALICE)
            self.assertError(r, kt.E_INVALID)
            # A good change afterwards is the first thing announced.
            self.assertOk(self.configure(path, {'hostname': 'after'}, user=kt.ALICE))
            signal = listener.wait_for(lambda s: s.get('member') == 'PropertiesChanged')
            self.assertIsNotNone(signal, f'no PropertiesChanged; got {listener.signals}')
            self.assertEqual(signal['body'][1], {'Hostname': 'after'})

    def test_properties_changed_is_unicast(self):
        # Seen from the bus: the signal carries a destination, the owner's connection.
        path = self.create('unicast', 'scratch', user=kt.ALICE)
        with kt.Listener(self.env, kt.ALICE) as listener, kt.BusMonitor(self.env) as monitor:
            self.assertOk(self.configure(path, {'cmd': ['true']}, user=kt.ALICE))
            self.assertIsNotNone(listener.wait_for(lambda s: s.get('member') == 'PropertiesChanged'))
        sent = [m for m in monitor.signals('PropertiesChanged') if m.get('path') == path]
        self.assertTrue(sent, 'busctl monitor saw no PropertiesChanged')
        for m in sent:
            self.assertTrue(m.get('destination'), f'PropertiesChanged was broadcast: {m}')
        self.assertIn(listener.unique_name, [m.get('destination') for m in sent])

    def check_added_removed(self, listener, name):
        path = self.create(name, 'scratch', user=kt.ALICE)
        added = listener.wait_for(lambda s: s.get('member') == 'InterfacesAdded' and s['body'][0] == path)
        self.assertIsNotNone(added, f'no InterfacesAdded for {path}; got {listener.signals}')
        self.assertEqual(added['path'], kt.MANAGER_PATH)
        self.assertEqual(added['interface'], kt.OBJECT_MANAGER_IFACE)
        self.assertEqual(added['destination'], listener.unique_name)
        self.assertEqual(added['body'][1][kt.BUILDER_IFACE]['Name'], name)
        self.assertEqual(added['body'][1][kt.BUILDER_IFACE]['Owner'], self.uid(kt.ALICE))
        self.assertOk(self.remove(path, user=kt.ALICE))
        removed = listener.wait_for(lambda s: s.get('member') == 'InterfacesRemoved' and s['body'][0] == path)
        self.assertIsNotNone(removed, f'no InterfacesRemoved for {path}; got {listener.signals}')
        self.assertIn(kt.BUILDER_IFACE, removed['body'][1])

    def test_interfaces_added_and_removed_reach_owner(self):
        # An ObjectManager client: GetManagedObjects first (nothing there yet), then signals.
        with kt.Listener(self.env, kt.ALICE, first_call='GetManagedObjects') as listener:
            self.check_added_removed(listener, 'added')

    def test_interfaces_added_after_list_with_builders_present(self):
        # The same, for a client whose first call saw one of its builders.
        self.create('already-there', 'scratch', user=kt.ALICE)
        with kt.Listener(self.env, kt.ALICE) as listener:
            self.check_added_removed(listener, 'added-later')

    # -- remove ----------------------------------------------------------------------

    def check_removed(self, path, id_):
        self.assertNotIn(id_, [e[0] for e in self.list_builders()])
        self.assertFalse(os.path.exists(self.builder_dir(id_)), f'{self.builder_dir(id_)} still exists')
        r = self.gcall(path, kt.PROPERTIES_IFACE + '.Get', kt.gv_str(kt.BUILDER_IFACE), kt.gv_str('Name'))
        self.assertError(r, kt.E_UNKNOWN_OBJECT)
        self.assertError(self.get_builder(id_), kt.E_NOT_FOUND)

    def test_remove_as_root(self):
        path = self.create('rm-root', 'scratch')
        id_ = self.props(path)['Id']
        self.assertTrue(os.path.isdir(self.builder_dir(id_)))
        r = self.assertOk(self.remove(path))
        self.assertEqual(r.out.strip(), '()')
        self.check_removed(path, id_)
        # Removing again: the object is gone.
        self.assertError(self.remove(path), kt.E_UNKNOWN_OBJECT)

    def test_remove_as_alice(self):
        rootfs = self.make_rootfs('rm-src')
        path = self.create('rm-alice', rootfs, user=kt.ALICE)
        id_ = self.props(path)['Id']
        keep = self.create('rm-keep', 'scratch', user=kt.ALICE)
        self.assertOk(self.remove(path, user=kt.ALICE))
        self.check_removed(path, id_)
        # The other builder and the source are untouched.
        self.assertEqual([e[1] for e in self.list_builders(user=kt.ALICE)], ['rm-keep'])
        self.assertEqual(self.props(keep, user=kt.ALICE)['Name'], 'rm-keep')
        self.assertTrue(os.path.isfile(os.path.join(rootfs, 'etc', 'os-release')))

    def test_remove_unknown_option(self):
        path = self.create('rm-opt', 'scratch')
        r = self.gcall(path, kt.BUILDER_IFACE + '.Remove', kt.gv_dict({'bogus': True}))
        self.assertError(r, kt.E_INVALID, 'bogus')
        self.assertEqual([e[1] for e in self.list_builders()], ['rm-opt'])

    def test_remove_with_force(self):
        path = self.create('rm-force', 'scratch')
        id_ = self.props(path)['Id']
        self.assertOk(self.remove(path, force=True))
        self.check_removed(path, id_)

    def test_name_reusable_after_remove(self):
        path = self.create('reuse', 'scratch')
        self.assertOk(self.remove(path))
        again = self.create('reuse', 'scratch', user=kt.ALICE)
        self.assertNotEqual(again, path)
        self.assertEqual(self.props(again)['Owner'], self.uid(kt.ALICE))


if __name__ == '__main__':
    kt.main()
