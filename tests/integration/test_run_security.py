#!/usr/bin/env python3
"""Runs in untrusted images with real runc, as root: symlinks in the image that point out of
the root file system (/etc/passwd, /etc/group, /etc/hosts, /etc/resolv.conf, /etc/hostname,
/etc itself, /run, the working directory, volume and mount targets, PATH directories) must not
make kilnd read or write anything outside it. Each test keeps an "outside" directory on the
host that the symlinks point to and checks that it is exactly as before, that nothing was
mounted there, and that nothing from it reached the container. Files kilnd reads from the
image that are not regular (a FIFO) or too big must not hang it. Parametrized over isolation
modes (kiln_runlib.ISOLATIONS); after each test nothing may be left behind (see kiln_runlib)."""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module

HOST_PASSWD = 'root:x:0:0:root:/root:/bin/sh\nhostonly:x:4242:4242:host only:/hostonly:/bin/sh\n' \
              'builder:x:4343:4343:host builder:/hostbuilder:/bin/sh\n'
HOST_GROUP = 'root:x:0:\nhostgrp:x:4444:builder,root\n'
HOST_HOSTS = '# outside hosts: must not change\n192.0.2.1 outside-host\n'
HOST_RESOLV = '# outside resolv.conf: must not change\nnameserver 192.0.2.53\n'
HOST_HOSTNAME = 'outside-hostname\n'


def tree_state(root):
    """Everything about a tree that a write would change: per entry, type, mode, size, times,
    link target, content hash."""
    state = {}
    for top, dirs, files in os.walk(root):
        for name in [top] + [os.path.join(top, n) for n in dirs + files]:
            st = os.lstat(name)
            entry = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_uid, st.st_gid)
            if os.path.islink(name):
                entry += (os.readlink(name),)
            elif os.path.isfile(name):
                with open(name, 'rb') as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            state[os.path.relpath(name, root)] = entry
    return state


class RunSecurity(kr.RunTestCase):

    def setUp(self):
        super().setUp()
        # The host directory the image's symlinks point to.
        self.outside = self.unique_scratch_dir('outside')
        for name, text in (('passwd', HOST_PASSWD), ('group', HOST_GROUP), ('hosts', HOST_HOSTS),
                           ('resolv.conf', HOST_RESOLV), ('hostname', HOST_HOSTNAME)):
            with open(os.path.join(self.outside, name), 'w') as f:
                f.write(text)
        for d in ('run', 'work', 'target', 'bin'):
            os.mkdir(os.path.join(self.outside, d))
        evil = os.path.join(self.outside, 'bin', 'outside-only')
        with open(evil, 'w') as f:
            f.write('#!/bin/sh\necho ran the host binary\n')
        os.chmod(evil, 0o755)
        self.outside_before = tree_state(self.outside)

    def tearDown(self):
        try:
            self.assert_outside_untouched()
        finally:
            super().tearDown()

    def assert_outside_untouched(self):
        self.assertEqual(self.mounts_under(self.outside), [], 'something was mounted outside the root')
        after = tree_state(self.outside)
        changed = {k: (self.outside_before.get(k), after.get(k)) for k in set(after) | set(self.outside_before)
                   if self.outside_before.get(k) != after.get(k)}
        self.assertEqual(changed, {}, f'the host directory {self.outside} changed')

    def escaping(self, relative_depth=False):
        """How the image's symlinks name the outside directory: absolute, or enough '..' to climb
        out of the root file system from anywhere."""
        if relative_depth:
            return '../' * 40 + self.outside.lstrip('/')
        return self.outside

    def image(self, links, extra=None):
        """A builder whose image has @links: {path in the image: symlink target}."""
        def change(root):
            for rel, target in links.items():
                path = os.path.join(root, rel)
                if os.path.lexists(path):
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.rename(path, path + '.orig')
                    else:
                        os.unlink(path)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.symlink(target, path)
            if extra:
                extra(root)
        return self.builder(extra=change)

    # -- files kilnd reads from the image ---------------------------------------------------

    def test_passwd_and_group_symlinks_out(self):
        for relative in (False, True):
            out = self.escaping(relative)
            b = self.image({'etc/passwd': f'{out}/passwd', 'etc/group': f'{out}/group'})
            code, stdout, err = self.krun('--user', 'hostonly', b, 'id', '-u')
            self.assertNotEqual(stdout.strip(), '4242', 'kilnd resolved the user from the host\'s file')
            self.assertEqual(code, 125, f'an unknown user: {stdout!r} {err!r}')
            self.assertIn('hostonly', err)
            # "builder" is in the host's file as 4343, in hostgrp 4444: none of that may show up.
            code, stdout, err = self.krun('--user', 'builder', b, 'sh', '-c', 'id -u; id -G')
            self.assertNotIn('4343', stdout)
            self.assertNotIn('4444', stdout)
            # Numbers need no lookup: the run works, with no groups from the host's file.
            code, stdout, err = self.krun('--user', '1000', b, 'id', '-G')
            self.assertEqual(code, 0, err)
            self.assertNotIn('4444', stdout)

    def test_passwd_symlink_to_host_shadow(self):
        b = self.image({'etc/passwd': '/etc/shadow', 'etc/group': '/etc/gshadow'})
        # Whatever kiln makes of a missing /etc/passwd, the host's shadow file is no user database
        # for the image: no host user may resolve.
        code, stdout, err = self.krun('--user', 'daemon', b, 'id', '-u')
        self.assertEqual(code, 125, f'"daemon" exists only on the host: {stdout!r} {err!r}')

    def test_passwd_symlink_inside_root_works(self):
        # Links that stay inside are followed as the container would: absolute ones from its root.
        for target in ('/usr/lib/passwd', '../usr/lib/passwd', '../../../../usr/lib/passwd'):
            def move(root, target=target):
                os.makedirs(os.path.join(root, 'usr', 'lib'), exist_ok=True)
                os.rename(os.path.join(root, 'etc', 'passwd'), os.path.join(root, 'usr', 'lib', 'passwd'))
                os.symlink(target, os.path.join(root, 'etc', 'passwd'))
            b = self.builder(extra=move)
            self.assertEqual(self.run_ok('--user', 'builder', b, 'id', '-u'), '1000\n', target)

    def test_passwd_fifo_does_not_hang(self):
        b = self.builder(extra=lambda root: (os.unlink(os.path.join(root, 'etc', 'passwd')),
                                             os.mkfifo(os.path.join(root, 'etc', 'passwd'))))
        started = time.monotonic()
        code, _, err = self.krun('--user', 'builder', b, 'true', timeout=60)
        self.assertLess(time.monotonic() - started, 20, 'a FIFO as /etc/passwd held the run')
        self.assertEqual(code, 125, err)
        started = time.monotonic()
        self.list_builders()
        self.assertLess(time.monotonic() - started, 5, 'kilnd stopped answering')

    def test_passwd_huge_is_bounded(self):
        def huge(root):
            path = os.path.join(root, 'etc', 'passwd')
            with open(path, 'a') as f:
                f.truncate(4 * 1024 * 1024 * 1024)  # sparse
        b = self.builder(extra=huge)
        rss_before = self.kilnd_rss()
        started = time.monotonic()
        code, _, err = self.krun('--user', 'builder', b, 'true', timeout=120)
        self.assertLess(time.monotonic() - started, 30, 'a 4 GiB /etc/passwd was read through')
        self.assertLess(self.kilnd_rss() - rss_before, 64 * 1024 * 1024, 'kilnd read the file into memory')

    def kilnd_rss(self):
        with open(f'/proc/{self.kilnd_pid()}/status') as f:
            return int(kr.parse_status(f.read())['VmRSS'].split()[0]) * 1024

    # -- files kilnd generates -----------------------------------------------------------

    def test_generated_files_symlinks_out(self):
        for relative in (False, True):
            out = self.escaping(relative)
            b = self.image({'etc/hosts': f'{out}/hosts', 'etc/resolv.conf': f'{out}/resolv.conf',
                            'etc/hostname': f'{out}/hostname', 'run': f'{out}/run'})
            stdout = self.sh(b, 'cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /run/.containerenv')
            self.assertIn(b.id[:12], stdout)
            self.assertNotIn('outside', stdout)
            self.assertIn(f'id="{b.id}"', stdout)
            # The image's own files (through its own links) are left as they were, and a run that
            # does not generate them reads what the image has: here, nothing.
            code, stdout, _ = self.krun('--no-hosts', '--no-hostname', b, 'cat', '/etc/hosts', '/etc/hostname')
            self.assertNotIn('outside', stdout)

    def test_etc_symlinks_out(self):
        b = self.image({'etc': self.outside})
        code, stdout, err = self.krun(b, 'sh', '-c', 'cat /etc/hosts /etc/resolv.conf /etc/hostname')
        self.assertNotIn('outside', stdout)
        code, stdout, err = self.krun('--user', 'hostonly', b, 'id', '-u')
        self.assertNotEqual(stdout.strip(), '4242')
        self.assertEqual(code, 125, err)

    def test_host_hosts_file_unchanged(self):
        # The brief's own example: etc/hosts -> /etc/hosts, the host's real file.
        with open('/etc/hosts', 'rb') as f:
            content = f.read()
        st = os.stat('/etc/hosts')
        b = self.image({'etc/hosts': '/etc/hosts', 'etc/resolv.conf': '/etc/resolv.conf'})
        # In the root file system these links point at themselves: the run may fail (a loop),
        # but if it runs, it sees the generated file; either way the host's files stay as they were.
        code, stdout, err = self.krun(b, 'cat', '/etc/hosts')
        if code == 0:
            self.assertIn(b.id[:12], stdout)
        else:
            self.assertEqual(code, 125, err)
            self.assertIn('/etc/hosts', err)
        with open('/etc/hosts', 'rb') as f:
            self.assertEqual(f.read(), content)
        self.assertEqual((os.stat('/etc/hosts').st_mtime_ns, os.stat('/etc/hosts').st_ino),
                         (st.st_mtime_ns, st.st_ino))
        self.assertEqual(self.mounts_under('/etc/hosts') + self.mounts_under('/etc/resolv.conf'), [])

    # -- paths kilnd creates --------------------------------------------------------------

    def test_working_dir_symlink_out(self):
        for relative in (False, True):
            out = self.escaping(relative)
            b = self.image({'w': f'{out}/work', 'w2': out})
            for wd in ('/w/sub', '/w/sub/deeper', '/w2/created', '/w'):
                code, stdout, err = self.krun('--workingdir', wd, b, 'sh', '-c', 'pwd; ls -A')
                self.assertNotIn('passwd', stdout, f'--workingdir {wd} listed the host directory')
            code, stdout, err = self.krun('--user', '1000', '--workingdir', '/w/owned', b, 'true')
            self.assert_outside_untouched()

    def test_volume_target_symlink_out(self):
        src = self.unique_scratch_dir('vol-src')
        with open(os.path.join(src, 'from-volume'), 'w') as f:
            f.write('volume\n')
        for relative in (False, True):
            out = self.escaping(relative)
            b = self.image({'mnt': f'{out}/target', 'mnt2': out})
            results = []
            for target in ('/mnt', '/mnt/sub', '/mnt2/new/deep'):
                code, stdout, err = self.krun('-v', f'{src}:{target}', b, 'sh', '-c',
                                              f'cat {target}/from-volume && touch {target}/written')
                results.append((target, code, stdout, err))
                self.assert_outside_untouched()
            for target, code, stdout, err in results:
                self.assertEqual((code, stdout), (0, 'volume\n'), f'-v {src}:{target}: {err}')
            if os.path.exists(os.path.join(src, 'written')):
                os.unlink(os.path.join(src, 'written'))

    def test_mount_target_symlink_out(self):
        src = self.unique_scratch_dir('mount-src')
        for relative in (False, True):
            out = self.escaping(relative)
            b = self.image({'mnt': f'{out}/target'})
            code, stdout, err = self.krun('--mount', 'type=tmpfs,destination=/mnt/t', b, 'sh', '-c',
                                          'touch /mnt/t/x && echo ok')
            self.assert_outside_untouched()
            self.assertEqual((code, stdout), (0, 'ok\n'), err)
            code, stdout, err = self.krun('--mount', f'type=bind,source={src},destination=/mnt/b,rw', b, 'sh', '-c',
                                          'touch /mnt/b/y && echo ok')
            self.assert_outside_untouched()
            self.assertEqual((code, stdout), (0, 'ok\n'), err)
            if os.path.exists(os.path.join(src, 'y')):
                os.unlink(os.path.join(src, 'y'))

    def test_path_lookup_stays_inside(self):
        b = self.image({'usr/local/bin': f'{self.outside}/bin'})
        code, stdout, err = self.krun(b, 'outside-only')
        self.assertNotIn('ran the host binary', stdout)
        self.assertEqual(code, 127, f'a command only on the host: {err!r}')


kr.parametrize(globals(), RunSecurity)

if __name__ == '__main__':
    kt.main()
