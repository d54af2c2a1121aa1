#!/usr/bin/env python3
"""What kilnd introspects for the Manager and a Builder matches
dbus/org.kiln.Builder1.Manager.xml and dbus/org.kiln.Builder1.Builder.xml:
methods with their arguments (name, type, direction), properties (type,
access, EmitsChangedSignal), signals; read with busctl and gdbus."""
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module

EMITS = 'org.freedesktop.DBus.Property.EmitsChangedSignal'


def xml_file(name):
    return os.path.join(kt.kh.SOURCE_ROOT, 'dbus', name)


def parse_interface(xml_text, interface):
    """(methods, properties, signals) of @interface in introspection XML:
    methods {name: [(arg name, type, direction)]}, properties {name: (type, access,
    EmitsChangedSignal or None)}, signals {name: [(arg name, type)]}."""
    root = ET.fromstring(xml_text)
    found = [i for i in root.iter('interface') if i.get('name') == interface]
    if not found:
        return None
    iface = found[0]
    methods = {m.get('name'): [(a.get('name'), a.get('type'), a.get('direction', 'in')) for a in m.findall('arg')]
               for m in iface.findall('method')}
    properties = {}
    for p in iface.findall('property'):
        emits = [a.get('value') for a in p.findall('annotation') if a.get('name') == EMITS]
        properties[p.get('name')] = (p.get('type'), p.get('access'), emits[0] if emits else None)
    signals = {s.get('name'): [(a.get('name'), a.get('type')) for a in s.findall('arg')]
               for s in iface.findall('signal')}
    return methods, properties, signals


def read(path):
    with open(path) as f:
        return f.read()


def without_names(methods):
    return {m: [(t, d) for _, t, d in args] for m, args in methods.items()}


class Introspection(kt.KilnTestCase):

    @classmethod
    def setUpClass(cls):
        cls.manager_doc = parse_interface(read(xml_file('org.kiln.Builder1.Manager.xml')), kt.MANAGER_IFACE)
        cls.builder_doc = parse_interface(read(xml_file('org.kiln.Builder1.Builder.xml')), kt.BUILDER_IFACE)
        assert cls.manager_doc and cls.builder_doc

    def setUp(self):
        self.builder = self.create('introspected', 'scratch', user=kt.ALICE)

    def tearDown(self):
        self.remove_all_builders()

    def busctl_xml(self, path, user=None):
        return self.busctl('introspect', '--xml-interface', kt.BUS_NAME, path, user=user, json_out=False)

    def gdbus_xml(self, path, user=None):
        code, out, err = self.env.run(['gdbus', 'introspect', '--system', '--dest', kt.BUS_NAME,
                                       '--object-path', path, '--xml'], user=user)
        self.assertEqual(code, 0, err)
        return out

    def compare(self, live, doc, what):
        self.assertIsNotNone(live, f'{what}: interface missing from kilnd\'s introspection')
        live_methods, live_props, live_signals = live
        doc_methods, doc_props, doc_signals = doc
        # Method names, argument types and directions.
        self.assertEqual(without_names(live_methods), without_names(doc_methods), f'{what}: methods')
        # Property names, types, access.
        self.assertEqual({n: p[:2] for n, p in live_props.items()}, {n: p[:2] for n, p in doc_props.items()},
                         f'{what}: properties')
        self.assertEqual(live_signals, doc_signals, f'{what}: signals')

    def compare_details(self, live, doc, what):
        live_methods, live_props, _ = live
        doc_methods, doc_props, _ = doc
        self.assertEqual(live_methods, doc_methods, f'{what}: argument names')
        # "const" where the file says so; sd-bus leaves the default (true) unannotated.
        self.assertEqual({n: p[2] or 'true' for n, p in live_props.items()},
                         {n: p[2] or 'true' for n, p in doc_props.items()}, f'{what}: EmitsChangedSignal')

    def test_manager_busctl(self):
        live = parse_interface(self.busctl_xml(kt.MANAGER_PATH), kt.MANAGER_IFACE)
        self.compare(live, self.manager_doc, 'Manager (busctl, root)')

    def test_manager_gdbus_as_user(self):
        for user in (kt.ALICE, kt.BOB):
            live = parse_interface(self.gdbus_xml(kt.MANAGER_PATH, user=user), kt.MANAGER_IFACE)
            self.compare(live, self.manager_doc, f'Manager (gdbus, {user})')

    def test_manager_details(self):
        live = parse_interface(self.busctl_xml(kt.MANAGER_PATH), kt.MANAGER_IFACE)
        self.compare_details(live, self.manager_doc, 'Manager')

    def test_manager_is_object_manager(self):
        root = ET.fromstring(self.busctl_xml(kt.MANAGER_PATH))
        names = [i.get('name') for i in root.iter('interface')]
        self.assertIn(kt.OBJECT_MANAGER_IFACE, names)
        self.assertIn(kt.PROPERTIES_IFACE, names)

    def test_builder_busctl(self):
        live = parse_interface(self.busctl_xml(self.builder), kt.BUILDER_IFACE)
        self.compare(live, self.builder_doc, 'Builder (busctl, root)')

    def test_builder_gdbus_as_owner(self):
        live = parse_interface(self.gdbus_xml(self.builder, user=kt.ALICE), kt.BUILDER_IFACE)
        self.compare(live, self.builder_doc, 'Builder (gdbus, owner)')

    def test_builder_details(self):
        live = parse_interface(self.busctl_xml(self.builder), kt.BUILDER_IFACE)
        self.compare_details(live, self.builder_doc, 'Builder')

    def test_builder_properties_readable_with_documented_types(self):
        # Every documented property answers GetAll with its documented type.
        types = self.prop_types(self.builder, user=kt.ALICE)
        self.assertEqual(types, {n: p[0] for n, p in self.builder_doc[1].items()})

    def test_manager_properties_readable_with_documented_types(self):
        data = self.bcall(kt.MANAGER_PATH, kt.PROPERTIES_IFACE, 'GetAll', 's', kt.MANAGER_IFACE, user=kt.BOB)
        self.assertEqual({k: v['type'] for k, v in data[0].items()},
                         {n: p[0] for n, p in self.manager_doc[1].items()})
        props = {k: v['data'] for k, v in data[0].items()}
        self.assertIn(props['DefaultIsolation'], ('oci', 'chroot'))
        self.assertTrue(props['Version'])
        if props['Runtimes']:
            self.assertEqual(props['DefaultRuntime'], props['Runtimes'][0])

    def test_builder_listed_as_child(self):
        root = ET.fromstring(self.busctl_xml(kt.BUILDER_PATH_PREFIX.rstrip('/'), user=kt.ALICE))
        children = [n.get('name') for n in root.findall('node')]
        self.assertIn(self.builder[len(kt.BUILDER_PATH_PREFIX):], children)


if __name__ == '__main__':
    kt.main()
