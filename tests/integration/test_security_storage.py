#!/usr/bin/env python3
"""Storage under faults and hostile sizes (issue "Hardening", items 8, 9 and the start-up part of 10).

Each test asserts on the host: the layer directories in STATE/layers, the process table, the mount
table (/proc/self/mountinfo), the bundle directories.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

IMPORT_BYTES = 4 * 1024 * 1024
USER_BYTES = 6 * 1024 * 1024
E_LIMIT = 'org.kiln.Builder1.Error.LimitExceeded'


def setUpModule():
    kr.setup_module(f'[Limits]\nImportBytes={IMPORT_BYTES}\nStorageBytesPerUser={USER_BYTES}\n')


tearDownModule = kr.teardown_module


def layers(cls_self):
    return sorted(n for n in cls_self.listdir(cls_self.layers_dir) if len(n) == 64)


def tmp_trees(cls_self):
    return [n for n in cls_self.listdir(cls_self.layers_dir) if n.startswith('.tmp-')]


def pids_named(comm):
    """[(pid, ppid)] of every process whose comm is @comm."""
    return [(pid, ppid) for pid, (_, ppid, name) in kt.process_table().items() if name == comm]


class StorageSecurity(kr.RunTestCase):
    isolation = 'oci'

    def kill_kilnd(self):
        pid = self.kilnd_pid()
        os.kill(pid, signal.SIGKILL)
        self.wait_until(lambda: not kt.is_running(pid), 10, 'kilnd did not die of SIGKILL')
        return pid

    def layer_of(self, b):
        with open(os.path.join(self.builder_dir(b.id), 'builder.json')) as f:
            return json.load(f)['layer']

    def restart_after_kill(self):
        self.env.restart_kilnd()
        self.fd_baseline = self.kilnd_fds()

    # (a) layers are shared, collected with their last builder, and at start-up.
    def test_layers_collected(self):
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('shared'))
        before = layers(self)
        a = self.builder(rootfs=rootfs)
        b = self.builder(rootfs=rootfs)
        new = sorted(set(layers(self)) - set(before))
        self.assertEqual(len(new), 1, f'two builders from one tree: one new layer, got {new}')
        layer = new[0]
        self.assertEqual([self.layer_of(x) for x in (a, b)], [layer, layer])
        self.assertOk(self.remove(a.path))
        self.assertIn(layer, layers(self), 'the layer went while a builder still uses it')
        self.run_ok(b, 'true')
        self.assertOk(self.remove(b.path))
        self.assertNotIn(layer, layers(self), 'the layer stayed after its last builder went')
        self.assertFalse(os.path.exists(os.path.join(self.layers_dir, layer)))

        # Unused while kilnd was down: its builder's directory removed behind kilnd's back.
        c = self.builder(rootfs=kr.make_run_rootfs(self.unique_scratch_dir('offline')))
        layer_c = sorted(set(layers(self)) - set(before))
        self.assertEqual(len(layer_c), 1)
        pid = self.kilnd_pid()
        os.kill(pid, signal.SIGTERM)
        self.wait_until(lambda: not kt.is_running(pid), 15, 'kilnd did not stop')
        subprocess.run(['rm', '-rf', '--one-file-system', self.builder_dir(c.id)], check=True)
        self.restart_after_kill()
        self.assertNotIn(layer_c[0], layers(self), 'an unused layer survived the start-up')
        self.assertEqual(layers(self), before)
        self.wait_until(lambda: not tmp_trees(self), 15, f'tmp trees left: {tmp_trees(self)}')

    # (b) an import past [Limits] ImportBytes stops, names the limit, and leaves nothing.
    def test_import_bound(self):
        def big(path):
            with open(os.path.join(path, 'big'), 'wb') as f:
                f.write(os.urandom(IMPORT_BYTES + 1))
            os.chmod(os.path.join(path, 'big'), 0o644)
        rootfs = self.make_rootfs('big', extra=big)
        before = self.listdir(self.layers_dir)
        for user in (None, kt.ALICE):
            r = self.create_call('too-big', rootfs, user=user)
            self.assertError(r, E_LIMIT, ['ImportBytes', str(IMPORT_BYTES)])
            self.assertEqual(self.listdir(self.layers_dir), before, 'the refused import left something')
            self.assertEqual(tmp_trees(self), [])
        self.assertEqual(self.list_builders(), [])

    # A user's builders hold at most StorageBytesPerUser of layers; root is not bound by it.
    def test_per_user_bound(self):
        def sized(n):
            def fill(path):
                with open(os.path.join(path, 'data'), 'wb') as f:
                    f.write(os.urandom(n))
                os.chmod(os.path.join(path, 'data'), 0o644)
            return fill
        first = self.make_rootfs('u1', extra=sized(3 * 1024 * 1024))
        second = self.make_rootfs('u2', extra=sized(3 * 1024 * 1024 + 1))
        a = self.create('u1', first, user=kt.ALICE)
        # The same layer again costs nothing more.
        self.create('u1-again', first, user=kt.ALICE)
        before = self.listdir(self.layers_dir)
        r = self.create_call('u2', second, user=kt.ALICE)
        self.assertError(r, E_LIMIT, ['StorageBytesPerUser', str(USER_BYTES)])
        self.assertEqual(self.listdir(self.layers_dir), before)
        self.assertEqual(tmp_trees(self), [])
        # Root's builders are not counted against alice, nor is root bound.
        self.create('u2-root', second)
        # With her first layer gone, the second fits.
        for entry in self.list_builders(user=kt.ALICE):
            self.assertOk(self.remove(entry[4], user=kt.ALICE))
        self.create('u2', second, user=kt.ALICE)
        self.assertTrue(a)

    # (c) kilnd killed mid-import: the importer dies with it; the source still gives a working builder.
    def test_import_dies_with_kilnd(self):
        def many(path):
            d = os.path.join(path, 'many')
            os.makedirs(d, mode=0o755)
            for i in range(4000):
                with open(os.path.join(d, f'f{i:05}'), 'w') as f:
                    f.write('x' * 100)
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('slow'), extra=many)
        kilnd = self.kilnd_pid()
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        client = subprocess.Popen([self.env.kiln_cli, 'from', '--name', 'slow', rootfs], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.children.append(client)
        # Hold the importer while it writes its tmp tree.
        importer = None
        deadline = time.monotonic() + 60
        while importer is None and time.monotonic() < deadline:
            mine = [p for p, ppid in pids_named('kiln-import') if ppid == kilnd]
            if mine and tmp_trees(self):
                importer = mine[0]
                os.kill(importer, signal.SIGSTOP)
            else:
                time.sleep(0.002)
        self.assertIsNotNone(importer, 'never saw kiln-import writing a tmp tree')
        self.assertTrue(tmp_trees(self))
        self.kill_kilnd()
        try:
            self.wait_until(lambda: not kt.is_running(importer), 10,
                            f'kiln-import {importer} outlived kilnd')
        finally:
            try:
                os.kill(importer, signal.SIGCONT)
            except ProcessLookupError:
                pass
        client.communicate(timeout=30)
        self.restart_after_kill()
        self.assertEqual(tmp_trees(self), [], 'the dead import\'s tmp tree was not removed')
        b = self.builder(name='slow-again', rootfs=rootfs)
        self.run_ok(b, '/bin/sh', '-c', 'test -f /many/f03999 && true')
        self.assertEqual(self.sh(b, 'ls /many | wc -l').strip(), '4000')

    # (d) kilnd killed while a run has a staged volume: nothing left mounted or on disk after restart.
    def test_volume_bind_cleaned_at_start(self):
        b = self.builder()
        vol = self.unique_scratch_dir('vol')
        child = self.spawn('-v', f'{vol}:/v', b, '--', 'sleep', '300')
        bundles = os.path.join(self.run_dir, 'bundles')
        self.wait_until(lambda: self.mounts_under(bundles), 30, 'the volume was never staged in a bundle')
        self.kill_kilnd()
        # What a real crash leaves: the container is killed with its runtime state (that part is
        # the runtime clean-up's), the staged bind and the bundle stay.
        self.assertTrue(self.mounts_under(bundles))
        self.restart_after_kill()
        child.kill()
        self.assertEqual(self.mounts_under(bundles), [], 'staged volume binds left mounted')
        self.assertEqual(self.listdir(bundles), [], 'bundle directories left')
        self.assertTrue(os.path.isdir(vol), 'the volume itself must survive the clean-up')


if __name__ == '__main__':
    kt.main()
