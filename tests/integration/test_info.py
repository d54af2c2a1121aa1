#!/usr/bin/env python3
"""kiln info and kiln version against a real kilnd: the runtimes kilnd found, its defaults, the
kiln.conf limits that bind the caller (set to values of this test's own, so they can only come from
kiln.conf), the caller's own storage, and both versions; --json parses and has the keys; the text
form shows the same."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

CONF = ('[Limits]\nProcessesPerUser=17\nArgumentBytes=123457\nBuildersPerUser=23\n'
        'ImagesPerUser=7\nImageConfigBytes=65537\n'
        '[Resources]\nPidsLimit=999\nCPUWeight=77\nMemory=512m\n')
KEYS = {'version', 'runtimes', 'default_runtime', 'default_isolation', 'default_network', 'default_userns',
        'storage_bytes', 'limits'}


def setUpModule():
    kt.setup_module(extra_conf=CONF)


tearDownModule = kt.teardown_module


class Info(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def kiln(self, *args, user=None):
        code, out, err = self.env.kiln(*args, user=user)
        self.assertEqual(code, 0, f'kiln {" ".join(args)} as {user or "root"}: exit {code}\n'
                                  f'stdout: {out}\nstderr: {err}')
        return out

    def manager_property(self, name):
        reply = self.busctl('get-property', kt.BUS_NAME, kt.MANAGER_PATH, kt.MANAGER_IFACE, name)
        return reply['data']

    def info_json(self, user=None):
        info = json.loads(self.kiln('info', '--json', user=user))
        self.assertTrue(KEYS <= set(info), info)
        return info

    def test_info_json_as_alice_and_root(self):
        runtimes = self.manager_property('Runtimes')
        self.assertTrue(runtimes, 'the test environment has a runtime')
        for user in (kt.ALICE, None):
            with self.subTest(user=user):
                info = self.info_json(user)
                self.assertEqual(info['version'], self.manager_property('Version'))
                self.assertEqual(info['runtimes'], runtimes)
                self.assertEqual(info['default_runtime'], runtimes[0])
                self.assertEqual(info['default_isolation'], self.manager_property('DefaultIsolation'))
                self.assertEqual(info['default_network'], 'private')
                limits = info['limits']
                self.assertEqual(limits['ProcessesPerUser'], 17)
                self.assertEqual(limits['ArgumentBytes'], 123457)
                self.assertEqual(limits['PidsLimit'], 999)
                self.assertEqual(limits['CPUWeight'], 77)
                self.assertEqual(limits['Memory'], 512 * 1024 * 1024)
                self.assertEqual(limits['ImageConfigBytes'], 65537)
                # root is not bound by the per-owner builder and storage limits: not shown to it.
                if user:
                    self.assertEqual(limits['BuildersPerUser'], 23)
                    self.assertEqual(limits['ImagesPerUser'], 7)
                    self.assertEqual(info['default_userns'], 'auto')
                else:
                    self.assertNotIn('BuildersPerUser', limits)
                    self.assertNotIn('StorageBytesPerUser', limits)
                    self.assertNotIn('ImagesPerUser', limits)

    def test_info_text_shows_runtimes_and_limits(self):
        runtimes = self.manager_property('Runtimes')
        for user in (kt.ALICE, None):
            with self.subTest(user=user):
                lines = self.kiln('info', user=user).splitlines()
                self.assertIn(f'Runtimes: {", ".join(runtimes)}', lines)
                self.assertIn('Default network: private', lines)
                self.assertIn('Limits:', lines)
                self.assertIn('  ProcessesPerUser: 17', lines)
                self.assertIn('  PidsLimit: 999', lines)
                self.assertEqual(('  BuildersPerUser: 23' in lines), user is not None)

    def test_storage_grows_with_alices_builder(self):
        before = self.info_json(kt.ALICE)['storage_bytes']
        rootfs = self.make_rootfs('info-storage')
        with open(os.path.join(rootfs, 'payload'), 'wb') as f:
            f.write(os.urandom(300000))
        os.chmod(os.path.join(rootfs, 'payload'), 0o644)
        self.kiln('from', '--name', 'info-b', rootfs, user=kt.ALICE)
        after = self.info_json(kt.ALICE)['storage_bytes']
        self.assertGreaterEqual(after - before, 300000)
        # Her builders are hers: root's figure does not include them.
        self.assertLess(self.info_json()['storage_bytes'], 300000)

    def test_version_shows_both(self):
        service = self.manager_property('Version')
        out = self.kiln('version', user=kt.ALICE)
        client = self.kiln('--version').split()[-1]
        self.assertEqual(out.splitlines(), [f'Client: kiln {client}', f'Service: kilnd {service}'])
        self.assertEqual(json.loads(self.kiln('version', '--json')), {'client': client, 'service': service})

    def test_unexpected_argument_is_a_usage_error(self):
        for verb in ('info', 'version'):
            with self.subTest(verb=verb):
                code, out, err = self.env.kiln(verb, 'extra')
                self.assertEqual(code, 125)
                self.assertIn(f"kiln: {verb}: unexpected argument 'extra'", err)


if __name__ == '__main__':
    kt.main()
