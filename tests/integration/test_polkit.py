#!/usr/bin/env python3
"""polkit decides CreateBuilder and Mount: kiln-alice (group kiln, the test rules
say yes to create) may create; kiln-bob falls to the policy defaults
(auth_admin, no session) and is refused, with nothing created. Root is never
asked.

What the refusal is called depends on the call, as the D-Bus specification
and systemd's services have it: a call that does not allow interactive
authorization, where polkit would ask for a password, answers
org.freedesktop.DBus.Error.InteractiveAuthorizationRequired; a call that does
allow it, with no authentication agent registered for polkit to ask through,
is refused by polkit and answers org.freedesktop.DBus.Error.AccessDenied."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module

# The header flag ALLOW_INTERACTIVE_AUTHORIZATION.
FLAG_ALLOW_INTERACTIVE = 0x4


class Polkit(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def busctl_create(self, user, interactive, source='scratch', name=''):
        """CreateBuilder through busctl as @user, observed by a bus monitor; returns
        (busctl's CallResult, the call message, the reply message)."""
        return self.observed_busctl(
            'CreateBuilder', kt.MANAGER_PATH,
            [f'--allow-interactive-authorization={"yes" if interactive else "no"}', 'call', kt.BUS_NAME,
             kt.MANAGER_PATH, kt.MANAGER_IFACE, 'CreateBuilder', 'ssa{sv}', name, source, '0'], user=user)

    def test_alice_may_create(self):
        path = self.create('alice-ok', 'scratch', user=kt.ALICE)
        self.assertEqual(self.props(path)['Owner'], self.uid(kt.ALICE))
        rootfs = self.make_rootfs('alice-src')
        path = self.create('alice-dir', rootfs, user=kt.ALICE)
        self.assertEqual(self.props(path)['From'], rootfs)

    def test_alice_may_create_interactive_call(self):
        r, call, reply = self.busctl_create(kt.ALICE, True, name='alice-interactive')
        self.assertTrue(r.ok, r)
        self.assertEqual(reply['type'], 'method_return', reply)
        self.assertEqual([e[1] for e in self.list_builders()], ['alice-interactive'])

    def test_bob_denied_noninteractive(self):
        before = self.snapshot()
        r = self.create_call('bob-b', 'scratch', user=kt.BOB)
        self.assertError(r, kt.E_INTERACTIVE, 'org.kiln.builder1.create')
        r = self.create_call('', 'scratch', user=kt.BOB)
        self.assertError(r, kt.E_INTERACTIVE)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(self.list_builders(user=kt.BOB), [])

    def test_bob_denied_noninteractive_busctl(self):
        before = self.snapshot()
        r, call, reply = self.busctl_create(kt.BOB, False, name='bob-busctl')
        self.assertFalse(r.ok, r)
        self.assertEqual(call['flags'] & FLAG_ALLOW_INTERACTIVE, 0, call)
        self.assertEqual(reply['type'], 'error', reply)
        self.assertEqual(reply['error_name'], kt.E_INTERACTIVE, reply)
        self.assertEqual(self.snapshot(), before)

    def test_bob_denied_interactive_without_agent(self):
        # busctl sets ALLOW_INTERACTIVE_AUTHORIZATION; polkit has no agent to ask a
        # password through, so it says no, and that is AccessDenied.
        before = self.snapshot()
        r, call, reply = self.busctl_create(kt.BOB, True, name='bob-interactive')
        self.assertFalse(r.ok, r)
        self.assertEqual(call['flags'] & FLAG_ALLOW_INTERACTIVE, FLAG_ALLOW_INTERACTIVE, call)
        self.assertEqual(reply['type'], 'error', reply)
        self.assertEqual(reply['error_name'], kt.E_ACCESS_DENIED, reply)
        # busctl shows AccessDenied as such.
        self.assertIn('Access denied', r.err)
        self.assertEqual(self.snapshot(), before)

    def test_bob_denied_before_import(self):
        # A directory source is not read for a caller who may not create: no layer appears.
        rootfs = self.make_rootfs('bob-src')
        before = self.snapshot()
        r = self.create_call('bob-dir', rootfs, user=kt.BOB)
        self.assertError(r, kt.E_INTERACTIVE)
        r, _, reply = self.busctl_create(kt.BOB, True, source=rootfs, name='bob-dir2')
        self.assertEqual(reply.get('error_name'), kt.E_ACCESS_DENIED, reply)
        self.assertEqual(self.snapshot(), before)
        self.assertEqual([n for n in self.listdir(self.layers_dir) if n.startswith('.tmp')], [])

    def test_bob_cli_denied(self):
        before = self.snapshot()
        code, out, err = self.env.kiln('from', '--name', 'bob-cli', 'scratch', user=kt.BOB)
        self.assertEqual(code, 125, (out, err))
        self.assertEqual(out, '')
        self.assertIn('org.kiln.builder1.create', err)
        self.assertEqual(self.snapshot(), before)

    def test_alice_may_not_mount(self):
        path = self.create('alice-mount', 'scratch', user=kt.ALICE)
        r = self.gcall(path, kt.BUILDER_IFACE + '.Mount', user=kt.ALICE)
        self.assertError(r, kt.E_INTERACTIVE, 'org.kiln.builder1.mount')
        mounts = os.path.join(self.env.dir, 'run', 'mounts')
        for entry in self.listdir(mounts):
            self.assertFalse(os.path.ismount(os.path.join(mounts, entry)), entry)

    def test_root_is_never_asked(self):
        # Root creates and mounts without any rule for it.
        path = self.create('root-ok', 'scratch')
        r = self.gcall(path, kt.BUILDER_IFACE + '.Mount')
        self.assertOk(r)
        mountpoint = r.string()
        self.assertTrue(os.path.ismount(mountpoint), r.out)
        self.assertOk(self.gcall(path, kt.BUILDER_IFACE + '.Unmount'))
        self.assertFalse(os.path.ismount(mountpoint))


if __name__ == '__main__':
    kt.main()
