#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The layer unpacker (service/import/layer-tar.c) against archives made by Python's tarfile.

Each test unpacks into BASE/root, next to BASE/canary (a directory with a file) and checks the tree,
the digests against sha256sum, and on the host that nothing was created or changed outside the root:
the canary, BASE itself, /etc/passwd and /etc/shadow. Needs root (exit 77 otherwise)."""
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import unittest

UNPACK = os.environ.get("KILN_UNPACK_LAYER")


def entry(name, kind="file", data=b"", mode=0o644, uid=0, gid=0, mtime=1_000_000_000, link="",
          major=0, minor=0, pax=None):
    t = tarfile.TarInfo(name)
    t.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
              "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
              "fifo": tarfile.FIFOTYPE}[kind]
    t.mode = mode
    t.uid, t.gid = uid, gid
    t.mtime = mtime
    t.linkname = link
    t.devmajor, t.devminor = major, minor
    t.size = len(data) if kind == "file" else 0
    if pax:
        t.pax_headers = dict(pax)
    return t, (io.BytesIO(data) if kind == "file" else None)


def make_tar(entries, fmt=tarfile.PAX_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tf:
        for t, f in entries:
            tf.addfile(t, f)
    return out.getvalue()


def compress(data, how):
    if how == "none":
        return data
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
    raise ValueError(how)


def sha256sum(data):
    out = subprocess.run(["sha256sum"], input=data, stdout=subprocess.PIPE, check=True).stdout
    return out.split()[0].decode()


def file_digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def host_state(path):
    st = os.lstat(path)
    return (st.st_ino, st.st_mode, st.st_uid, st.st_nlink, st.st_size, st.st_mtime_ns, file_digest(path))


class LayerTest(unittest.TestCase):
    def setUp(self):
        self.base = tempfile.mkdtemp(prefix="kiln-layer-")
        self.root = os.path.join(self.base, "root")
        self.canary = os.path.join(self.base, "canary")
        os.mkdir(self.root)
        os.mkdir(self.canary)
        with open(os.path.join(self.canary, "file"), "w") as f:
            f.write("canary\n")
        self.canary_before = self.snapshot(self.canary)
        self.host_before = {p: host_state(p) for p in ("/etc/passwd", "/etc/shadow")}

    def tearDown(self):
        # Nothing outside the root: BASE holds root and canary only, the canary and the host files are
        # as they were.
        self.assertEqual(sorted(os.listdir(self.base)), ["canary", "root"])
        self.assertEqual(self.snapshot(self.canary), self.canary_before)
        for p, before in self.host_before.items():
            self.assertEqual(host_state(p), before, p)
        shutil.rmtree(self.base)

    @staticmethod
    def snapshot(top):
        result = []
        for dirpath, dirnames, filenames in os.walk(top):
            for n in sorted(dirnames + filenames):
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                result.append((p, st.st_mode, st.st_ino, st.st_mtime_ns, st.st_nlink))
        return result

    def unpack(self, blob, *args):
        # In a mount namespace of its own with /etc read-only: the hostile archives below aim at
        # /etc/passwd and /etc/shadow, and a broken unpacker must fail the test, not the machine. The
        # canary, in a writable directory, is what catches an escape that gets through.
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            'mount --bind -o ro /etc /etc && exec "$0" "$@"', UNPACK, *args, self.root],
                           input=blob, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def unpack_ok(self, blob, *args):
        rc, out, err = self.unpack(blob, *args)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def refused(self, blob, code, *words, args=()):
        rc, out, err = self.unpack(blob, *args)
        self.assertEqual(rc, 1, out)
        self.assertTrue(err.startswith(code + ":"), err)
        for w in words:
            self.assertIn(w, err)
        return err

    def path(self, name):
        return os.path.join(self.root, name)


class TestContent(LayerTest):
    def test_files_dirs_metadata(self):
        layer = make_tar([
            entry("./", "dir", mode=0o755, mtime=111),
            entry("bin/", "dir", mode=0o750, uid=42, gid=43, mtime=12345),
            entry("bin/su", data=b"#!/bin/sh\n", mode=0o4755, uid=1234, gid=5678, mtime=1_500_000_000,
                  pax={"SCHILY.xattr.user.kiln": "value", "mtime": "1500000000.25"}),
            entry("bin/g", data=b"g", mode=0o2711, uid=7, gid=8),
            entry("bin/sticky/", "dir", mode=0o1777),
            entry("empty", data=b"", mode=0o600, uid=65534, gid=65534),
        ])
        r = self.unpack_ok(layer)
        self.assertEqual(r["bytes"], 11)
        self.assertEqual(r["entries"], 5)

        st = os.lstat(self.path("bin/su"))
        # setuid survives the chown that comes before it
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o4755)
        self.assertEqual((st.st_uid, st.st_gid), (1234, 5678))
        self.assertEqual(st.st_mtime_ns, 1_500_000_000_250_000_000)
        self.assertEqual(os.getxattr(self.path("bin/su"), "user.kiln"), b"value")
        with open(self.path("bin/su"), "rb") as f:
            self.assertEqual(f.read(), b"#!/bin/sh\n")
        st = os.lstat(self.path("bin/g"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), (0o2711, 7, 8))
        self.assertEqual(stat.S_IMODE(os.lstat(self.path("bin/sticky")).st_mode), 0o1777)
        # a directory's times are set after its entries are written
        st = os.lstat(self.path("bin"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime), (0o750, 42, 43, 12345))
        self.assertEqual(os.lstat(self.root).st_mtime, 111)
        st = os.lstat(self.path("empty"))
        self.assertEqual((st.st_size, st.st_uid, stat.S_IMODE(st.st_mode)), (0, 65534, 0o600))

    def test_links_devices_fifos(self):
        layer = make_tar([
            entry("etc/", "dir"),
            entry("etc/data", data=b"shared", mode=0o640, uid=3),
            entry("etc/hard", "hardlink", link="etc/data"),
            entry("/abs-hard", "hardlink", link="/etc/data"),  # absolute: inside the layer
            entry("etc/link", "symlink", link="/etc/shadow", uid=5, gid=6, mtime=777),
            entry("dev/null", "char", major=1, minor=3, mode=0o666, uid=0, gid=0),
            entry("dev/loop0", "block", major=7, minor=0, mode=0o660, gid=6),
            entry("run/fifo", "fifo", mode=0o620, uid=9),
        ])
        self.unpack_ok(layer)
        data = os.lstat(self.path("etc/data"))
        self.assertEqual(data.st_nlink, 3)
        self.assertEqual(os.lstat(self.path("etc/hard")).st_ino, data.st_ino)
        self.assertEqual(os.lstat(self.path("abs-hard")).st_ino, data.st_ino)
        st = os.lstat(self.path("etc/link"))
        self.assertTrue(stat.S_ISLNK(st.st_mode))
        self.assertEqual(os.readlink(self.path("etc/link")), "/etc/shadow")
        self.assertEqual((st.st_uid, st.st_gid, st.st_mtime), (5, 6, 777))
        st = os.lstat(self.path("dev/null"))
        self.assertTrue(stat.S_ISCHR(st.st_mode))
        self.assertEqual((os.major(st.st_rdev), os.minor(st.st_rdev), stat.S_IMODE(st.st_mode)), (1, 3, 0o666))
        st = os.lstat(self.path("dev/loop0"))
        self.assertTrue(stat.S_ISBLK(st.st_mode))
        self.assertEqual((os.major(st.st_rdev), st.st_gid, stat.S_IMODE(st.st_mode)), (7, 6, 0o660))
        st = os.lstat(self.path("run/fifo"))
        self.assertTrue(stat.S_ISFIFO(st.st_mode))
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (9, 0o620))
        # parents the archive left out: 0755, root's
        st = os.lstat(self.path("run"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), (0o755, 0, 0))

    def test_xattrs_on_every_kind(self):
        # security.capability survives the chown before it (a chown clears it); xattrs on a symlink
        # and a device go through the parent's descriptor, never following the symlink.
        cap = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0).decode("utf-8", "surrogateescape")
        layer = make_tar([
            entry("ping", data=b"\x7fELF", mode=0o755, uid=1000, pax={"SCHILY.xattr.security.capability": cap}),
            entry("link", "symlink", link="/etc/passwd", pax={"SCHILY.xattr.trusted.kiln": "on-link"}),
            entry("null", "char", major=1, minor=3, pax={"SCHILY.xattr.trusted.kiln": "on-device"}),
            entry("d/", "dir", pax={"SCHILY.xattr.user.dir": "on-dir"}),
        ])
        self.unpack_ok(layer)
        self.assertEqual(os.getxattr(self.path("ping"), "security.capability")[:8],
                         struct.pack("<II", 0x02000001, 1 << 13))
        self.assertEqual(os.lstat(self.path("ping")).st_uid, 1000)
        self.assertEqual(os.getxattr(self.path("link"), "trusted.kiln", follow_symlinks=False), b"on-link")
        self.assertNotIn("trusted.kiln", os.listxattr("/etc/passwd"))
        self.assertEqual(os.getxattr(self.path("null"), "trusted.kiln"), b"on-device")
        self.assertEqual(os.getxattr(self.path("d"), "user.dir"), b"on-dir")

    def test_whiteouts_and_opaque(self):
        layer = make_tar([
            entry("a/", "dir"),
            entry("a/.wh.gone"),
            entry("a/.wh..wh..opq"),
            entry(".wh.top", mode=0o600),
            entry(".wh..wh.plnk/", "dir"),  # aufs's hard link directory: skipped
            entry(".wh..wh.plnk/1234", data=b"x"),
        ])
        self.unpack_ok(layer)
        for p in ("a/gone", "top"):
            st = os.lstat(self.path(p))
            self.assertTrue(stat.S_ISCHR(st.st_mode), p)
            self.assertEqual(st.st_rdev, 0, p)
        self.assertEqual(os.getxattr(self.path("a"), "trusted.overlay.opaque"), b"y")
        self.assertEqual(sorted(os.listdir(self.root)), ["a", "top"])
        self.assertEqual(sorted(os.listdir(self.path("a"))), ["gone"])

    def test_whiteout_replaces_earlier_entry(self):
        layer = make_tar([entry("f", data=b"x"), entry(".wh.f")])
        self.unpack_ok(layer)
        self.assertTrue(stat.S_ISCHR(os.lstat(self.path("f")).st_mode))

    def test_compressions_and_digests(self):
        content = os.urandom(300_000)
        tar = make_tar([entry("d/", "dir"), entry("d/f", data=content)])
        for how in ("none", "gzip", "zstd"):
            with self.subTest(how=how):
                shutil.rmtree(self.root)
                os.mkdir(self.root)
                blob = compress(tar, how)
                r = self.unpack_ok(blob)
                self.assertEqual(r["blob_digest"], sha256sum(blob))
                decompressed = {"none": ["cat"], "gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dc"]}[how]
                stream = subprocess.run(decompressed, input=blob, stdout=subprocess.PIPE, check=True).stdout
                self.assertEqual(stream, tar)
                self.assertEqual(r["diff_id"], sha256sum(stream))
                self.assertNotEqual(how == "none", r["blob_digest"] != r["diff_id"])
                self.assertEqual(r["bytes"], 300_000)
                self.assertEqual(file_digest(self.path("d/f")), hashlib.sha256(content).hexdigest())

    def test_trailing_bytes_in_digests(self):
        # The diff_id covers the whole uncompressed stream, padding after the tar's end too.
        tar = make_tar([entry("f", data=b"x")]) + b"\0" * 4096
        blob = compress(tar, "gzip")
        r = self.unpack_ok(blob)
        self.assertEqual(r["diff_id"], sha256sum(tar))
        self.assertEqual(r["blob_digest"], sha256sum(blob))

    def test_gnu_and_ustar_formats(self):
        for fmt in (tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
            with self.subTest(fmt=fmt):
                shutil.rmtree(self.root)
                os.mkdir(self.root)
                self.unpack_ok(make_tar([entry("a/b", data=b"1", uid=1000)], fmt=fmt))
                self.assertEqual(os.lstat(self.path("a/b")).st_uid, 1000)

    def test_last_entry_wins(self):
        layer = make_tar([
            entry("f", data=b"first"),
            entry("f", data=b"second", mode=0o600),
            entry("d/", "dir", mode=0o755),
            entry("d/kept", data=b"k"),
            entry("d/", "dir", mode=0o700, uid=11, mtime=5),  # keeps d/kept, takes the new metadata
            entry("x/", "dir"),
            entry("x/y", data=b"y"),
            entry("x", data=b"now a file"),  # a file over a directory: the directory goes
        ])
        self.unpack_ok(layer)
        with open(self.path("f"), "rb") as f:
            self.assertEqual(f.read(), b"second")
        st = os.lstat(self.path("d"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid, st.st_mtime), (0o700, 11, 5))
        self.assertTrue(os.path.isfile(self.path("d/kept")))
        self.assertTrue(stat.S_ISREG(os.lstat(self.path("x")).st_mode))


class TestHostile(LayerTest):
    def test_dotdot_refused(self):
        err = self.refused(make_tar([entry("../x", data=b"evil")]), "invalid-argument", "'../x'", "'..'")
        self.assertFalse(os.path.exists(os.path.join(self.base, "x")))
        self.refused(make_tar([entry("a/../../canary/file", data=b"evil")]), "invalid-argument",
                     "a/../../canary/file")
        self.refused(make_tar([entry("f", "hardlink", link="../canary/file")]), "invalid-argument", "'..'")

    def test_absolute_lands_inside(self):
        self.unpack_ok(make_tar([entry("/etc/passwd", data=b"root::0:0::/:/bin/sh\n")]))
        with open(self.path("etc/passwd"), "rb") as f:
            self.assertEqual(f.read(), b"root::0:0::/:/bin/sh\n")

    def test_entry_through_symlink_refused(self):
        err = self.refused(make_tar([entry("a", "symlink", link="/etc"), entry("a/passwd", data=b"evil")]),
                           "invalid-argument", "'a/passwd'", "symbolic link")
        self.assertEqual(os.readlink(self.path("a")), "/etc")
        self.assertEqual(os.listdir(self.root), ["a"])

    def test_entry_through_absolute_symlink_to_canary_refused(self):
        self.refused(make_tar([entry("a", "symlink", link=self.canary), entry("a/new", data=b"evil"),
                               entry("a/file", data=b"evil")]), "invalid-argument", "'a/new'", "symbolic link")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.refused(make_tar([entry("a", "symlink", link=self.canary), entry("a/file", "symlink", link="/")]),
                     "invalid-argument", "'a/file'")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.refused(make_tar([entry("a", "symlink", link=self.canary), entry("x", "hardlink", link="a/file")]),
                     "invalid-argument", "'x'", "symbolic link")

    def test_entry_through_relative_symlink_refused(self):
        self.refused(make_tar([entry("a", "symlink", link="../canary"), entry("a/new", data=b"evil")]),
                     "invalid-argument", "'a/new'")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        # the directory entry itself through the symlink
        self.refused(make_tar([entry("a", "symlink", link="../canary"), entry("a/sub/", "dir")]),
                     "invalid-argument", "'a/sub/'")

    def test_symlink_replaced_by_directory(self):
        # A directory entry over a symlink replaces the symlink; nothing goes where it pointed.
        self.unpack_ok(make_tar([
            entry("a", "symlink", link="../canary"),
            entry("a/", "dir", mode=0o700),
            entry("a/file", data=b"inside"),
        ]))
        self.assertTrue(stat.S_ISDIR(os.lstat(self.path("a")).st_mode))
        with open(self.path("a/file"), "rb") as f:
            self.assertEqual(f.read(), b"inside")

    def test_directory_replaced_by_symlink(self):
        self.refused(make_tar([
            entry("a/", "dir"),
            entry("a/f", data=b"1"),
            entry("a", "symlink", link="../canary"),
            entry("a/file", data=b"evil"),
        ]), "invalid-argument", "'a/file'", "symbolic link")
        self.assertEqual(os.readlink(self.path("a")), "../canary")

    def test_file_replaces_symlink(self):
        # A file over a symlink to a host file replaces the link: the host file is untouched.
        self.unpack_ok(make_tar([entry("s", "symlink", link="/etc/passwd"), entry("s", data=b"evil")]))
        self.assertTrue(stat.S_ISREG(os.lstat(self.path("s")).st_mode))
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.unpack_ok(make_tar([entry("s", "symlink", link="../canary/file"), entry("s", "char", major=1, minor=3)]))
        self.assertTrue(stat.S_ISCHR(os.lstat(self.path("s")).st_mode))

    def test_hardlink_outside_refused(self):
        self.refused(make_tar([entry("shadow", "hardlink", link="../../etc/shadow")]), "invalid-argument",
                     "'shadow'", "..")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        # absolute: taken inside the layer, where there is no etc/shadow
        self.refused(make_tar([entry("shadow", "hardlink", link="/etc/shadow")]), "invalid-argument",
                     "'shadow'", "not in the layer")
        self.assertEqual(os.listdir(self.root), [])

    def test_hardlink_through_symlink_refused(self):
        self.refused(make_tar([entry("l", "symlink", link="/etc"), entry("x", "hardlink", link="l/shadow")]),
                     "invalid-argument", "'x'", "symbolic link")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.refused(make_tar([entry("l", "symlink", link="../canary"), entry("x", "hardlink", link="l/file")]),
                     "invalid-argument", "'x'")

    def test_hardlink_to_directory_refused(self):
        self.refused(make_tar([entry("d/", "dir"), entry("x", "hardlink", link="d")]), "invalid-argument",
                     "'x'", "directory")

    def test_hardlink_to_symlink_links_the_symlink(self):
        self.unpack_ok(make_tar([entry("l", "symlink", link="/etc/shadow"), entry("x", "hardlink", link="l")]))
        self.assertTrue(stat.S_ISLNK(os.lstat(self.path("x")).st_mode))
        self.assertEqual(os.lstat(self.path("x")).st_ino, os.lstat(self.path("l")).st_ino)

    def test_overlay_xattr_refused(self):
        self.refused(make_tar([entry("d/", "dir", pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})]),
                     "invalid-argument", "'d/'", "trusted.overlay.redirect")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.refused(make_tar([entry("f", pax={"SCHILY.xattr.trusted.overlay.opaque": "y"})]),
                     "invalid-argument", "'f'", "trusted.overlay.opaque")

    def test_unknown_xattr_namespace_refused(self):
        self.refused(make_tar([entry("f", pax={"SCHILY.xattr.kiln.x": "y"})]), "invalid-argument", "'f'", "kiln.x")

    def test_bad_whiteouts_refused(self):
        self.refused(make_tar([entry(".wh..")]), "invalid-argument", ".wh..")
        self.refused(make_tar([entry(".wh.")]), "invalid-argument", "'.wh.'")
        self.refused(make_tar([entry(".wh.x/y", data=b"1")]), "invalid-argument", "whiteout")

    def test_too_many_entries(self):
        layer = make_tar([entry("f%d" % i) for i in range(10)])
        self.refused(layer, "no-space", "more than 5 entries", args=("--max-entries", "5"))
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        # parents the archive leaves out count too
        self.refused(make_tar([entry("a/b/c/d/e/f")]), "no-space", "more than 5 entries",
                     args=("--max-entries", "5"))
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.assertEqual(self.unpack_ok(layer, "--max-entries", "10")["entries"], 10)

    def test_too_many_bytes(self):
        layer = make_tar([entry("a", data=b"x" * 600), entry("b", data=b"y" * 600)])
        err = self.refused(layer, "no-space", "'b'", "more than 1000 bytes", args=("--max-bytes", "1000"))
        # refused before writing: b was never created
        self.assertFalse(os.path.exists(self.path("b")))
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.assertEqual(self.unpack_ok(layer, "--max-bytes", "1200")["bytes"], 1200)

    def test_truncated_gzip(self):
        blob = compress(make_tar([entry("f", data=os.urandom(200_000))]), "gzip")
        self.refused(blob[: len(blob) // 2], "invalid-argument")
        shutil.rmtree(self.root)
        os.mkdir(self.root)
        self.refused(blob[:5], "invalid-argument")

    def test_truncated_tar(self):
        tar = make_tar([entry("f", data=os.urandom(20_000))])
        self.refused(tar[:5000], "invalid-argument", "runcated")

    def test_not_a_tar(self):
        self.refused(b"this is not a tar stream at all\n" * 100, "invalid-argument", "layer")
        self.refused(b"", "invalid-argument")
        self.refused(compress(b"\x01" * 10000, "zstd"), "invalid-argument")

    def test_absurd_names(self):
        self.refused(make_tar([entry("a" * 200 + "/" + "b" * 5000)]), "invalid-argument", "longer than 4096")
        self.refused(make_tar([entry("d/" * 300 + "f")]), "invalid-argument", "deeper than 256")
        self.refused(make_tar([entry("x" * 300)]), "invalid-argument", "longer than 255")
        self.assertEqual(os.listdir(self.root), [])

    def test_root_replaced_refused(self):
        self.refused(make_tar([entry("./", "symlink", link="/etc")]), "invalid-argument", "layer root")
        self.refused(make_tar([entry("x", "hardlink", link="./")]), "invalid-argument", "layer root")

    def test_trailing_garbage_bounded(self):
        tar = make_tar([entry("f", data=b"x")]) + b"\0" * (2 * 1024 * 1024)
        self.refused(compress(tar, "gzip"), "invalid-argument", "after the end")

    def test_root_not_empty(self):
        open(self.path("old"), "w").close()
        self.refused(make_tar([entry("f")]), "failed", "not empty")


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        sys.exit(77)
    if not UNPACK:
        print("KILN_UNPACK_LAYER is not set", file=sys.stderr)
        sys.exit(2)
    unittest.main(verbosity=2)
