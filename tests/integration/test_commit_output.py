#!/usr/bin/env python3
"""Commit: the layer blob is written by a thread of its own while the walk reads, tars and hashes the
next blocks (service/image/layer-write.c). What an observer of the host checks: a write that fails in
that thread (the state file system full) fails the commit with the disk's error and leaves nothing
behind (no blob, no temporary file holding space, no thread, no descriptor); a commit after space was
freed stores a blob whose bytes have the digest it is stored under, and other tools read the pushed
image.

kilnd's state is a tmpfs of its own here, small enough for a commit to fill it.
"""
import hashlib
import json
import os
import tarfile
import tempfile
import unittest

import kiln_runlib as kr
import kiln_testlib as kt
from test_commit import sha256_file

STATE_MIB = 96
FILL_MIB = 52  # the run's file: once in the builder's upper dir, then again in the layer: past STATE_MIB


class CommitOutput(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest('integration tests need root')
        cls.env = kt.kh.Env().setup(state_tmpfs_size=f'{STATE_MIB}M')
        cls.failed = False
        with open(os.path.join(cls.env.dir, 'kilnd.pid')) as f:
            cls.kilnd = int(f.read().strip())
        cls.state = os.path.join(cls.env.dir, 'state')
        cls.blobs = os.path.join(cls.state, 'images', 'blobs', 'sha256')
        cls.rootfs = kr.make_run_rootfs(cls.env.scratch_dir('rootfs'))

    @classmethod
    def tearDownClass(cls):
        if cls.failed:
            cls.env.dump_logs()
        cls.env.stop(remove=not cls.failed)

    def run(self, result=None):
        result = super().run(result)
        if result and (result.failures or result.errors):
            type(self).failed = True
        return result

    def kiln(self, *args, check=False):
        return self.env.kiln(*args, check=check)

    def threads(self, name):
        """kilnd's threads called @name."""
        found = []
        for task in os.listdir(f'/proc/{self.kilnd}/task'):
            try:
                with open(f'/proc/{self.kilnd}/task/{task}/comm') as f:
                    if f.read().strip() == name:
                        found.append(task)
            except OSError:
                pass
        return found

    def open_files_under_state(self):
        """What kilnd holds open under its state directory, deleted or not (an O_TMPFILE blob shows as
        '/state/images/#NNN (deleted)')."""
        held = []
        for fd in os.listdir(f'/proc/{self.kilnd}/fd'):
            try:
                target = os.readlink(f'/proc/{self.kilnd}/fd/{fd}')
            except OSError:
                continue
            if target.startswith(os.path.join(self.state, 'images')) and '(deleted)' in target:
                held.append(target)
        return held

    def used_kib(self):
        st = os.statvfs(self.state)
        return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024

    def test_a_full_disk_fails_the_commit_and_leaves_nothing_then_a_commit_stores_a_true_blob(self):
        name = 'filler'
        self.kiln('from', '--name', name, self.rootfs, check=True)
        # The base layer is stored first (small), so that what fails below is the builder's layer.
        code, out, err = self.kiln('commit', name, 'example/base')
        self.assertEqual(code, 0, err)
        self.kiln('run', name, '--', 'sh', '-c',
                  f'head -c {FILL_MIB * 1024 * 1024} /dev/urandom > /big && echo small > /small', check=True)
        blobs_before = sorted(os.listdir(self.blobs))
        used_before = self.used_kib()
        images_before = self.kiln('images', '-q', check=True)[1].split()

        code, out, err = self.kiln('commit', name, 'example/full')
        self.assertNotEqual(code, 0, 'a commit past the state file system must fail')
        self.assertIn('No space left on device', err)
        self.assertIn("builder's layer", err)
        # Nothing of it stays: no blob, no image, no thread writing, no temporary file holding the space.
        self.assertEqual(sorted(os.listdir(self.blobs)), blobs_before)
        self.assertEqual(self.kiln('images', '-q', check=True)[1].split(), images_before)
        self.assertEqual(self.threads('kiln-layer-out'), [])
        self.assertEqual(self.open_files_under_state(), [])
        self.assertLess(self.used_kib() - used_before, 1024, 'the failed blob must not hold its space')

        # Space freed: the commit stores the layer, under the digest of its bytes.
        self.kiln('run', name, '--', 'rm', '/big', check=True)
        code, out, err = self.kiln('commit', '--timestamp', '0', name, 'example/ok')
        self.assertEqual(code, 0, err)
        self.assertEqual(self.threads('kiln-layer-out'), [])
        self.assertEqual(self.open_files_under_state(), [])
        new = sorted(set(os.listdir(self.blobs)) - set(blobs_before))
        self.assertTrue(new)
        for hexd in new:
            self.assertEqual(sha256_file(os.path.join(self.blobs, hexd)), hexd)
        # Another tool reads the image: its last layer holds /small and a whiteout of /big... which was
        # never in a stored layer, so only /small.
        with tempfile.TemporaryDirectory() as work:
            archive = os.path.join(work, 'ok.tar')
            self.kiln('push', 'example/ok', f'oci-archive:{archive}', check=True)
            code, out, err = self.env.run(['skopeo', 'inspect', f'oci-archive:{archive}'])
            self.assertEqual(code, 0, err)
            layers = json.loads(out)['Layers']
            self.assertGreaterEqual(len(layers), 2)
            with tarfile.open(archive) as outer:
                last = outer.extractfile('blobs/sha256/' + layers[-1].split(':')[1])
                with tarfile.open(fileobj=last, mode='r:*') as layer:
                    names = layer.getnames()
        self.assertIn('small', [n.lstrip('./') for n in names])
        self.assertNotIn('big', [n.lstrip('./') for n in names])

    def test_a_large_layer_is_written_whole(self):
        """More blocks than the ring between the walk and its threads holds (16 x 128 KiB), in files that
        do not end on a block:
        the stored blob is the tar of the files, byte for byte in order (its digest is its name and its
        diff_id), and the files read back from it are the ones written."""
        name = 'large'
        self.kiln('from', '--name', name, self.rootfs, check=True)
        self.kiln('run', name, '--', 'sh', '-c',
                  'mkdir /d && for i in 1 2 3 4 5 6 7 8 9; do head -c $((i * 333333)) /dev/urandom > /d/f$i; '
                  'done', check=True)
        blobs_before = set(os.listdir(self.blobs))
        code, out, err = self.kiln('commit', '--timestamp', '0', name, 'example/large')
        self.assertEqual(code, 0, err)
        new = set(os.listdir(self.blobs)) - blobs_before
        layer = None
        for hexd in new:
            path = os.path.join(self.blobs, hexd)
            self.assertEqual(sha256_file(path), hexd)
            if os.path.getsize(path) > 9 * 333333:
                layer = path
        self.assertIsNotNone(layer, f'no layer blob among {new}')
        # The files themselves, in the builder's upper dir on the host, against the layer's.
        uppers = [os.path.join(self.state, 'builders', b, 'upper', 'd')
                  for b in os.listdir(os.path.join(self.state, 'builders'))]
        uppers = [u for u in uppers if os.path.isdir(u)]
        self.assertEqual(len(uppers), 1, uppers)
        in_builder = {f: sha256_file(os.path.join(uppers[0], f)) for f in os.listdir(uppers[0])}
        self.assertEqual(len(in_builder), 9)
        in_layer = {}
        with tarfile.open(layer) as t:
            for m in t.getmembers():
                if m.isfile() and m.name.lstrip('./').startswith('d/'):
                    in_layer[os.path.basename(m.name)] = hashlib.sha256(t.extractfile(m).read()).hexdigest()
        self.assertEqual(in_layer, in_builder)
        self.assertEqual(self.threads('kiln-layer-out'), [])


if __name__ == '__main__':
    kt.main()
