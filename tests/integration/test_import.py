#!/usr/bin/env python3
"""Importing a directory through the service keeps what a root file system
needs (owners, modes with setuid/setgid/sticky, hard links, symlinks, fifos,
device nodes, xattrs) in a content-addressed layer under STATE/layers/<digest>/;
the same tree is imported once and shared; a builder copies nothing."""
import os
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module

BIG = 1024 * 1024


def make_full_rootfs(path):
    """Everything an image's root file system has that a plain copy could lose."""
    def d(rel, mode=0o755, owner=(0, 0)):
        p = os.path.join(path, rel)
        os.makedirs(p, exist_ok=True)
        os.chown(p, *owner)
        os.chmod(p, mode)

    def f(rel, content, mode=0o644, owner=(0, 0)):
        p = os.path.join(path, rel)
        with open(p, 'wb') as fh:
            fh.write(content)
        os.chown(p, *owner)
        os.chmod(p, mode)
        return p

    os.chmod(path, 0o755)
    for rel in ('bin', 'etc', 'dev', 'run', 'usr', 'usr/lib', 'var'):
        d(rel)
    d('tmp', 0o1777)
    d('home/u', 0o750, (1234, 5678))
    d('var/empty')
    passwd = f('etc/passwd', b'root:x:0:0:root:/root:/bin/sh\nu:x:1234:5678::/home/u:/bin/sh\n')
    f('etc/empty', b'')
    f('home/u/notes', b'private notes\n', 0o640, (1234, 5678))
    f('bin/su', b'#!/bin/sh\necho su\n', 0o4755)
    f('bin/wall', b'#!/bin/sh\necho wall\n', 0o2755, (0, 5))
    f('bin/secret', b'root only\n', 0o600)
    os.link(os.path.join(path, 'bin/su'), os.path.join(path, 'bin/su-hardlink'))
    os.symlink('usr/lib', os.path.join(path, 'lib'))
    os.symlink('/usr/share/zoneinfo/UTC', os.path.join(path, 'etc/localtime'))
    os.symlink('missing-target', os.path.join(path, 'var/dangling'))
    os.mkfifo(os.path.join(path, 'run/fifo'), 0o620)
    os.mknod(os.path.join(path, 'dev/null'), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    # The xattr as a user would set it.
    subprocess.run(['setfattr', '-n', 'user.k', '-v', 'v', passwd], check=True)
    with open(os.path.join(path, 'usr/lib/big'), 'wb') as fh:
        fh.write(os.urandom(BIG))
    os.chmod(os.path.join(path, 'usr/lib/big'), 0o644)
    return path


def user_xattrs(p):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(p, n, follow_symlinks=False) for n in sorted(names) if n.startswith('user.')}


def describe(root):
    """{relative path: what must be kept}, and the hard-link groups, of a tree (the root
    directory itself excluded)."""
    entries = {}
    inodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            e = {'mode': oct(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid, 'xattrs': user_xattrs(p)}
            if stat.S_ISREG(st.st_mode):
                e['size'] = st.st_size
                with open(p, 'rb') as fh:
                    e['content'] = hash(fh.read())
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                e['target'] = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                e['rdev'] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            entries[rel] = e
    links = sorted(sorted(group) for group in inodes.values() if len(group) > 1)
    return entries, links


def tree_size(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


class Import(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def layers(self):
        return {n for n in self.listdir(self.layers_dir) if not n.startswith('.')}

    def create_and_find_layer(self, source, name, user=None):
        before = self.layers()
        path = self.create(name, source, user=user)
        new = self.layers() - before
        return path, new

    def test_layer_keeps_everything(self):
        src = make_full_rootfs(self.unique_scratch_dir('full'))
        expected, expected_links = describe(src)
        self.assertEqual(expected_links, [['bin/su', 'bin/su-hardlink']])
        path, new = self.create_and_find_layer(src, 'full')
        self.assertEqual(len(new), 1, f'expected one new layer, got {new}')
        digest = new.pop()
        self.assertRegex(digest, r'^[0-9a-f]{64}$')
        layer = os.path.join(self.layers_dir, digest)
        got, got_links = describe(layer)
        self.assertEqual(sorted(got), sorted(expected), 'the layer has other entries than the source')
        for rel in expected:
            self.assertEqual(got[rel], expected[rel], f'{rel} differs in the layer')
        self.assertEqual(got_links, expected_links, 'hard links were not kept')

    def test_mounted_builder_shows_everything(self):
        src = make_full_rootfs(self.unique_scratch_dir('mounted'))
        expected, expected_links = describe(src)
        path = self.create('mounted', src)
        r = self.assertOk(self.gcall(path, kt.BUILDER_IFACE + '.Mount'))
        mountpoint = r.string()
        try:
            self.assertTrue(os.path.ismount(mountpoint))
            got, got_links = describe(mountpoint)
            for rel in expected:
                self.assertIn(rel, got)
                self.assertEqual(got[rel], expected[rel], f'{rel} differs in the mounted builder')
            self.assertEqual(got_links, expected_links)
            # Mounted nosuid and nodev on the host.
            with open('/proc/self/mountinfo') as fh:
                options = [line.split() for line in fh if line.split()[4] == mountpoint]
            self.assertTrue(options, mountpoint)
            self.assertIn('nosuid', options[-1][5].split(','))
            self.assertIn('nodev', options[-1][5].split(','))
        finally:
            self.gcall(path, kt.BUILDER_IFACE + '.Unmount')

    def test_same_tree_imported_once(self):
        src = make_full_rootfs(self.unique_scratch_dir('twice'))
        p1, new1 = self.create_and_find_layer(src, 'twice-1')
        self.assertEqual(len(new1), 1)
        p2, new2 = self.create_and_find_layer(src, 'twice-2')
        self.assertEqual(new2, set(), 'the same directory was imported into a second layer')
        # Through the CLI (a descriptor, not a path) it is still the same tree.
        before = self.layers()
        code, out, err = self.env.kiln('from', '--name', 'twice-3', src)
        self.assertEqual(code, 0, err)
        self.assertEqual(self.layers(), before, 'importing through rootfs_fd made another layer')
        # Each builder has its own directory with its own upper dir.
        ids = [self.props(p)['Id'] for p in (p1, p2, self.get_builder('twice-3').object_path())]
        self.assertEqual(len(set(ids)), 3)
        for id_ in ids:
            self.assertTrue(os.path.isdir(os.path.join(self.builder_dir(id_), 'upper')),
                            f'{self.builder_dir(id_)}/upper missing')

    def test_identical_copy_shares_layer(self):
        src = make_full_rootfs(self.unique_scratch_dir('orig'))
        copy = self.unique_scratch_dir('copy')
        os.rmdir(copy)
        subprocess.run(['cp', '-a', src, copy], check=True)
        _, new1 = self.create_and_find_layer(src, 'orig')
        _, new2 = self.create_and_find_layer(copy, 'copy')
        self.assertEqual(len(new1), 1)
        self.assertEqual(new2, set(), 'an identical tree at another path got its own layer')

    def test_changed_tree_new_layer(self):
        src = self.make_rootfs(f'change-{os.getpid()}')
        _, new1 = self.create_and_find_layer(src, 'change-1')
        with open(os.path.join(src, 'etc', 'os-release'), 'a') as fh:
            fh.write('VERSION=2\n')
        _, new2 = self.create_and_find_layer(src, 'change-2')
        self.assertEqual(len(new1), 1)
        self.assertEqual(len(new2), 1, 'a changed tree reused the old layer')
        self.assertNotEqual(new1, new2)

    def test_builder_copies_nothing(self):
        src = make_full_rootfs(self.unique_scratch_dir('tiny'))
        self.assertGreaterEqual(tree_size(src), BIG)
        path = self.create('tiny', src)
        id_ = self.props(path)['Id']
        size = tree_size(self.builder_dir(id_))
        self.assertLess(size, 256 * 1024, f'the builder directory holds {size} bytes: the base was copied')

    def test_remove_keeps_shared_layer(self):
        src = make_full_rootfs(self.unique_scratch_dir('shared'))
        p1, new = self.create_and_find_layer(src, 'shared-1')
        p2 = self.create('shared-2', src)
        digest = new.pop()
        self.assertOk(self.remove(p1))
        self.assertTrue(os.path.isdir(os.path.join(self.layers_dir, digest)), 'Remove deleted the shared layer')
        # The other builder still shows the files.
        r = self.assertOk(self.gcall(p2, kt.BUILDER_IFACE + '.Mount'))
        try:
            with open(os.path.join(r.string(), 'etc', 'passwd'), 'rb') as fh:
                self.assertIn(b'root:x:0:0', fh.read())
        finally:
            self.gcall(p2, kt.BUILDER_IFACE + '.Unmount')

    def test_alice_import_keeps_her_ownership(self):
        # Read as alice, the files alice owns stay hers (not root's) in the layer.
        src = self.unique_scratch_dir('alice-owned')
        alice = self.uid(kt.ALICE)
        for rel in ('etc', 'home'):
            os.makedirs(os.path.join(src, rel), mode=0o755)
        with open(os.path.join(src, 'etc', 'mine'), 'w') as fh:
            fh.write('alice\n')
        os.chown(os.path.join(src, 'etc', 'mine'), alice, alice)
        os.chmod(os.path.join(src, 'etc', 'mine'), 0o600)
        os.chown(os.path.join(src, 'home'), alice, alice)
        expected, _ = describe(src)
        _, new = self.create_and_find_layer(src, 'alice-owned', user=kt.ALICE)
        self.assertEqual(len(new), 1)
        got, _ = describe(os.path.join(self.layers_dir, new.pop()))
        self.assertEqual(got, expected)

    def test_source_left_alone(self):
        src = make_full_rootfs(self.unique_scratch_dir('untouched'))
        before = describe(src)
        path = self.create('untouched', src)
        r = self.assertOk(self.gcall(path, kt.BUILDER_IFACE + '.Mount'))
        try:
            with open(os.path.join(r.string(), 'etc', 'passwd'), 'a') as fh:
                fh.write('changed:x:1:1::/:/bin/sh\n')
            os.unlink(os.path.join(r.string(), 'bin', 'secret'))
        finally:
            self.gcall(path, kt.BUILDER_IFACE + '.Unmount')
        self.assertEqual(describe(src), before, 'changing the builder changed its source')
        # Nor the layer: a new builder from it has the original files.
        p2 = self.create('untouched-2', src)
        r = self.assertOk(self.gcall(p2, kt.BUILDER_IFACE + '.Mount'))
        try:
            self.assertTrue(os.path.exists(os.path.join(r.string(), 'bin', 'secret')))
            with open(os.path.join(r.string(), 'etc', 'passwd')) as fh:
                self.assertNotIn('changed', fh.read())
        finally:
            self.gcall(p2, kt.BUILDER_IFACE + '.Unmount')


if __name__ == '__main__':
    kt.main()
