#!/usr/bin/env python3
"""A builder's root file system stays mounted [Run] KeepMountedSeconds after its last holder lets
go, so that back-to-back runs reuse the mount: reuse (the mount's unique id stays the same), the
end of the wait (mount and mount point gone), Remove, Unmount and kilnd stopping while a mount is
kept, a mount unmounted by hand, and a run of the other user namespace kind after a kept mount.
Parametrized over isolation modes; after each test nothing may be left behind (see kiln_runlib).

kilnd runs with the built-in default (10 s), as in every other test file: their checks of what a
run leaves come after the builders are removed, and Remove unmounts a kept mount."""
import ctypes
import os
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module


def restart_kilnd_with(extra=''):
    """kilnd again, with @extra kiln.conf lines on top of kiln-env's."""
    with open(os.path.join(kt.ENV.dir, 'kiln.conf.extra'), 'w') as f:
        f.write(extra)
    kt.ENV.restart_kilnd()


# statx(2): the unique mount id (Linux 6.8) is never given to another mount, unlike mountinfo's
# first field, which a mount made right after an unmount often takes over.
_AT_FDCWD = -100
_STATX_MNT_ID_UNIQUE = 0x4000
_STATX_MNT_ID_OFFSET = 0x90
_libc = ctypes.CDLL(None, use_errno=True)


def unique_mount_id(path):
    """The unique id of the mount whose root is @path; None when @path is not a mount point."""
    if not os.path.ismount(path):
        return None
    buf = ctypes.create_string_buffer(256)
    if _libc.statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_MNT_ID_UNIQUE, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    if not int.from_bytes(buf.raw[0:4], 'little') & _STATX_MNT_ID_UNIQUE:
        raise unittest.SkipTest('this kernel has no unique mount ids (STATX_MNT_ID_UNIQUE, Linux 6.8)')
    return int.from_bytes(buf.raw[_STATX_MNT_ID_OFFSET:_STATX_MNT_ID_OFFSET + 8], 'little')


class LingerTestCase(kr.RunTestCase):
    """Helpers: where a builder's root file system is mounted, and whether it still is."""

    def mount_point(self, b):
        return os.path.join(self.run_dir, 'mounts', b.id)

    def assert_kept(self, b, when):
        self.assertTrue(os.path.ismount(self.mount_point(b)), f'{when}: the root file system is not mounted')

    def assert_gone(self, b, when):
        self.assertEqual(self.rootfs_mounts(b), [], f'{when}: the root file system is still mounted')
        self.assertFalse(os.path.lexists(self.mount_point(b)), f'{when}: the mount point is still there')

    def stop_kilnd(self):
        """SIGTERM to kilnd, as systemctl stop sends it; returns once it has exited."""
        pid = self.kilnd_pid()
        os.kill(pid, signal.SIGTERM)
        self.wait_until(lambda: not kr.pid_alive(pid), 30, f'kilnd (pid {pid}) did not exit on SIGTERM')

    def start_kilnd_again(self):
        self.env.restart_kilnd()
        self.fd_baseline = self.kilnd_fds()


class LingerCases(LingerTestCase):

    def test_back_to_back_runs_reuse_the_mount(self):
        b = self.builder()
        self.sh(b, 'echo one > /kept')
        self.assert_kept(b, 'right after a run')
        first = unique_mount_id(self.mount_point(b))
        self.assertEqual(self.run_ok(b, 'cat', '/kept'), 'one\n')
        # Runs that fail reuse it as well (and let go of it: see the one-second cases).
        self.assertEqual(self.krun(b, 'false')[0], 1)
        self.assertEqual(self.krun(b, 'no-such-command')[0], 127)
        self.assertEqual(unique_mount_id(self.mount_point(b)), first, 'a run mounted the root file system anew')
        self.assertEqual(len(self.rootfs_mounts(b)), 1, self.rootfs_mounts(b))

    def test_each_builder_keeps_its_own(self):
        one, two = self.builder(), self.builder()
        self.run_ok(one, 'true')
        self.run_ok(two, 'true')
        self.assert_kept(one, 'after a run in another builder')
        self.assert_kept(two, 'after its run')
        self.assertNotEqual(unique_mount_id(self.mount_point(one)), unique_mount_id(self.mount_point(two)))

    def test_mount_reuses_it_and_unmount_unmounts_at_once(self):
        b = self.builder()
        self.run_ok(b, 'true')
        point = self.mount_point(b)
        first = unique_mount_id(point)
        code, out, err = self.env.kiln('mount', b.name)
        self.assertEqual((code, out.strip()), (0, point), err)
        self.assertEqual(unique_mount_id(point), first, 'Mount() mounted a kept root file system anew')
        # Unmount() leaves nothing mounted, as before: no wait after Mount()'s hold ends...
        self.env.kiln('umount', b.name, check=True)
        self.assert_gone(b, 'right after kiln umount')
        # ...and none for a mount that only a finished run keeps.
        self.run_ok(b, 'true')
        self.assert_kept(b, 'after a run')
        self.env.kiln('umount', b.name, check=True)
        self.assert_gone(b, 'right after kiln umount of a kept mount')
        self.assertEqual(self.run_ok(b, 'echo', 'again'), 'again\n')

    def test_unmounted_by_hand_is_mounted_again(self):
        b = self.builder()
        self.sh(b, 'echo one > /kept')
        point = self.mount_point(b)
        subprocess.run(['umount', point], check=True)
        # The bare mount point must not become the next run's root.
        self.assertEqual(self.run_ok(b, 'cat', '/kept'), 'one\n')
        self.assert_kept(b, 'after the next run')

    def test_remove_unmounts_a_kept_mount(self):
        b = self.builder()
        self.run_ok(b, 'true')
        self.assert_kept(b, 'after a run')
        self.env.kiln('rm', b.name, check=True)
        self.assert_gone(b, 'right after kiln rm')
        self.assertFalse(os.path.exists(self.builder_dir(b.id)))

    def test_kilnd_stop_unmounts_a_kept_mount(self):
        b = self.builder()
        self.run_ok(b, 'true')
        self.assert_kept(b, 'after a run')
        try:
            self.stop_kilnd()
            # Checked before a new kilnd starts: its start-up would clean up what this one left.
            self.assert_gone(b, 'after kilnd stopped')
            self.assertNotIn('mounts', self.leftovers())
        finally:
            self.start_kilnd_again()
        self.assertEqual(self.run_ok(b, 'echo', 'again'), 'again\n')

    def test_kilnd_stop_during_a_run_unmounts(self):
        # The run ends as kilnd stops, after its main loop: nothing would be left to end a wait.
        b = self.builder()
        self.wait_running(self.start(b, ['sleep', '100']))
        self.assert_kept(b, 'during a run')
        try:
            self.stop_kilnd()
            self.assert_gone(b, 'after kilnd stopped during a run')
        finally:
            self.start_kilnd_again()

    def test_other_userns_replaces_a_kept_mount(self):
        with open(self.env.kilnd_log) as f:
            if 'Layers cannot be ID-mapped here' in f.read():
                self.skipTest('layers cannot be ID-mapped on this host')
        b = self.builder()  # root's: no user namespace unless a run asks for one
        self.assertEqual(self.props(b.path)['UserNamespace'], 'host')
        point = self.mount_point(b)
        # /home/builder belongs to 1000 in the layer. With userns=auto it shows as 1000 only through
        # an ID-mapped mount: through the kept plain one it would be an unmapped id (65534), and a
        # mapped mount kept for a userns=host run would show the mapped host id.
        owner = ['stat', '-c', '%u', '/home/builder']
        self.assertEqual(self.captured_in(b, owner, 'host'), [0, '1000\n', ''])
        host_mount = unique_mount_id(point)
        self.assertEqual(self.captured_in(b, owner, 'auto'), [0, '1000\n', ''])
        auto_mount = unique_mount_id(point)
        self.assertNotEqual(auto_mount, host_mount, 'userns=auto ran in the kept userns=host mount')
        self.assertEqual(self.captured_in(b, owner, 'auto'), [0, '1000\n', ''])
        self.assertEqual(unique_mount_id(point), auto_mount, 'a second userns=auto run mounted anew')
        self.assertEqual(self.captured_in(b, owner, 'host'), [0, '1000\n', ''])
        self.assertNotIn(unique_mount_id(point), (host_mount, auto_mount))

    def captured_in(self, b, argv, userns):
        """RunCaptured with the userns option: [exit status, stdout, stderr]."""
        reply = self.busctl('--', 'call', kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'RunCaptured', 'asa{sv}',
                            str(len(argv)), *argv, '1', 'userns', 's', userns)
        return reply['data']


class LingerOneSecondCases(LingerTestCase):
    """KeepMountedSeconds=1: the wait ends."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        restart_kilnd_with('[Run]\nKeepMountedSeconds=1\n')

    @classmethod
    def tearDownClass(cls):
        restart_kilnd_with()
        super().tearDownClass()

    def wait_gone(self, b, since, what):
        self.wait_until(lambda: not os.path.lexists(self.mount_point(b)), 10,
                        f'still mounted 10 s after {what} with KeepMountedSeconds=1')
        self.assert_gone(b, f'after {what}')
        return time.monotonic() - since

    def test_unmounted_after_the_wait(self):
        b = self.builder()
        self.run_ok(b, 'true')
        ended = time.monotonic()
        self.assert_kept(b, 'right after a run')
        waited = self.wait_gone(b, ended, 'a run')
        # The reply comes after the hold ends, so the wait is just under a second from here.
        self.assertGreater(waited, 0.5, 'unmounted before KeepMountedSeconds had passed')

    def test_failed_runs_let_go(self):
        b = self.builder()
        for argv, status in ((['no-such-command'], 127), (['/notexec'], 126), (['false'], 1)):
            code, _, err = self.krun(b, *argv)
            self.assertEqual(code, status, err)
            self.wait_gone(b, time.monotonic(), f'kiln run {argv[0]}')
        code, _, err = self.krun('--workingdir', '/etc/passwd', b, 'true')
        self.assertNotEqual(code, 0, 'a run in a file as working directory succeeded')
        self.wait_gone(b, time.monotonic(), 'a run that could not be prepared')

    def test_a_run_after_the_wait_mounts_anew(self):
        b = self.builder()
        self.sh(b, 'echo one > /kept')
        first = unique_mount_id(self.mount_point(b))
        self.wait_gone(b, time.monotonic(), 'a run')
        self.assertEqual(self.run_ok(b, 'cat', '/kept'), 'one\n')
        self.assertNotIn(unique_mount_id(self.mount_point(b)), (None, first))


kr.parametrize(globals(), LingerCases)
kr.parametrize(globals(), LingerOneSecondCases)
# The base of both is no test either.
del LingerTestCase

if __name__ == '__main__':
    kt.main()
