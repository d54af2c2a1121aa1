#!/usr/bin/env python3
"""Builder.Copy and CopyOut, kiln copy and kiln add: files, trees, owners (--chown by the image's
names, container root, a user namespace's mapped root) seen from the host's upper dir and from a
run inside; --chmod; a destination symlink to /etc that stays in the image; sources the caller
cannot read (refused by the client before kilnd is asked: nothing written); hostile archives (..,
a path through a symlink, hard links out of the destination, absolute names); copy out owned by the
caller; the limits; a stalled writer that stalls nobody else, and a caller that leaves mid-copy
and leaves no thread or descriptor in kilnd.

This module's kiln.conf: CopyBytes=1048576, CopyEntries=40, CopiesPerUser=2, and kiln-alice's
subordinate ids of test_userns."""
import io
import os
import pwd
import stat
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402
import test_userns as tu  # noqa: E402

COPY_BYTES = 1048576
COPY_ENTRIES = 40
COPIES_PER_USER = 2


def setUpModule():
    tu.setup_with(f'\n[Limits]\nCopyBytes={COPY_BYTES}\nCopyEntries={COPY_ENTRIES}\n'
                  f'CopiesPerUser={COPIES_PER_USER}\n')


tearDownModule = tu.tearDownModule

# A client that starts a Copy through a pipe, writes the start of a tar stream (a header promising
# 512 KiB, then 4 KiB of it), says READY and then sleeps: a writer that stalls. Killing it is a
# caller that leaves the bus mid-copy. Run with the system's python3 (PyGObject).
STALLING_CLIENT = r'''
import os, sys, tarfile, time
import gi
gi.require_version("Gio", "2.0")
from gi.repository import Gio, GLib
address, path = sys.argv[1], sys.argv[2]
conn = Gio.DBusConnection.new_for_address_sync(
    address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
    None, None)
r, w = os.pipe()
fds = Gio.UnixFDList.new()
fds.append(r)
os.close(r)
loop = GLib.MainLoop()
def done(c, res):
    try:
        c.call_with_unix_fd_list_finish(res)
        print("REPLY ok", flush=True)
    except GLib.Error as e:
        print("REPLY " + e.message, flush=True)
conn.call_with_unix_fd_list("org.kiln.Builder1", path, "org.kiln.Builder1.Builder", "Copy",
                            GLib.Variant("(hsa{sv})", (0, "/stalled", {})), None, 0, -1, fds, None, done)
info = tarfile.TarInfo("big")
info.size = 512 * 1024
os.write(w, info.tobuf(format=tarfile.PAX_FORMAT))
os.write(w, b"x" * 4096)
print("READY", flush=True)
GLib.timeout_add_seconds(300, loop.quit)
loop.run()
'''


def make_tar(path, entries, compression=''):
    """A tar archive of (name, kind, arg) entries: kind file (arg: bytes), dir, sym (arg: target),
    hard (arg: target)."""
    with tarfile.open(path, 'w' + (':' + compression if compression else '')) as t:
        for name, kind, arg in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == 'file':
                info.size = len(arg)
                info.mode = 0o644
                t.addfile(info, io.BytesIO(arg))
            elif kind == 'dir':
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                t.addfile(info)
            elif kind == 'sym':
                info.type = tarfile.SYMTYPE
                info.linkname = arg
                t.addfile(info)
            elif kind == 'hard':
                info.type = tarfile.LNKTYPE
                info.linkname = arg
                t.addfile(info)
    os.chmod(path, 0o644)
    return path


def tree_of(top):
    """Every path under @top (relative), with its lstat owner and mode: what must not change."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            found[os.path.relpath(full, top)] = (st.st_uid, st.st_gid, st.st_mode)
    return found


class CopyCases(kr.RunTestCase):
    isolation = 'oci'

    def setUp(self):
        super().setUp()
        self.alice = pwd.getpwnam(kt.ALICE)
        self.groups = []  # process groups of clients started through runuser
        self.assertEqual(self.copy_threads(), 0)

    def tearDown(self):
        for pgid in self.groups:
            try:
                os.killpg(pgid, 9)
            except ProcessLookupError:
                pass
        super().tearDown()
        self.assertTrue(self.wait_until(lambda: self.copy_threads() == 0, 10),
                        f'kilnd still has {self.copy_threads()} copy threads after the test')

    # -- helpers -------------------------------------------------------------------------

    def copy_threads(self):
        """kilnd's threads that copy (named kiln-copy)."""
        n = 0
        for tid in os.listdir(f'/proc/{self.kilnd_pid()}/task'):
            try:
                with open(f'/proc/{self.kilnd_pid()}/task/{tid}/comm') as f:
                    n += f.read().strip() == 'kiln-copy'
            except OSError:
                pass
        return n

    def upper(self, b):
        return os.path.join(self.env.dir, 'state', 'builders', b.id, 'upper')

    def alices_builder(self, extra=None):
        name = self.unique_name('alice')

        def both(path):
            tu.shared_rootfs(path)
            if extra:
                extra(path)
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=both)
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs, user=kt.ALICE, check=True)
        path = self.get_builder(name, user=kt.ALICE).object_path()
        return kr.Builder(name, path, self.props(path)['Id'], rootfs)

    def alice_dir(self, name):
        """A scratch directory of alice's own (0700), which she can read and root can too."""
        path = self.unique_scratch_dir(name)
        os.chown(path, self.alice.pw_uid, self.alice.pw_gid)
        os.chmod(path, 0o700)
        return path

    def write(self, path, data, mode=0o644, owner=None):
        with open(path, 'wb') as f:
            f.write(data)
        os.chmod(path, mode)
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def kcopy(self, *args, user=None, verb='copy', cwd=None):
        return self.env.kiln(verb, *[str(a) for a in args], user=user, cwd=cwd)

    def copy_ok(self, *args, user=None, verb='copy', cwd=None):
        code, out, err = self.kcopy(*args, user=user, verb=verb, cwd=cwd)
        self.assertEqual(code, 0, f'kiln {verb} {args}: {err}')
        return out

    def raw_copy(self, b, tar_path, dest, options=None, user=None):
        """Builder.Copy with @tar_path opened read-only by the client as @user: the reply."""
        opts = {k: v for k, v in (options or {}).items()}
        return self.rawcall(b.path, kt.BUILDER_IFACE, 'Copy', 'hsa{sv}', [0, dest, opts], user=user,
                            fd_paths=[tar_path])

    def assertRawError(self, reply, name, fragments):
        self.assertEqual(reply.get('type'), 'error', reply)
        self.assertEqual(reply.get('error_name'), name, reply)
        message = (reply.get('body') or [''])[0]
        for fragment in fragments:
            self.assertIn(fragment, message, reply)

    def start_stalled_copy(self, b, user=None):
        """A Copy whose writer stalls after 4 KiB (see STALLING_CLIENT); returns the client process
        once kilnd's copy thread is running."""
        cmd = [kt.USER_PYTHON, '-c', STALLING_CLIENT, self.env.bus_address, b.path]
        if user:
            cmd = ['runuser', '-u', user, '--'] + cmd
        threads = self.copy_threads()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)
        self.children.append(child)
        self.groups.append(child.pid)
        self.assertEqual(child.stdout.readline().strip(), 'READY')
        self.wait_until(lambda: self.copy_threads() > threads, 10, 'no copy thread started in kilnd')
        return child

    # -- in, as root ------------------------------------------------------------------------

    def test_libarchive_is_loaded_by_the_first_copy(self):
        # kilnd links no libarchive: the library and what it brings (libxml2, ICU, libstdc++) were about
        # 2.4 MiB of an idle kilnd's 10 (docs/performance.md). The first Copy, CopyOut, Commit or Push
        # loads it (base/archive-load.h).
        def mapped():
            with open(f'/proc/{self.kilnd_pid()}/maps') as f:
                return {os.path.basename(line.split()[-1]).split('.so')[0]
                        for line in f if '.so' in line}
        exe = os.readlink(f'/proc/{self.kilnd_pid()}/exe')
        needed = subprocess.run(['ldd', exe], capture_output=True, text=True, check=True).stdout
        self.assertNotIn('libarchive', needed)
        self.env.restart_kilnd()
        kr._warm_up()
        self.fd_baseline = self.kilnd_fds()
        # libstdc++ only where kilnd does not need it itself (a sanitizer's runtime does).
        loaded_by_archive = {'libarchive', 'libxml2', 'libicuuc'}
        if 'libstdc++' not in needed:
            loaded_by_archive.add('libstdc++')
        self.assertFalse(loaded_by_archive & mapped())
        b = self.builder()
        src = self.unique_scratch_dir('src')
        self.write(os.path.join(src, 'file'), b'loaded\n', 0o644)
        self.copy_ok(b, os.path.join(src, 'file'), '/loaded')
        self.assertIn('libarchive', mapped())
        with open(os.path.join(self.upper(b), 'loaded'), 'rb') as f:
            self.assertEqual(f.read(), b'loaded\n')

    def test_file_and_tree_owned_by_container_root(self):
        b = self.builder()
        src = self.unique_scratch_dir('src')
        os.makedirs(os.path.join(src, 'tree', 'sub'))
        self.write(os.path.join(src, 'tree', 'a'), b'alpha\n', 0o640)
        self.write(os.path.join(src, 'tree', 'sub', 'b'), b'beta\n', 0o755)
        os.symlink('/etc/passwd', os.path.join(src, 'tree', 'sub', 'link'))
        self.write(os.path.join(src, 'file'), b'one file\n', 0o600)
        # Files of another host user: what kilnd writes is container root's, never theirs.
        for p in (os.path.join(src, 'tree', 'a'), os.path.join(src, 'file')):
            os.chown(p, self.alice.pw_uid, self.alice.pw_gid)

        self.copy_ok(b, os.path.join(src, 'file'), '/dst/')
        self.copy_ok(b, os.path.join(src, 'file'), '/renamed')
        self.copy_ok(b, os.path.join(src, 'tree'), '/tree')

        upper = self.upper(b)
        expect = {
            'dst/file': (0o600, b'one file\n'), 'renamed': (0o600, b'one file\n'),
            'tree/a': (0o640, b'alpha\n'), 'tree/sub/b': (0o755, b'beta\n'),
        }
        for rel, (mode, data) in expect.items():
            st = os.lstat(os.path.join(upper, rel))
            self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, 0, mode), rel)
            with open(os.path.join(upper, rel), 'rb') as f:
                self.assertEqual(f.read(), data, rel)
        self.assertEqual(os.readlink(os.path.join(upper, 'tree/sub/link')), '/etc/passwd')
        # A relative destination is taken from the working directory.
        self.env.kiln('config', '--workingdir', '/work', b.name, check=True)
        self.copy_ok(b, os.path.join(src, 'file'), 'rel/')
        self.assertTrue(os.path.isfile(os.path.join(upper, 'work/rel/file')))
        out = self.sh(b, 'ls -ln /dst/file /renamed /tree/a /tree/sub/b; cat /tree/a')
        for line in out.splitlines()[:4]:
            self.assertEqual(line.split()[2:4], ['0', '0'], out)
        self.assertIn('alpha', out)

    def test_chown_by_name_and_chmod(self):
        b = self.builder()
        src = self.unique_scratch_dir('src')
        os.makedirs(os.path.join(src, 'd'))
        self.write(os.path.join(src, 'd', 'f'), b'x\n', 0o644)
        # builder (1000) and audio (29) exist only in the image's /etc/passwd and /etc/group.
        self.copy_ok('--chown', 'builder:audio', '--chmod', '0750', b, os.path.join(src, 'd'), '/owned')
        upper = self.upper(b)
        st = os.lstat(os.path.join(upper, 'owned'))  # made for the copy: its owner
        self.assertEqual((st.st_uid, st.st_gid), (1000, 29))
        st = os.lstat(os.path.join(upper, 'owned/f'))
        self.assertEqual((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (1000, 29, 0o750))
        out = self.sh(b, 'stat -c "%u %g %a" /owned/f')
        self.assertEqual(out.strip(), '1000 29 750')
        # A name the image does not have: refused, naming it.
        code, _, err = self.kcopy('--chown', 'nosuchuser', b, os.path.join(src, 'd'), '/x')
        self.assertEqual(code, 125)
        self.assertIn('nosuchuser', err)
        self.assertFalse(os.path.lexists(os.path.join(upper, 'x')))
        code, _, err = self.kcopy('--chmod', '99', b, os.path.join(src, 'd'), '/x')
        self.assertEqual(code, 125)
        self.assertIn('chmod', err)

    def test_destination_symlink_to_etc_stays_inside(self):
        def links(path):
            os.symlink('/etc', os.path.join(path, 'to-etc'))
            os.symlink('../../../../../../etc', os.path.join(path, 'up-etc'))
        b = self.builder(extra=links)
        src = self.unique_scratch_dir('src')
        marker = f'kiln-copy-marker-{os.getpid()}'
        self.write(os.path.join(src, marker), b'inside\n')
        self.copy_ok(b, os.path.join(src, marker), '/to-etc/')
        self.copy_ok(b, os.path.join(src, marker), '/up-etc/sub/')
        self.assertFalse(os.path.lexists(os.path.join('/etc', marker)), 'written on the host')
        self.assertFalse(os.path.lexists(os.path.join('/etc/sub', marker)), 'written on the host')
        self.assertTrue(os.path.isfile(os.path.join(self.upper(b), 'etc', marker)))
        self.assertTrue(os.path.isfile(os.path.join(self.upper(b), 'etc', 'sub', marker)))
        self.assertEqual(self.sh(b, f'cat /etc/{marker}'), 'inside\n')

    # -- in, as alice (a user namespace) --------------------------------------------------------

    def test_alice_files_owned_by_her_mapped_root(self):
        b = self.alices_builder()
        src = self.alice_dir('src')
        os.makedirs(os.path.join(src, 'd', 'e'))
        self.write(os.path.join(src, 'd', 'e', 'f'), b'mine\n', owner=self.alice)
        subprocess.run(['chown', '-R', f'{self.alice.pw_uid}:{self.alice.pw_gid}', src], check=True)
        self.copy_ok(b, os.path.join(src, 'd'), '/in', user=kt.ALICE)
        self.copy_ok('--chown', '1000:1000', b, os.path.join(src, 'd', 'e', 'f'), '/byid/', user=kt.ALICE)
        upper = self.upper(b)
        for rel in ('in', 'in/e', 'in/e/f'):
            st = os.lstat(os.path.join(upper, rel))
            self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid), rel)
        st = os.lstat(os.path.join(upper, 'byid', 'f'))
        self.assertEqual((st.st_uid, st.st_gid), (tu.ALICE_SUBUID + 999, tu.ALICE_SUBGID + 999))
        out = self.run_ok(b, 'stat', '-c', '%u %g', '/in/e/f', '/byid/f', user=kt.ALICE)
        self.assertEqual(out.split('\n')[:2], ['0 0', '1000 1000'])

    def test_unreadable_source_refused_and_nothing_written(self):
        b = self.alices_builder()
        src = self.alice_dir('src')
        secret = os.path.join(src, 'secret')
        self.write(secret, b'root only\n', 0o600)  # root's, in alice's directory
        tree = os.path.join(src, 'tree')
        os.makedirs(tree)
        self.write(os.path.join(tree, 'aaa-readable'), b'fine\n', owner=self.alice)
        self.write(os.path.join(tree, 'zzz-secret'), b'root only\n', 0o600)
        os.chown(tree, self.alice.pw_uid, self.alice.pw_gid)
        readable = os.path.join(src, 'readable')
        self.write(readable, b'fine\n', owner=self.alice)
        before = tree_of(self.upper(b))
        for args in ([secret], [tree], [readable, secret]):
            code, _, err = self.kcopy(b, *args, '/dst/', user=kt.ALICE)
            self.assertEqual(code, 125, err)
            self.assertIn('Permission denied', err)
            self.assertIn('secret', err)
            self.assertEqual(tree_of(self.upper(b)), before, f'{args}: something was written')
        # kilnd never opens a source path: a directory descriptor of alice's is not what Copy takes.
        reply = self.raw_copy(b, tree, '/dst', user=kt.ALICE)
        self.assertRawError(reply, kt.E_INVALID, ['source'])
        self.assertEqual(tree_of(self.upper(b)), before)

    def test_other_users_builder_is_not_there(self):
        b = self.builder()
        tar = make_tar(os.path.join(self.unique_scratch_dir('t'), 'a.tar'), [('f', 'file', b'x')])
        reply = self.raw_copy(b, tar, '/dst', user=kt.ALICE)
        self.assertRawError(reply, kt.E_UNKNOWN_OBJECT, [])
        reply = self.rawcall(b.path, kt.BUILDER_IFACE, 'CopyOut', 'sha{sv}', ['/etc', 0, {}], user=kt.ALICE,
                             fd_paths=[tar])
        self.assertRawError(reply, kt.E_UNKNOWN_OBJECT, [])
        self.assertFalse(os.path.lexists(os.path.join(self.upper(b), 'dst')))
        # The same call on her own builder works: the refusal above is about whose builder it is.
        own = self.alices_builder()
        reply = self.raw_copy(own, tar, '/dst', user=kt.ALICE)
        self.assertNotEqual(reply.get('type'), 'error', reply)
        self.assertTrue(os.path.isfile(os.path.join(self.upper(own), 'dst', 'f')))

    # -- hostile archives ---------------------------------------------------------------------

    def test_add_unpacks_and_hostile_archives_are_refused(self):
        b = self.alices_builder()
        src = self.alice_dir('src')
        good = make_tar(os.path.join(src, 'good.tar.gz'),
                        [('d', 'dir', None), ('d/f', 'file', b'packed\n'), ('d/l', 'sym', '/etc/shadow'),
                         ('d/h', 'hard', 'd/f'), ('/abs', 'file', b'absolute\n')], 'gz')
        self.copy_ok(b, good, '/unpacked', user=kt.ALICE, verb='add')
        upper = self.upper(b)
        with open(os.path.join(upper, 'unpacked/d/f'), 'rb') as f:
            self.assertEqual(f.read(), b'packed\n')
        self.assertEqual(os.stat(os.path.join(upper, 'unpacked/d/h')).st_ino,
                         os.stat(os.path.join(upper, 'unpacked/d/f')).st_ino)
        self.assertTrue(os.path.isfile(os.path.join(upper, 'unpacked/abs')))
        st = os.lstat(os.path.join(upper, 'unpacked/d/f'))
        self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid))
        # kiln copy sends an archive as a file.
        self.copy_ok(b, good, '/as-file/', user=kt.ALICE)
        self.assertTrue(os.path.isfile(os.path.join(upper, 'as-file/good.tar.gz')))

        host_marker = os.path.join(self.env.dir, 'escaped')
        hostile = {
            'dotdot': ([('../../../../../../../..' + host_marker, 'file', b'out')], "'..'"),
            'through-symlink': ([('etc', 'sym', '/etc'), ('etc/kiln-pwned', 'file', b'out')],
                                'etc/kiln-pwned'),
            'through-dir-symlink': ([('up', 'sym', '../../../../..'), ('up/kiln-pwned', 'file', b'out')],
                                    'up/kiln-pwned'),
            'hardlink-out': ([('h', 'hard', '../../etc/shadow')], "'..'"),
            'hardlink-image': ([('h', 'hard', 'etc/passwd')], "'h'"),
            'device': ([('null', 'file', b'')], None),
        }
        for name, (entries, fragment) in hostile.items():
            if name == 'device':
                continue
            tar = make_tar(os.path.join(src, name + '.tar'), entries)
            os.chown(tar, self.alice.pw_uid, self.alice.pw_gid)
            before = tree_of(upper)
            code, _, err = self.kcopy(b, tar, f'/h-{name}', user=kt.ALICE, verb='add')
            self.assertEqual(code, 125, f'{name}: {err}')
            self.assertIn('Invalid source', err, name)
            reply = self.raw_copy(b, tar, f'/h-{name}', user=kt.ALICE)
            self.assertRawError(reply, kt.E_INVALID, ['source', fragment])
            after = tree_of(upper)
            self.assertFalse([p for p in after if 'kiln-pwned' in p or 'shadow' in p], name)
            self.assertFalse(os.path.lexists(host_marker), name)
            self.assertFalse(os.path.lexists('/etc/kiln-pwned'), name)
        # A device node in the stream: refused, never made.
        dev = os.path.join(src, 'dev.tar')
        with tarfile.open(dev, 'w') as t:
            info = tarfile.TarInfo('null')
            info.type = tarfile.CHRTYPE
            info.devmajor, info.devminor = 1, 3
            t.addfile(info)
        reply = self.raw_copy(b, dev, '/h-dev', user=kt.ALICE)
        self.assertRawError(reply, kt.E_INVALID, ['null', 'device'])
        self.assertFalse(os.path.lexists(os.path.join(upper, 'h-dev', 'null')))
        # Not a tar stream at all.
        junk = os.path.join(src, 'junk')
        self.write(junk, b'\x01' * 2048, owner=self.alice)
        reply = self.raw_copy(b, junk, '/h-junk', user=kt.ALICE)
        self.assertRawError(reply, kt.E_INVALID, ['source'])

    def test_add_refuses_urls(self):
        b = self.builder()
        code, _, err = self.kcopy(b, 'https://example.com/a.tar', '/x', verb='add')
        self.assertEqual(code, 125)
        self.assertIn('URLs are not supported', err)

    # -- out --------------------------------------------------------------------------------------

    def test_copy_out_files_are_the_callers(self):
        b = self.alices_builder()
        self.run_ok(b, 'sh', '-c', 'mkdir -p /out/sub && echo data > /out/sub/f && chmod 4755 /out/sub/f && '
                    'ln -s /etc/shadow /out/link && chown 1000:1000 /out/sub/f', user=kt.ALICE)
        dest = self.alice_dir('dest')
        self.copy_ok(f'{b.name}:/out', os.path.join(dest, 'got'), user=kt.ALICE)
        self.copy_ok(f'{b.name}:/out/sub/f', os.path.join(dest, 'single'), user=kt.ALICE)
        os.makedirs(os.path.join(dest, 'into'))
        os.chown(os.path.join(dest, 'into'), self.alice.pw_uid, self.alice.pw_gid)
        self.copy_ok(f'{b.name}:/out', os.path.join(dest, 'into'), user=kt.ALICE)
        for rel in ('got', 'got/sub', 'got/sub/f', 'got/link', 'single', 'into/out/sub/f'):
            st = os.lstat(os.path.join(dest, rel))
            self.assertEqual((st.st_uid, st.st_gid), (self.alice.pw_uid, self.alice.pw_gid), rel)
        self.assertEqual(stat.S_IMODE(os.lstat(os.path.join(dest, 'got/sub/f')).st_mode), 0o755,
                         'a set-id bit came out')
        self.assertEqual(os.readlink(os.path.join(dest, 'got/link')), '/etc/shadow')
        with open(os.path.join(dest, 'single')) as f:
            self.assertEqual(f.read(), 'data\n')
        # A symlink in the image to the host's /etc/shadow path stays inside: the image's file.
        self.run_ok(b, 'sh', '-c', 'echo image-shadow > /etc/shadow; ln -s /etc/shadow /sh', user=kt.ALICE)
        self.copy_ok(f'{b.name}:/sh', os.path.join(dest, 'shadow'), user=kt.ALICE)
        with open(os.path.join(dest, 'shadow')) as f:
            self.assertEqual(f.read(), 'image-shadow\n')
        code, _, err = self.kcopy(f'{b.name}:/nonexistent', os.path.join(dest, 'x'), user=kt.ALICE)
        self.assertEqual(code, 125)
        self.assertIn('/nonexistent', err)

    # -- limits -----------------------------------------------------------------------------------

    def test_limits_answer_limit_exceeded(self):
        b = self.alices_builder()
        src = self.alice_dir('src')
        big = make_tar(os.path.join(src, 'big.tar'), [('big', 'file', b'x' * (COPY_BYTES + 1))])
        many = make_tar(os.path.join(src, 'many.tar'),
                        [(f'f{i}', 'file', b'') for i in range(COPY_ENTRIES + 1)])
        self.assertRawError(self.raw_copy(b, big, '/big', user=kt.ALICE), kt.E_LIMIT, ['CopyBytes'])
        self.assertRawError(self.raw_copy(b, many, '/many', user=kt.ALICE), kt.E_LIMIT, ['CopyEntries'])
        # The bounds hold for root too.
        self.assertRawError(self.raw_copy(b, big, '/big'), kt.E_LIMIT, ['CopyBytes'])
        # Out: the same bounds.
        self.run_ok(b, 'sh', '-c', f'dd if=/dev/zero of=/large bs=1024 count={COPY_BYTES // 1024 + 1} 2>/dev/null; '
                    f'mkdir /lots; cd /lots; for i in $(seq {COPY_ENTRIES + 1}); do : > $i; done', user=kt.ALICE)
        dest = self.alice_dir('dest')
        for path, setting in (('/large', 'CopyBytes'), ('/lots', 'CopyEntries')):
            code, _, err = self.kcopy(f'{b.name}:{path}', os.path.join(dest, 'x' + path[1:]), user=kt.ALICE)
            self.assertEqual(code, 125, err)
            self.assertIn(setting, err)

    # -- the main loop, disconnects ---------------------------------------------------------------

    def test_stalled_writer_stalls_nobody_and_leaving_cleans_up(self):
        b = self.alices_builder()
        other = self.builder()
        stalled = [self.start_stalled_copy(b, user=kt.ALICE) for _ in range(COPIES_PER_USER)]
        # Past CopiesPerUser: refused at once.
        src = self.alice_dir('src')
        tar = make_tar(os.path.join(src, 'a.tar'), [('f', 'file', b'x')])
        self.assertRawError(self.raw_copy(b, tar, '/third', user=kt.ALICE), kt.E_LIMIT, ['CopiesPerUser'])
        # Other callers (and alice's other calls) go on while the writers stall.
        t0 = time.monotonic()
        self.copy_ok(other, tar, '/meanwhile/')
        self.assertEqual(self.sh(other, 'cat /meanwhile/a.tar | wc -c').strip(), str(os.path.getsize(tar)))
        self.run_ok(b, 'true', user=kt.ALICE)
        self.assertLess(time.monotonic() - t0, 20)
        # The builder is in use: Remove answers Busy.
        r = self.remove(b.path, user=kt.ALICE)
        self.assertError(r, kt.E_BUSY, 'copy')
        # The callers leave: the copies stop, their threads and descriptors go.
        for child in stalled:
            os.killpg(child.pid, 9)
            child.communicate(timeout=10)
        self.wait_until(lambda: self.copy_threads() == 0, 10, 'copy threads left in kilnd after the callers left')
        self.wait_until(lambda: len(self.kilnd_fds()) == len(self.fd_baseline), 10,
                        'descriptors left in kilnd after the callers left')
        # Nothing holds the builder any more.
        self.assertTrue(self.remove(b.path, user=kt.ALICE).ok)

    def test_stalled_copy_out_reader(self):
        b = self.alices_builder()
        self.run_ok(b, 'sh', '-c', 'dd if=/dev/zero of=/big bs=1024 count=900 2>/dev/null', user=kt.ALICE)
        # A reader that never reads: kilnd's thread waits on the full pipe, and goes when it leaves.
        script = ('import os, subprocess, sys, time\n'
                  'r, w = os.pipe()\n'
                  f'p = subprocess.Popen([{self.env.kiln_cli!r}, "copy", "{b.name}:/big", "-"], stdout=w)\n'
                  'os.close(w)\n'
                  'print("READY", flush=True)\n'
                  'time.sleep(300)\n')
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        child = subprocess.Popen(['runuser', '-u', kt.ALICE, '--', kt.USER_PYTHON, '-c', script],
                                 stdout=subprocess.PIPE, env=env, text=True, start_new_session=True)
        self.children.append(child)
        self.groups.append(child.pid)
        self.assertEqual(child.stdout.readline().strip(), 'READY')
        self.wait_until(lambda: self.copy_threads() == 1, 10, 'no copy thread')
        self.run_ok(b, 'true', user=kt.ALICE)
        os.killpg(child.pid, 9)
        child.communicate(timeout=10)
        self.wait_until(lambda: self.copy_threads() == 0, 10, 'copy thread left')
        self.wait_until(lambda: len(self.kilnd_fds()) == len(self.fd_baseline), 10, 'descriptors left')


if __name__ == '__main__':
    kt.main()
