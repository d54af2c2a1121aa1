#!/usr/bin/env python3
"""Bad input answers the right error name, and nothing is created or changed:
the builders root sees, the STATE/builders and STATE/layers listings, and (for
Configure) every property are compared before and after each call."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module

BASE_CONFIG = {
    'env': ['A=1', 'B=2'],
    'working_dir': '/w',
    'user': 'builder',
    'hostname': 'base',
    'cmd': ['sh'],
    'volumes': ['/srv:/srv:ro'],
    'labels': {'k': 'v'},
    'cap_add': ['CAP_NET_RAW'],
    'ulimits': ['nofile=1024:2048'],
    'isolation': 'oci',
}


class BadInput(kt.KilnTestCase):

    @classmethod
    def setUpClass(cls):
        cls.max_array = kt.read_conf_value(kt.ENV, 'Limits', 'MaxArrayLength', 256)
        cls.max_string = kt.read_conf_value(kt.ENV, 'Limits', 'MaxStringLength', 4096)
        cls.builders_per_user = kt.read_conf_value(kt.ENV, 'Limits', 'BuildersPerUser', 100)

    def setUp(self):
        # Present in every case: a name that is taken, a builder to configure.
        self.taken = self.create('taken', 'scratch')
        self.target = self.create('target', 'scratch', user=kt.ALICE, options=BASE_CONFIG)

    def tearDown(self):
        self.remove_all_builders()

    def assertUnchanged(self, before, what):
        self.assertEqual(self.snapshot(), before, f'{what} changed the state')
        self.assertEqual([n for n in self.listdir(self.layers_dir) if n.startswith('.tmp')], [],
                         f'{what} left a temporary import in {self.layers_dir}')

    # -- CreateBuilder ---------------------------------------------------------------

    def create_cases(self):
        not_dir = os.path.join(self.unique_scratch_dir('files'), 'a-file')
        with open(not_dir, 'w') as f:
            f.write('not a directory\n')
        os.chmod(not_dir, 0o644)
        long_string = 'x' * (self.max_string + 1)
        return [
            # (name, from, options, error, message fragments)
            ('a/b', 'scratch', None, kt.E_INVALID, ['name', 'a/b']),
            ('..', 'scratch', None, kt.E_INVALID, ['name']),
            ('.', 'scratch', None, kt.E_INVALID, ['name']),
            ('../escape', 'scratch', None, kt.E_INVALID, ['name']),
            ('-dash', 'scratch', None, kt.E_INVALID, ['name']),
            ('sp ace', 'scratch', None, kt.E_INVALID, ['name']),
            ('n' * 129, 'scratch', None, kt.E_INVALID, ['name']),
            (long_string, 'scratch', None, kt.E_LIMIT, ['name']),
            ('taken', 'scratch', None, kt.E_EXISTS, ['taken']),
            ('ok', 'foo:bar', None, kt.E_INVALID, ['from', 'foo:bar']),
            ('ok', 'rootfs', None, kt.E_INVALID, ['from', 'rootfs']),
            ('ok', '', None, kt.E_INVALID, ['from']),
            ('ok', 'oci:x', None, kt.E_INVALID, ['from', 'oci:x']),
            ('ok', 'oci-archive:/nonexistent/x.tar', None, kt.E_NOT_FOUND, ['/nonexistent/x.tar']),
            ('ok', 'docker-archive:x.tar', None, kt.E_INVALID, ['from', 'docker-archive:x.tar']),
            ('ok', '/' + long_string, None, kt.E_LIMIT, ['from']),
            ('ok', '/nonexistent/kiln-test-dir', None, kt.E_NOT_FOUND, ['/nonexistent/kiln-test-dir']),
            ('ok', not_dir, None, kt.E_INVALID, [not_dir]),
            ('ok', 'scratch', {'bogus': 'x'}, kt.E_INVALID, ['bogus']),
            ('ok', 'scratch', {'env': ['NOEQ']}, kt.E_INVALID, ['env[0]']),
            ('ok', 'scratch', {'env': ('s', "'A=1'")}, kt.E_INVALID, ['env']),
            ('ok', 'scratch', {'cap_add': ['CAP_NOPE']}, kt.E_INVALID, ['CAP_NOPE']),
            ('ok', 'scratch', {'rootfs_fd': ('s', "'/tmp'")}, kt.E_INVALID, ['rootfs_fd']),
            ('ok', 'scratch', {'env': ['X=1'] * (self.max_array + 1)}, kt.E_LIMIT, ['env']),
        ]

    def run_create_case(self, name, source, options, error, fragments, user):
        before = self.snapshot()
        r = self.create_call(name, source, options=options, user=user)
        self.assertError(r, error, fragments)
        self.assertUnchanged(before, f'CreateBuilder({name[:40]!r}, {source[:40]!r}, {options!r:.60})')

    def test_create_bad_input_as_root(self):
        for name, source, options, error, fragments in self.create_cases():
            with self.subTest(name=name[:40], source=source[:40], options=repr(options)[:60]):
                self.run_create_case(name, source, options, error, fragments, None)

    def test_create_bad_input_as_alice(self):
        for name, source, options, error, fragments in self.create_cases():
            with self.subTest(name=name[:40], source=source[:40], options=repr(options)[:60]):
                self.run_create_case(name, source, options, error, fragments, kt.ALICE)

    def test_create_too_many_options(self):
        items = [('hostname', 'h')] * (self.max_array + 1)
        before = self.snapshot()
        r = self.create_call('ok', 'scratch', options=kt.gv_dict(items=items))
        self.assertError(r, kt.E_LIMIT, ['options'])
        self.assertUnchanged(before, 'CreateBuilder with too many options')

    def test_create_unreadable_path_as_alice(self):
        # /root is 0700: alice cannot read it, and kilnd must not read it for her.
        self.assertEqual(os.stat('/root').st_mode & 0o077, 0, '/root is readable by others on this host')
        before = self.snapshot()
        r = self.create_call('ok', '/root', user=kt.ALICE)
        self.assertError(r, kt.E_ACCESS_DENIED, ['/root'])
        self.assertUnchanged(before, 'CreateBuilder from /root as alice')

    def test_create_dir_with_root_only_file_as_alice(self):
        def secret(path):
            p = os.path.join(path, 'etc', 'shadow')
            with open(p, 'w') as f:
                f.write('root:secret\n')
            os.chmod(p, 0o600)
        rootfs = self.make_rootfs('with-secret', extra=secret)
        before = self.snapshot()
        r = self.create_call('ok', rootfs, user=kt.ALICE)
        self.assertError(r, kt.E_ACCESS_DENIED, [rootfs])
        self.assertUnchanged(before, 'CreateBuilder from a dir with a root-only file as alice')
        # Root may import it (as itself), which shows the failure was alice's credentials.
        path = self.create('root-reads', rootfs)
        self.assertEqual(self.props(path)['From'], rootfs)

    def create_with_fd(self, name, source, fd_path, user=kt.ALICE, extra=None):
        options = {'rootfs_fd': ['h', 0]}
        options.update(extra or {})
        return self.rawcall(kt.MANAGER_PATH, kt.MANAGER_IFACE, 'CreateBuilder', 'ssa{sv}',
                            [name, source, options], user=user, fd_paths=[fd_path])

    def test_create_rootfs_fd_not_a_directory(self):
        afile = os.path.join(self.env.scratch_dir('fdfile'), 'f')
        with open(afile, 'w') as f:
            f.write('x')
        os.chmod(afile, 0o644)
        before = self.snapshot()
        reply = self.create_with_fd('ok', afile, afile)
        self.assertEqual(reply.get('error_name'), kt.E_INVALID, reply)
        self.assertIn('rootfs_fd', reply['body'][0])
        self.assertUnchanged(before, 'CreateBuilder with a file as rootfs_fd')

    def test_create_rootfs_fd_relative_from(self):
        rootfs = self.make_rootfs('fd-rel')
        before = self.snapshot()
        reply = self.create_with_fd('ok', 'fd-rel', rootfs)
        self.assertEqual(reply.get('error_name'), kt.E_INVALID, reply)
        self.assertIn('from', reply['body'][0])
        self.assertUnchanged(before, 'CreateBuilder with rootfs_fd and a relative from')

    def test_create_rootfs_fd_wrong_type(self):
        rootfs = self.make_rootfs('fd-type')
        before = self.snapshot()
        reply = self.rawcall(kt.MANAGER_PATH, kt.MANAGER_IFACE, 'CreateBuilder', 'ssa{sv}',
                             ['ok', rootfs, {'rootfs_fd': ['i', 0]}], user=kt.ALICE)
        self.assertEqual(reply.get('error_name'), kt.E_INVALID, reply)
        self.assertIn('rootfs_fd', reply['body'][0])
        self.assertUnchanged(before, 'CreateBuilder with rootfs_fd of type i')

    def test_create_rootfs_fd_with_bad_option(self):
        rootfs = self.make_rootfs('fd-badopt')
        before = self.snapshot()
        reply = self.create_with_fd('ok', rootfs, rootfs, extra={'env': ['as', ['NOEQ']]})
        self.assertEqual(reply.get('error_name'), kt.E_INVALID, reply)
        self.assertIn('env[0]', reply['body'][0])
        self.assertUnchanged(before, 'CreateBuilder with rootfs_fd and a bad env')

    def test_create_rootfs_fd_works(self):
        # The same call with a directory succeeds: the cases above fail for their reason.
        rootfs = self.make_rootfs('fd-ok')
        reply = self.create_with_fd('fd-ok', rootfs, rootfs)
        self.assertEqual(reply['type'], 'method_return', reply)
        path = reply['body'][0]
        self.assertEqual(self.get_builder('fd-ok').object_path(), path)
        props = self.props(path)
        self.assertEqual(props['From'], rootfs)
        self.assertEqual(props['Owner'], self.uid(kt.ALICE))

    def test_builders_per_user(self):
        limit = self.builders_per_user
        if limit > 300:
            self.skipTest(f'BuildersPerUser={limit} in kiln.conf is too many to create in a test')
        # alice already owns "target".
        for i in range(limit - 1):
            self.create(f'quota-{i}', 'scratch', user=kt.ALICE)
        self.assertEqual(len(self.list_builders(user=kt.ALICE)), limit)
        before = self.snapshot()
        r = self.create_call('one-too-many', 'scratch', user=kt.ALICE)
        self.assertError(r, kt.E_LIMIT, [str(limit)])
        r = self.create_call('', 'scratch', user=kt.ALICE)
        self.assertError(r, kt.E_LIMIT)
        self.assertUnchanged(before, 'CreateBuilder past BuildersPerUser')
        # Root is not limited; alice may create again once she removed one.
        self.create('root-unlimited', 'scratch')
        self.assertOk(self.remove(self.get_builder('quota-0').object_path(), user=kt.ALICE))
        self.create('fits-again', 'scratch', user=kt.ALICE)

    # -- GetBuilder ----------------------------------------------------------------------

    def test_get_builder_bad_input(self):
        before = self.snapshot()
        self.assertError(self.get_builder(''), kt.E_INVALID, ['name_or_id'])
        self.assertError(self.get_builder('', user=kt.ALICE), kt.E_INVALID)
        self.assertError(self.get_builder('x' * (self.max_string + 1)), kt.E_LIMIT)
        self.assertError(self.get_builder('../taken'), kt.E_NOT_FOUND)
        self.assertUnchanged(before, 'GetBuilder')

    # -- Configure -----------------------------------------------------------------------------

    def configure_cases(self):
        big_array = self.max_array + 1
        long_value = 'x' * (self.max_string + 1)
        return [
            # (changes, error, message fragments)
            ({'bogus': 'x'}, kt.E_INVALID, ['bogus']),
            ({'Env': ['A=1']}, kt.E_INVALID, ['Env']),
            ({'env': ('s', "'A=1'")}, kt.E_INVALID, ['env']),
            ({'env': ['NOEQ']}, kt.E_INVALID, ['env[0]', 'NOEQ']),
            ({'env': ['GOOD=1', 'NOEQ']}, kt.E_INVALID, ['env[1]']),
            ({'env': ['=value']}, kt.E_INVALID, ['env[0]']),
            ({'working_dir': 'relative'}, kt.E_INVALID, ['working_dir']),
            ({'working_dir': ('as', "['/w']")}, kt.E_INVALID, ['working_dir']),
            ({'user': 'a:b:c'}, kt.E_INVALID, ['user']),
            ({'user': ':group'}, kt.E_INVALID, ['user']),
            ({'hostname': 'bad host'}, kt.E_INVALID, ['hostname']),
            ({'hostname': '-lead'}, kt.E_INVALID, ['hostname']),
            ({'entrypoint': ('s', "'/bin/sh'")}, kt.E_INVALID, ['entrypoint']),
            ({'cap_add': ['CAP_NOPE']}, kt.E_INVALID, ['cap_add', 'CAP_NOPE']),
            ({'cap_drop': ['12']}, kt.E_INVALID, ['cap_drop']),
            ({'volumes': ['/a:/b:bogus']}, kt.E_INVALID, ['volumes', 'bogus']),
            ({'volumes': ['/a:/b:ro,bogus']}, kt.E_INVALID, ['bogus']),
            ({'volumes': ['relative:/b']}, kt.E_INVALID, ['volumes']),
            ({'volumes': ['/a:relative']}, kt.E_INVALID, ['volumes']),
            ({'volumes': ['/only-one']}, kt.E_INVALID, ['volumes']),
            ({'ulimits': ['nofile=2048:1024']}, kt.E_INVALID, ['ulimits']),
            ({'ulimits': ['bogus=1']}, kt.E_INVALID, ['bogus']),
            ({'ulimits': ['nofile']}, kt.E_INVALID, ['ulimits']),
            ({'isolation': 'vm'}, kt.E_INVALID, ['isolation', 'vm']),
            ({'userns': 'keep-id'}, kt.E_INVALID, ['userns']),
            ({'labels': ('as', "['a=b']")}, kt.E_INVALID, ['labels']),
            ({'labels': ('a{sv}', "{'a': <'b'>}")}, kt.E_INVALID, ['labels']),
            ({'labels': {'': 'x'}}, kt.E_INVALID, ['labels']),
            ({'labels': {'a=b': 'x'}}, kt.E_INVALID, ['labels']),
            ({'labels': {'bad\nname': 'x'}}, kt.E_INVALID, ['labels']),
            # Checked whole: a good key next to a bad one changes nothing.
            ({'env': ['GOOD=1'], 'hostname': 'good', 'cap_add': ['CAP_NOPE']}, kt.E_INVALID, ['CAP_NOPE']),
            ({'hostname': 'good', 'bogus': 'x'}, kt.E_INVALID, ['bogus']),
            # Limits.
            ({'env': [f'V{i}=1' for i in range(big_array)]}, kt.E_LIMIT, ['env']),
            ({'cmd': ['x'] * big_array}, kt.E_LIMIT, ['cmd']),
            ({'volumes': ['/a:/b'] * big_array}, kt.E_LIMIT, ['volumes']),
            ({'labels': {f'l{i}': 'v' for i in range(big_array)}}, kt.E_LIMIT, ['labels']),
            ({'working_dir': '/' + long_value}, kt.E_LIMIT, ['working_dir']),
            ({'env': ['A=' + long_value]}, kt.E_LIMIT, ['env']),
            ({'cmd': [long_value]}, kt.E_LIMIT, ['cmd']),
            ({'labels': {'k': long_value}}, kt.E_LIMIT, ['labels']),
            ({'labels': {long_value: 'v'}}, kt.E_LIMIT, ['labels']),
        ]

    def run_configure_case(self, changes, error, fragments, user):
        before_props = self.props(self.target)
        before = self.snapshot()
        r = self.configure(self.target, changes, user=user)
        self.assertError(r, error, fragments)
        self.assertEqual(self.props(self.target), before_props, f'Configure({changes!r:.80}) changed properties')
        self.assertUnchanged(before, f'Configure({changes!r:.80})')

    def test_configure_bad_input_as_owner(self):
        for changes, error, fragments in self.configure_cases():
            with self.subTest(changes=repr(changes)[:80]):
                self.run_configure_case(changes, error, fragments, kt.ALICE)

    def test_configure_bad_input_as_root(self):
        for changes, error, fragments in self.configure_cases():
            with self.subTest(changes=repr(changes)[:80]):
                self.run_configure_case(changes, error, fragments, None)

    def test_configure_too_many_keys(self):
        items = [('hostname', 'h')] * (self.max_array + 1)
        before_props = self.props(self.target)
        r = self.configure(self.target, kt.gv_dict(items=items), user=kt.ALICE)
        self.assertError(r, kt.E_LIMIT, ['changes'])
        self.assertEqual(self.props(self.target), before_props)

    def test_configure_at_the_limits_works(self):
        # Exactly MaxArrayLength entries and MaxStringLength bytes are allowed.
        env = [f'V{i}=1' for i in range(self.max_array)]
        working_dir = '/' + 'w' * (self.max_string - 1)
        self.assertOk(self.configure(self.target, {'env': env, 'working_dir': working_dir}, user=kt.ALICE))
        props = self.props(self.target)
        self.assertEqual(props['Env'], env)
        self.assertEqual(props['WorkingDir'], working_dir)


if __name__ == '__main__':
    kt.main()
