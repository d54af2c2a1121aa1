#!/usr/bin/env python3
"""Images out: Builder.Commit, the image store, Image.Push, and the CLI verbs commit, images, rmi, tag
and push. What kiln writes is read back with tools that are not kiln: skopeo (both archive formats),
umoci (the unpacked root file system: a new file there, a deleted file gone, owners as the container
saw them), buildah (from the pushed archive, and a run in it).

kiln-alice's builders have a user namespace (userns=auto) with her subordinate ids from the test's
own subuid/subgid files, so her writes are owned on the host by her uid and her ranges: the image
must carry the container's ids instead.
"""
import ctypes
import hashlib
import json
import mmap
import os
import pwd
import shutil
import subprocess
import tempfile
import unittest

import kiln_runlib as kr
import kiln_testlib as kt

ALICE_SUBUID = 200000
ALICE_SUBGID = 300000
SUBID_COUNT = 65536
IMAGE_IFACE = 'org.kiln.Builder1.Image'
E_NOT_FOUND = 'org.kiln.Builder1.Error.NotFound'
E_BUSY = 'org.kiln.Builder1.Error.Busy'
E_INVALID = 'org.kiln.Builder1.Error.InvalidArgument'

_SUBID_DIR = None
IMAGES_PER_USER = 3
E_LIMIT = 'org.kiln.Builder1.Error.LimitExceeded'


def setUpModule():
    global _SUBID_DIR
    _SUBID_DIR = tempfile.mkdtemp(prefix='kiln-subid.')
    with open(os.path.join(_SUBID_DIR, 'subuid'), 'w') as f:
        f.write(f'{kt.ALICE}:{ALICE_SUBUID}:{SUBID_COUNT}\n')
    with open(os.path.join(_SUBID_DIR, 'subgid'), 'w') as f:
        f.write(f'{pwd.getpwnam(kt.ALICE).pw_uid}:{ALICE_SUBGID}:{SUBID_COUNT}\n')
    kr.setup_module(extra_conf=f'[UserNamespace]\nSubUidFile={_SUBID_DIR}/subuid\n'
                               f'SubGidFile={_SUBID_DIR}/subgid\n[Limits]\nImagesPerUser={IMAGES_PER_USER}\n')


def tearDownModule():
    kr.teardown_module()
    shutil.rmtree(_SUBID_DIR, ignore_errors=True)


def base_extra(path):
    """The base every test commits on: readable by everyone (kiln-import reads it as the caller), and
    a file that the builder deletes."""
    os.chmod(os.path.join(path, 'root'), 0o755)
    with open(os.path.join(path, 'etc', 'doomed'), 'w') as f:
        f.write('deleted in the builder\n')
    os.chmod(os.path.join(path, 'etc', 'doomed'), 0o644)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def resident_pages(path):
    """(pages of @path in the page cache, pages of @path): mincore(2) over a shared read-only mapping,
    which maps without reading."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = os.path.getsize(path)
    page = os.sysconf('SC_PAGE_SIZE')
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), 'mmap')
        try:
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), 'mincore')
            return sum(b & 1 for b in vec.raw), pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def sha256_file_uncached(path):
    """sha256_file, reading with O_DIRECT so that the check puts nothing into the page cache."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
    try:
        buf = mmap.mmap(-1, 1 << 20)  # page-aligned, as O_DIRECT wants
        with os.fdopen(fd, 'rb', buffering=0, closefd=False) as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(buf[:n])
    finally:
        os.close(fd)
    return h.hexdigest()


class CommitCases(kr.RunTestCase):

    def setUp(self):
        super().setUp()
        self.alice = pwd.getpwnam(kt.ALICE)
        # A directory alice may write her archives into, which root reads afterwards.
        self.out = self.unique_scratch_dir('out')
        os.chown(self.out, self.alice.pw_uid, self.alice.pw_gid)
        os.chmod(self.out, 0o755)

    def tearDown(self):
        for user in (None, kt.ALICE):
            for row in self.list_images(user=user):
                self.env.kiln('rmi', '--force', row[0], user=user)
        super().tearDown()

    # -- helpers -----------------------------------------------------------------------------

    def list_images(self, user=None):
        return self.bcall(kt.MANAGER_PATH, kt.MANAGER_IFACE, 'ListImages', user=user)[0]

    def image_props(self, path, user=None):
        reply = self.busctl('call', kt.BUS_NAME, path, 'org.freedesktop.DBus.Properties', 'GetAll', 's',
                            IMAGE_IFACE, user=user)
        return {k: v['data'] for k, v in reply['data'][0].items()}

    def alices_builder(self):
        name = self.unique_name('alice')
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=base_extra)
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs, user=kt.ALICE, check=True)
        path = self.get_builder(name, user=kt.ALICE).object_path()
        return kr.Builder(name, path, self.props(path)['Id'], rootfs)

    def change(self, b, user=kt.ALICE):
        """What every test's builder does: a new file of root's, one of uid 1000, a deleted base file,
        and a configuration."""
        self.sh(b, 'echo fresh > /new.txt && mkdir -p /home/builder/d && echo mine > /home/builder/d/f && '
                   'chown -R 1000:1000 /home/builder/d && rm /etc/doomed', user=user)
        self.env.kiln('config', '--env', 'GREETING=hello', '--cmd', '/bin/sh -c "cat /new.txt"',
                      '--workingdir', '/home/builder', '--label', 'org.example.k=v', '--user', 'root',
                      b.name, user=user, check=True)

    def commit(self, b, *args, user=kt.ALICE):
        """kiln commit [OPTIONS] B IMAGE: @args are the options, then the image name."""
        code, out, err = self.env.kiln('commit', *args[:-1], b.name, args[-1], user=user)
        self.assertEqual(code, 0, f'kiln commit: {err}')
        image_id = out.strip()
        self.assertRegex(image_id, r'^[0-9a-f]{64}$')
        return image_id

    def push(self, image, dest, user=kt.ALICE):
        code, out, err = self.env.kiln('push', image, dest, user=user)
        self.assertEqual(code, 0, f'kiln push {dest}: {err}')

    def skopeo_config(self, ref):
        code, out, err = self.env.run(['skopeo', 'inspect', '--config', ref])
        self.assertEqual(code, 0, f'skopeo inspect --config {ref}: {err}')
        return json.loads(out)

    # -- the image, read by other tools ------------------------------------------------------

    def test_oci_archive_is_read_by_skopeo_and_unpacked_by_umoci(self):
        b = self.alices_builder()
        self.change(b)
        image_id = self.commit(b, 'example/app')
        archive = os.path.join(self.out, 'app.tar')
        self.push('example/app', f'oci-archive:{archive}')
        # The caller's file, written through the caller's descriptor.
        self.assertEqual(os.stat(archive).st_uid, self.alice.pw_uid)

        config = self.skopeo_config(f'oci-archive:{archive}')
        self.assertIn('GREETING=hello', config['config']['Env'])
        self.assertEqual(config['config']['Cmd'], ['/bin/sh', '-c', 'cat /new.txt'])
        self.assertEqual(config['config']['WorkingDir'], '/home/builder')
        self.assertEqual(config['config']['Labels'], {'org.example.k': 'v'})
        self.assertEqual(config['config']['User'], 'root')
        self.assertEqual(len(config['rootfs']['diff_ids']), 2, 'the base and the builder\'s layer')
        self.assertEqual(len(config['history']), 2)

        # Stored as tar, pushed gzip-compressed (the default); the config is the one kilnd holds.
        props = self.image_props(f'/org/kiln/Builder1/image/{image_id}', user=kt.ALICE)
        code, out, err = self.env.run(['skopeo', 'inspect', '--raw', f'oci-archive:{archive}'])
        self.assertEqual(code, 0, err)
        manifest = json.loads(out)
        self.assertEqual([l['mediaType'] for l in manifest['layers']],
                         ['application/vnd.oci.image.layer.v1.tar+gzip'] * 2)
        self.assertEqual(json.loads(props['Config']), config)
        self.assertEqual(len(props['Layers']), 2)
        self.assertEqual(props['Owner'], self.alice.pw_uid)
        self.assertEqual(props['Names'], ['example/app:latest'])

        work = tempfile.mkdtemp(prefix='kiln-umoci.')
        try:
            self.env.run(['skopeo', 'copy', f'oci-archive:{archive}', f'oci:{work}/layout:app'], check=True)
            self.env.run(['umoci', 'unpack', '--image', f'{work}/layout:app', f'{work}/bundle'], check=True)
            rootfs = os.path.join(work, 'bundle', 'rootfs')
            with open(os.path.join(rootfs, 'new.txt')) as f:
                self.assertEqual(f.read(), 'fresh\n')
            self.assertFalse(os.path.lexists(os.path.join(rootfs, 'etc', 'doomed')), 'the whiteout was lost')
            self.assertTrue(os.path.exists(os.path.join(rootfs, 'etc', 'passwd')), 'the base layer is missing')
            # Owners as the container saw them: alice's host uid was root inside, her first
            # subordinate uid + 999 was uid 1000.
            st = os.stat(os.path.join(rootfs, 'new.txt'))
            self.assertEqual((st.st_uid, st.st_gid), (0, 0))
            st = os.stat(os.path.join(rootfs, 'home', 'builder', 'd', 'f'))
            self.assertEqual((st.st_uid, st.st_gid), (1000, 1000))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def test_docker_archive_is_read_by_skopeo(self):
        b = self.alices_builder()
        self.change(b)
        self.commit(b, '--format', 'docker', 'example/dock:v1')
        archive = os.path.join(self.out, 'dock.tar')
        self.push('example/dock:v1', f'docker-archive:{archive}:example/dock:v1')
        config = self.skopeo_config(f'docker-archive:{archive}')
        self.assertIn('GREETING=hello', config['config']['Env'])
        self.assertEqual(config['config']['Cmd'], ['/bin/sh', '-c', 'cat /new.txt'])
        code, out, err = self.env.run(['skopeo', 'inspect', f'docker-archive:{archive}'])
        self.assertEqual(code, 0, err)
        self.assertEqual(len(json.loads(out)['Layers']), 2)

    def test_oci_dir_is_written_by_the_caller(self):
        b = self.alices_builder()
        self.change(b)
        self.commit(b, 'example/dir')
        layout = os.path.join(self.out, 'layout')
        self.push('example/dir', f'oci:{layout}:v2')
        self.assertEqual(os.stat(os.path.join(layout, 'index.json')).st_uid, self.alice.pw_uid)
        config = self.skopeo_config(f'oci:{layout}:v2')
        self.assertIn('GREETING=hello', config['config']['Env'])

    def test_buildah_runs_the_pushed_image(self):
        if not shutil.which('buildah'):
            self.skipTest('buildah is not installed')
        b = self.alices_builder()
        self.change(b)
        self.commit(b, 'example/bh')
        archive = os.path.join(self.out, 'bh.tar')
        self.push('example/bh', f'oci-archive:{archive}')
        root = tempfile.mkdtemp(prefix='kiln-buildah.')
        common = ['buildah', '--root', f'{root}/root', '--runroot', f'{root}/run', '--storage-driver', 'vfs']
        try:
            code, out, err = self.env.run(common + ['from', '--name', 'bh', f'oci-archive:{archive}'])
            self.assertEqual(code, 0, f'buildah from: {err}')
            code, out, err = self.env.run(common + ['run', '--isolation', 'chroot', 'bh', '--', 'cat',
                                                    '/new.txt'])
            self.assertEqual(code, 0, f'buildah run: {err}')
            self.assertEqual(out, 'fresh\n')
            code, out, err = self.env.run(common + ['run', '--isolation', 'chroot', 'bh', '--', 'ls',
                                                    '/etc/doomed'])
            self.assertNotEqual(code, 0, 'the deleted file is back in buildah\'s container')
        finally:
            self.env.run(common + ['rm', '--all'])
            subprocess.run(['umount', '-R', f'{root}/root'], capture_output=True)
            shutil.rmtree(root, ignore_errors=True)

    def test_same_builder_with_a_timestamp_gives_the_same_digest(self):
        b = self.alices_builder()
        self.change(b)
        first = self.commit(b, '--timestamp', '1700000000', 'example/repro:a')
        second = self.commit(b, '--timestamp', '1700000000', 'example/repro:b')
        self.assertEqual(first, second, 'the same commit is the same image')
        props = self.image_props(f'/org/kiln/Builder1/image/{first}', user=kt.ALICE)
        self.assertEqual(sorted(props['Names']), ['example/repro:a', 'example/repro:b'])
        a, c = os.path.join(self.out, 'a.tar'), os.path.join(self.out, 'c.tar')
        self.push(first, f'oci-archive:{a}')
        self.push(first, f'oci-archive:{c}')
        self.assertEqual(sha256_file(a), sha256_file(c))
        config = self.skopeo_config(f'oci-archive:{a}')
        self.assertEqual(config['created'], '2023-11-14T22:13:20Z')
        # Without the timestamp the creation time differs, so the image does.
        third = self.commit(b, 'example/repro:c')
        self.assertNotEqual(first, third)

    def test_a_commit_writes_its_layer_past_the_page_cache(self):
        """The layer blob is written with O_DIRECT (layer-write.c): filling fresh page cache with it was
        the largest part of a commit's CPU. On the host: the stored blob is the tar of the change under
        its own digest, and next to none of it is resident in the page cache after the commit (written
        through the cache it would all be there: nothing else writes or reads it meanwhile)."""
        b = self.alices_builder()
        self.sh(b, 'head -c 16777216 /dev/urandom > /big')
        blobs = os.path.join(self.env.dir, 'state', 'images', 'blobs', 'sha256')
        before = set(os.listdir(blobs))
        self.commit(b, 'example/direct')
        new = [os.path.join(blobs, h) for h in set(os.listdir(blobs)) - before]
        layer = max(new, key=os.path.getsize)
        self.assertGreater(os.path.getsize(layer), 16 << 20)
        self.assertEqual(os.path.basename(layer), sha256_file_uncached(layer))
        resident, pages = resident_pages(layer)
        # The tar's last block (at most 128 KiB) goes through the cache: it may be there.
        self.assertLessEqual(resident, (128 << 10) // os.sysconf('SC_PAGE_SIZE') + 1,
                             f'{resident} of {pages} pages of the layer are in the page cache')

    def test_a_builder_from_a_pushed_image_commits_on_its_layers(self):
        b = self.alices_builder()
        self.change(b)
        self.commit(b, 'example/round')
        archive = os.path.join(self.out, 'round.tar')
        self.push('example/round', f'oci-archive:{archive}')
        name = self.unique_name('again')
        self.env.kiln('from', '--name', name, f'oci-archive:{archive}', user=kt.ALICE, check=True)
        again = kr.Builder(name, self.get_builder(name, user=kt.ALICE).object_path(), None, None)
        self.assertEqual(self.sh(again, 'cat /new.txt; ls /etc/doomed 2>/dev/null; true', user=kt.ALICE),
                         'fresh\n')
        self.sh(again, 'echo third > /third.txt', user=kt.ALICE)
        self.commit(again, 'example/round:2')
        second = os.path.join(self.out, 'round2.tar')
        self.push('example/round:2', f'oci-archive:{second}')
        config = self.skopeo_config(f'oci-archive:{second}')
        # The image's two layers and the new one; its history and one more entry; its config kept.
        self.assertEqual(len(config['rootfs']['diff_ids']), 3)
        self.assertEqual(len(config['history']), 3)
        self.assertEqual(config['history'][-1]['created_by'], f'kiln commit {name}')
        self.assertIn('GREETING=hello', config['config']['Env'])

    def test_from_a_stored_image_and_rmi_while_a_builder_uses_it(self):
        b = self.alices_builder()
        self.change(b)
        image_id = self.commit(b, 'example/base')
        name = self.unique_name('from-store')
        self.env.kiln('from', '--name', name, 'example/base', user=kt.ALICE, check=True)
        child = kr.Builder(name, self.get_builder(name, user=kt.ALICE).object_path(), None, None)
        self.assertEqual(self.sh(child, 'cat /new.txt; ls /etc/doomed 2>/dev/null; true', user=kt.ALICE),
                         'fresh\n')
        self.assertIn('GREETING=hello', self.props(child.path)['Env'])
        # Another user cannot make a builder from alice's image: for him it does not exist.
        r = self.create_call('bobs', 'example/base', user=kt.BOB)
        self.assertFalse(r.ok, r)
        r = self.create_call('roots', image_id[:12], user=None)
        self.assertTrue(r.ok, f'root sees every image: {r}')
        self.remove(r.object_path(), force=True)

        # In use: refused by name, unless forced; forced, the builder keeps running.
        path = f'/org/kiln/Builder1/image/{image_id}'
        r = self.gcall(path, IMAGE_IFACE + '.Remove', '{}', user=kt.ALICE)
        self.assertError(r, E_BUSY, name)
        code, out, err = self.env.kiln('rmi', 'example/base', user=kt.ALICE)
        self.assertNotEqual(code, 0)
        self.assertIn(name, err)
        self.env.kiln('rmi', '--force', 'example/base', user=kt.ALICE, check=True)
        self.assertEqual(self.list_images(user=kt.ALICE), [])
        self.assertEqual(self.sh(child, 'cat /new.txt && echo more > /more && cat /more', user=kt.ALICE),
                         'fresh\nmore\n')
        self.commit(child, 'example/after-rmi')

    def test_second_from_a_stored_image_reads_no_blob(self):
        b = self.alices_builder()
        self.change(b)
        self.commit(b, 'example/again')
        first = self.unique_name('first')
        self.env.kiln('from', '--name', first, 'example/again', user=kt.ALICE, check=True)
        # Every layer is a tree under STATE/layers now: a second `from` needs nothing of the image
        # store but what kilnd holds in memory. With the blobs gone, exporting the image fails.
        blobs = os.path.join(self.state_dir, 'images', 'blobs')
        os.rename(blobs, blobs + '.aside')
        try:
            second = self.unique_name('second')
            self.env.kiln('from', '--name', second, 'example/again', user=kt.ALICE, check=True)
            # Still only for those who may see the image: for kiln-bob it is no image at all.
            r = self.create_call('bobs-again', 'example/again', user=kt.BOB)
        finally:
            os.rename(blobs + '.aside', blobs)
        self.assertError(r, E_INVALID, "'example/again'")
        # The same builder as the first: files, config, image record.
        info = [json.loads(self.env.kiln('inspect', n, user=kt.ALICE, check=True)[1]) for n in (first, second)]
        for key in ('Env', 'Image', 'Layers'):
            self.assertEqual(info[0].get(key), info[1].get(key), key)
        child = kr.Builder(second, self.get_builder(second, user=kt.ALICE).object_path(), None, None)
        self.assertEqual(self.sh(child, 'cat /new.txt; ls /etc/doomed 2>/dev/null; true', user=kt.ALICE),
                         'fresh\n')

    def test_squash_writes_one_layer_of_the_whole_tree(self):
        b = self.alices_builder()
        self.change(b)
        self.commit(b, '--squash', 'example/flat')
        archive = os.path.join(self.out, 'flat.tar')
        self.push('example/flat', f'oci-archive:{archive}')
        config = self.skopeo_config(f'oci-archive:{archive}')
        self.assertEqual(len(config['rootfs']['diff_ids']), 1)
        work = tempfile.mkdtemp(prefix='kiln-umoci.')
        try:
            self.env.run(['skopeo', 'copy', f'oci-archive:{archive}', f'oci:{work}/layout:flat'], check=True)
            self.env.run(['umoci', 'unpack', '--image', f'{work}/layout:flat', f'{work}/bundle'], check=True)
            rootfs = os.path.join(work, 'bundle', 'rootfs')
            self.assertTrue(os.path.exists(os.path.join(rootfs, 'etc', 'passwd')), 'the base is missing')
            self.assertFalse(os.path.lexists(os.path.join(rootfs, 'etc', 'doomed')))
            st = os.stat(os.path.join(rootfs, 'new.txt'))
            self.assertEqual((st.st_uid, st.st_gid), (0, 0))
            st = os.stat(os.path.join(rootfs, 'home', 'builder', 'd', 'f'))
            self.assertEqual((st.st_uid, st.st_gid), (1000, 1000))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        # The builder's root was held mounted for the squash and is let go.
        self.wait_until(lambda: not self.mounts_under(os.path.join(self.run_dir, 'mounts')), 30,
                        'the squash left a mount')

    def test_images_per_user_is_a_limit(self):
        b = self.alices_builder()
        for i in range(IMAGES_PER_USER):
            self.sh(b, f'echo {i} > /n', user=kt.ALICE)
            self.commit(b, f'example/lim:{i}')
        self.sh(b, 'echo over > /n', user=kt.ALICE)
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Commit', 'example/lim:over', '{}', user=kt.ALICE)
        self.assertError(r, E_LIMIT, f'limit of {IMAGES_PER_USER} images')
        self.assertEqual(len(self.list_images(user=kt.ALICE)), IMAGES_PER_USER)
        # root is not limited.
        rootb = self.builder(extra=base_extra)
        self.commit(rootb, 'example/root-lim', user=None)

    def test_image_config_bytes_is_a_limit(self):
        """kilnd keeps each image's config in memory and lists it whole: a builder configured within
        its own bounds (MaxArrayLength x MaxStringLength a field) cannot make an image config past
        [Limits] ImageConfigBytes (256 KiB); the refusal names the limit and leaves no image."""
        b = self.alices_builder()
        env = []
        for i in range(250):
            env += ['--env', f'E{i:03d}=' + 'x' * 1100]  # 276 KB of Env
        self.env.kiln('config', *env, b.name, user=kt.ALICE, check=True)
        pid = self.kilnd_pid()
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Commit', 'example/toobig', '{}', user=kt.ALICE)
        self.assertError(r, E_LIMIT, ['ImageConfigBytes', '262144'])
        self.assertEqual(self.list_images(user=kt.ALICE), [])
        self.assertEqual(self.kilnd_pid(), pid)

    def test_zstd_layers(self):
        b = self.alices_builder()
        self.change(b)
        self.commit(b, '--compression', 'zstd', 'example/z')
        archive = os.path.join(self.out, 'z.tar')
        self.push('example/z', f'oci-archive:{archive}')
        code, out, err = self.env.run(['skopeo', 'inspect', '--raw', f'oci-archive:{archive}'])
        self.assertEqual(code, 0, err)
        types = [l['mediaType'] for l in json.loads(out)['layers']]
        self.assertEqual(types, ['application/vnd.oci.image.layer.v1.tar+zstd'] * 2)
        r = self.gcall(self.get_builder(b.name, user=kt.ALICE).object_path(), kt.BUILDER_IFACE + '.Commit',
                       'x', "{'format': <'docker'>, 'compression': <'zstd'>}", user=kt.ALICE)
        self.assertError(r, E_INVALID, 'compression')

    # -- the store, the names, visibility --------------------------------------------------

    def test_images_of_one_user_are_invisible_to_another(self):
        b = self.alices_builder()
        self.change(b)
        alices = self.commit(b, 'shared/name')
        rootb = self.builder(extra=base_extra)
        roots = self.commit(rootb, 'shared/name', user=None)
        self.assertNotEqual(alices, roots)

        self.assertEqual([row[0] for row in self.list_images(user=kt.ALICE)], [alices])
        self.assertEqual(sorted(row[0] for row in self.list_images()), sorted([alices, roots]))
        self.assertEqual(self.list_images(user=kt.BOB), [])
        # A name finds the caller's own image; another user's image does not exist for alice.
        r = self.gcall(kt.MANAGER_PATH, kt.MANAGER_IFACE + '.GetImage', 'shared/name', user=kt.ALICE)
        self.assertEqual(r.object_path(), f'/org/kiln/Builder1/image/{alices}')
        r = self.gcall(kt.MANAGER_PATH, kt.MANAGER_IFACE + '.GetImage', roots, user=kt.ALICE)
        self.assertError(r, E_NOT_FOUND, roots)
        r = self.gcall(f'/org/kiln/Builder1/image/{roots}', IMAGE_IFACE + '.Remove', '{}', user=kt.ALICE)
        self.assertError(r, 'org.freedesktop.DBus.Error.UnknownObject')
        tree = self.busctl('tree', '--list', kt.BUS_NAME, json_out=False, user=kt.ALICE)
        self.assertIn(f'/org/kiln/Builder1/image/{alices}', tree)
        self.assertNotIn(roots, tree)
        # kiln images shows one's own by default.
        code, out, err = self.env.kiln('images', '-q', user=kt.ALICE)
        self.assertEqual(out.split(), [alices[:12]])
        code, out, err = self.env.kiln('images', '--json', '--all')
        self.assertEqual(sorted(i['id'] for i in json.loads(out)), sorted([alices, roots]))

    def test_tag_moves_a_name_and_rmi_removes_blobs(self):
        b = self.alices_builder()
        self.change(b)
        first = self.commit(b, 'example/t:1')
        self.sh(b, 'echo more > /more.txt')
        second = self.commit(b, 'example/t:2')
        self.env.kiln('tag', second, 'example/t:1', user=kt.ALICE, check=True)
        p1 = self.image_props(f'/org/kiln/Builder1/image/{first}', user=kt.ALICE)
        p2 = self.image_props(f'/org/kiln/Builder1/image/{second}', user=kt.ALICE)
        self.assertEqual(p1['Names'], [])
        self.assertEqual(sorted(p2['Names']), ['example/t:1', 'example/t:2'])
        blobs = os.path.join(self.state_dir, 'images', 'blobs', 'sha256')
        before = set(self.listdir(blobs))
        self.env.kiln('rmi', first, second, user=kt.ALICE, check=True)
        self.assertEqual(self.list_images(user=kt.ALICE), [])
        left = set(self.listdir(blobs))
        self.assertTrue(before, before)
        self.assertEqual(left, set(), 'blobs of removed images are left')

    def test_image_objects_introspect_as_the_xml_says(self):
        import test_introspection as ti
        b = self.alices_builder()
        image_id = self.commit(b, 'example/intro')
        path = f'/org/kiln/Builder1/image/{image_id}'
        code, live, err = self.env.run(['busctl', 'introspect', '--xml-interface', kt.BUS_NAME, path],
                                       user=kt.ALICE)
        self.assertEqual(code, 0, err)
        want = ti.parse_interface(ti.read(ti.xml_file('org.kiln.Builder1.Image.xml')), IMAGE_IFACE)
        got = ti.parse_interface(live, IMAGE_IFACE)
        self.assertEqual(ti.without_names(got[0]), ti.without_names(want[0]))
        self.assertEqual(got[1], want[1])
        for iface, name in (('org.kiln.Builder1.Manager', 'org.kiln.Builder1.Manager.xml'),
                            ('org.kiln.Builder1.Builder', 'org.kiln.Builder1.Builder.xml')):
            want = ti.parse_interface(ti.read(ti.xml_file(name)), iface)[0]
            target = kt.MANAGER_PATH if iface.endswith('Manager') else b.path
            code, live, err = self.env.run(['busctl', 'introspect', '--xml-interface', kt.BUS_NAME, target])
            got = ti.parse_interface(live, iface)[0]
            for method in ('ListImages', 'GetImage', 'Commit'):
                if method in want:
                    self.assertEqual(got.get(method), want[method], method)

    def test_commit_refused_while_a_run_is_going(self):
        b = self.alices_builder()
        child = subprocess.Popen([self.env.kiln_cli, 'run', b.name, '--', 'sleep', '30'],
                                 env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address))
        self.children.append(child)
        self.wait_until(lambda: self.running_processes(), 20, 'the run did not start')
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Commit', 'busy', '{}', user=kt.ALICE)
        self.assertError(r, E_BUSY, b.name)
        child.kill()

    def test_push_refuses_a_device(self):
        b = self.alices_builder()
        self.commit(b, 'example/dev')
        code, out, err = self.env.kiln('push', 'example/dev', 'oci-archive:/dev/null', user=kt.ALICE)
        self.assertNotEqual(code, 0)
        self.assertIn('Invalid fd', err)
        # On the bus: a device, and a file open only for reading, are refused by name; nothing written.
        image_path = self.gcall(kt.MANAGER_PATH, kt.MANAGER_IFACE + '.GetImage', 'example/dev',
                                user=kt.ALICE).object_path()
        target = os.path.join(self.out, 'readonly.tar')
        with open(target, 'w'):
            pass
        os.chown(target, self.alice.pw_uid, self.alice.pw_gid)
        for fd_path in ('/dev/null', target):
            reply = self.rawcall(image_path, IMAGE_IFACE, 'Push', 'hsa{sv}', [0, 'oci-archive', {}],
                                 user=kt.ALICE, fd_paths=[fd_path])
            self.assertEqual(reply['error_name'], E_INVALID, reply)
            self.assertIn('fd', str(reply['body']), reply)
        self.assertEqual(os.path.getsize(target), 0)


# A commit reads the builder's files, not how its runs were isolated: one isolation is enough.
class CommitTests(CommitCases):
    isolation = 'oci'


del CommitCases

if __name__ == '__main__':
    kt.main()
