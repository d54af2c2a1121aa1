#!/usr/bin/env python3
"""Volumes and mounts as an attacker with only org.kiln.builder1.run uses them (kiln-alice).

- Every option of a volume that weakens isolation (U, which chowns the source as root; a source
  alice cannot read), said every way there is (`-v` / `volumes`, `--mount type=bind` with U in any
  position, a builder's `volumes` set by Configure, `volume_fds`), needs run-privileged: the call is
  refused by polkit and the host tree keeps its owner.
- A volume descriptor that is not a directory or a regular file (alice's O_PATH|O_NOFOLLOW of her
  own symlink to a host mount point, a socket, a FIFO) is InvalidArgument naming volume_fds[N], and
  the host mount point behind the symlink stays mounted.
- --mount keys of an overlay (lowerdir=, upperdir=, workdir=) never reach the runtime.
- A path only reachable through kilnd's own descriptors (/proc/self/fd/N, resolved as kilnd) is
  refused; a source alice cannot read, once run-privileged is granted, is bound from a descriptor
  kilnd staged in the bundle, never handed to the runtime as alice's path.
"""
import json
import os
import stat
import subprocess

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

setUpModule = tu.setUpModule
tearDownModule = tu.tearDownModule

REFUSED_BY_POLKIT = (kt.E_ACCESS_DENIED, kt.E_INTERACTIVE)

# Run by kiln-alice: kiln_testlib's own D-Bus client (it cannot read the source tree, so the text
# is passed with -c), plus descriptors of kinds rawcall cannot open.
_FD_CLIENT = r'''

def _fd_call_main(address, spec_json):
    """One call whose 'h' values index descriptors this process makes: {'open': PATH, 'flags': [...]}
    (names of os.O_*), {'socket': true}."""
    spec = json.loads(spec_json)
    fds, keep = [], []
    for d in spec['fds']:
        if 'open' in d:
            flags = os.O_CLOEXEC
            for name in d['flags']:
                flags |= getattr(os, name)
            fds.append(os.open(d['open'], flags))
        else:
            a, b = socket.socketpair()
            keep += [a, b]
            fds.append(a.fileno())
    conn = _Connection(address)
    conn.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
    reply, _ = conn.call_and_wait(BUS_NAME, spec['path'], spec['interface'], spec['member'], spec['signature'],
                                  spec['args'], fds=fds)
    print(json.dumps(reply, default=str), flush=True)
    return 0


if __name__ == '__main__' and sys.argv[1] == 'fdcall':
    sys.exit(_fd_call_main(sys.argv[2], sys.argv[3]))
'''


def tree_owners(root):
    """(path, uid, gid) of @root and everything in it, symlinks not followed."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [''] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            out.append((path, st.st_uid, st.st_gid))
    return sorted(out)


class SecurityVolumesCases(kr.RunTestCase):

    def setUp(self):
        super().setUp()
        self.set_trusted(False)

    def tearDown(self):
        self.set_trusted(False)
        super().tearDown()

    # test_userns's helpers (its parametrized classes carry them): run-privileged for kiln-alice, builders
    # alice made herself.
    set_trusted = tu.UsernsCases_oci.set_trusted
    alices_builder = tu.UsernsCases_oci.alices_builder

    def fd_call(self, b, argv, options, fds, user=kt.ALICE):
        """RunCaptured as @user with descriptors (see _FD_CLIENT): the reply as a dict."""
        with open(kt.__file__) as f:
            source = f.read() + _FD_CLIENT
        spec = {'path': b.path, 'interface': kt.BUILDER_IFACE, 'member': 'RunCaptured', 'signature': 'asa{sv}',
                'args': [argv, options], 'fds': fds}
        code, out, err = self.env.run([kt.USER_PYTHON, '-c', source, 'fdcall', self.env.bus_address,
                                       json.dumps(spec)], user=user)
        self.assertEqual(code, 0, f'fd call as {user}: {err}')
        return json.loads(out)

    def volume_fd_options(self, destination, options=''):
        return {'volume_fds': ['a(hss)', [[0, destination, options]]]}

    def assert_reply_error(self, reply, names, *fragments):
        self.assertEqual(reply['type'], 'error', reply)
        self.assertIn(reply.get('error_name'), names, reply)
        message = reply['body'][0] if reply.get('body') else ''
        for fragment in fragments:
            self.assertIn(fragment, message, reply)

    def victim_tree(self):
        """A root-owned tree alice may read (so U is the only thing that weakens anything)."""
        victim = self.unique_scratch_dir('victim')
        os.mkdir(os.path.join(victim, 'sub'), 0o755)
        with open(os.path.join(victim, 'sub', 'file'), 'w') as f:
            f.write('root\'s\n')
        os.symlink('/etc/shadow', os.path.join(victim, 'link'))
        return victim

    def secret_dir(self):
        """A root-owned directory alice may not read (0700), with a file in it."""
        secret = self.unique_scratch_dir('secret')
        with open(os.path.join(secret, 'file'), 'w') as f:
            f.write('secret\n')
        os.chmod(secret, 0o700)
        return secret

    # -- every weakening through every way of saying it ------------------------------------------

    def weakening_requests(self, victim, secret):
        """(label, how, what, argument the refusal names): how is 'volumes', 'mounts', 'builder',
        'fd' (a descriptor opened by alice: 'what' is (path, flags, destination, options)) or 'cli'."""
        chown = [
            ('-v U', 'volumes', f'{victim}:/v:U', 'volumes[0]'),
            ('-v ro,U', 'volumes', f'{victim}:/v:ro,U', 'volumes[0]'),
            ('-v U,z second', 'volumes', [f'{victim}/sub:/w', f'{victim}:/v:U,z'], 'volumes[1]'),
            ('--mount U last', 'mounts', f'type=bind,src={victim},dst=/v,U', 'mounts[0]'),
            ('--mount U first', 'mounts', f'U,type=bind,src={victim},dst=/v', 'mounts[0]'),
            ('--mount U middle', 'mounts', f'type=bind,U,source={victim},target=/v,ro', 'mounts[0]'),
            ('--mount no type', 'mounts', f'src={victim},dst=/v,U', 'mounts[0]'),
            ('--mount readonly,U', 'mounts', f'type=bind,source={victim},destination=/v,readonly,U', 'mounts[0]'),
            ('--mount O,U', 'mounts', f'type=bind,src={victim},dst=/v,O,U', 'mounts[0]'),
            ('builder volumes U', 'builder', f'{victim}:/v:U', 'builder volumes[0]'),
            ('volume_fds U', 'fd', (victim, ['O_PATH', 'O_DIRECTORY'], '/v', 'U'), 'volume_fds[0]'),
            ('volume_fds ro,U', 'fd', (victim, ['O_RDONLY', 'O_DIRECTORY'], '/v', 'ro,U'), 'volume_fds[0]'),
            ('cli -v U', 'cli', ['-v', f'{victim}:/v:U'], None),
            ('cli --mount U', 'cli', ['--mount', f'type=bind,src={victim},dst=/v,U'], None),
        ]
        unreadable = [
            ('-v unreadable', 'volumes', f'{secret}:/s', 'volumes[0]'),
            ('--mount unreadable', 'mounts', f'type=bind,src={secret},dst=/s', 'mounts[0]'),
            ('--mount unreadable file', 'mounts', f'type=bind,src={secret}/file,dst=/s', 'mounts[0]'),
            ('builder volumes unreadable', 'builder', f'{secret}:/s:ro', 'builder volumes[0]'),
            # O_PATH needs nothing of the directory itself: alice can name it, not read it.
            ('volume_fds unreadable', 'fd', (secret, ['O_PATH', 'O_DIRECTORY'], '/s', ''), 'volume_fds[0]'),
            ('cli -v unreadable', 'cli', ['-v', f'{secret}:/s'], None),
        ]
        return chown + unreadable

    def ask(self, b, how, what):
        """Makes the request; returns (error name or None, message, cli exit status or None)."""
        if how == 'cli':
            code, out, err = self.krun(*what, b.name, 'true', user=kt.ALICE)
            return None, err, code
        if how == 'fd':
            path, flags, destination, options = what
            reply = self.fd_call(b, ['true'], self.volume_fd_options(destination, options),
                                 [{'open': path, 'flags': flags}])
            return reply.get('error_name'), (reply.get('body') or [''])[0], None
        if how == 'builder':
            r = self.configure(b.path, {'volumes': [what]}, user=kt.ALICE)
            self.assertTrue(r.ok, r)
            r = self.captured(b, ['true'], user=kt.ALICE)
            self.assertTrue(self.configure(b.path, {'volumes': []}, user=kt.ALICE).ok)
        else:
            r = self.captured(b, ['true'], {how: what if isinstance(what, list) else [what]}, user=kt.ALICE)
        return r.error_name, r.message or r.err, None

    def test_every_weakening_spelling_needs_run_privileged(self):
        b = self.alices_builder()
        victim, secret = self.victim_tree(), self.secret_dir()
        owners, secret_owners = tree_owners(victim), tree_owners(secret)
        self.assertTrue(all(uid == 0 and gid == 0 for _, uid, gid in owners))
        for label, how, what, arg in self.weakening_requests(victim, secret):
            with self.subTest(request=label):
                name, message, code = self.ask(b, how, what)
                if how == 'cli':
                    self.assertEqual(code, 125, message)
                    self.assertIn('org.kiln.builder1.run-privileged', message)
                else:
                    self.assertIn(name, REFUSED_BY_POLKIT, f'{label}: {name}: {message}')
                    self.assertIn('run-privileged', message)
                    self.assertIn(arg, message, 'the refusal names the entry that weakens')
                # What an attacker would look at: nobody chowned the host's tree.
                self.assertEqual(tree_owners(victim), owners, f'{label} changed owners on the host')
                self.assertEqual(tree_owners(secret), secret_owners)
                self.assertEqual(self.props(b.path)['Processes'], [])

    # -- descriptors that are not directories or regular files --------------------------------------

    def host_mount_point(self):
        """A tmpfs mounted by root in a scratch directory: a host mount point alice may not touch."""
        point = self.unique_scratch_dir('host-mount')
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'kiln-victim', point], check=True)
        with open(os.path.join(point, 'marker'), 'w') as f:
            f.write('mounted\n')
        return point

    def alices_dir(self):
        d = self.unique_scratch_dir('alice')
        os.chown(d, self.uid(kt.ALICE), -1)
        return d

    def alices_fifo(self):
        fifo = os.path.join(self.alices_dir(), 'fifo')
        os.mkfifo(fifo, 0o600)
        os.chown(fifo, self.uid(kt.ALICE), -1)
        return fifo

    def test_symlink_descriptor_to_a_host_mount_point_is_refused(self):
        b = self.alices_builder()
        point = self.host_mount_point()
        try:
            link = os.path.join(self.alices_dir(), 'link')
            code, out, err = self.env.run(['ln', '-s', point, link], user=kt.ALICE)
            self.assertEqual(code, 0, err)
            self.assertEqual(os.lstat(link).st_uid, self.uid(kt.ALICE))
            reply = self.fd_call(b, ['true'], self.volume_fd_options('/v'),
                                 [{'open': link, 'flags': ['O_PATH', 'O_NOFOLLOW']}])
            # The host's mount is still there: nothing unmounted it through the link (a run that
            # was not refused had its clean-up done by the time the reply came).
            self.assertEqual(self.mounts_under(point), [point], 'the host mount point was unmounted')
            with open(os.path.join(point, 'marker')) as f:
                self.assertEqual(f.read(), 'mounted\n')
            self.assert_reply_error(reply, (kt.E_INVALID,), 'volume_fds[0]')
            self.assertEqual(self.props(b.path)['Processes'], [])
        finally:
            subprocess.run(['umount', point], check=False)

    def test_socket_and_fifo_descriptors_are_refused(self):
        b = self.alices_builder()
        fifo = self.alices_fifo()
        for label, fd in (('socket', {'socket': True}),
                          ('fifo', {'open': fifo, 'flags': ['O_RDWR', 'O_NONBLOCK']}),
                          ('fifo O_PATH', {'open': fifo, 'flags': ['O_PATH']}),
                          ('device', {'open': '/dev/null', 'flags': ['O_RDONLY']})):
            with self.subTest(descriptor=label):
                reply = self.fd_call(b, ['true'], self.volume_fd_options('/v'), [fd])
                self.assert_reply_error(reply, (kt.E_INVALID,), 'volume_fds[0]', 'not a directory or a regular file')
                self.assertEqual(self.props(b.path)['Processes'], [])

    def test_fifo_named_by_path_is_refused(self):
        b = self.alices_builder()
        fifo = self.alices_fifo()
        for key, value, arg in (('volumes', f'{fifo}:/v', 'volumes[0]'),
                                ('mounts', f'type=bind,src={fifo},dst=/v', 'mounts[0]')):
            with self.subTest(key=key):
                r = self.captured(b, ['true'], {key: [value]}, user=kt.ALICE)
                self.assertError(r, kt.E_INVALID, [arg, 'not a directory or a regular file'])

    # -- overlay keys --------------------------------------------------------------------------------

    def test_overlay_keys_in_a_mount_are_refused(self):
        b = self.alices_builder()
        src = self.unique_scratch_dir('overlay-src')
        for option, key in (('O,lowerdir=/etc', 'lowerdir'), ('O,upperdir=/tmp/u,workdir=/tmp/w', 'upperdir'),
                            ('lowerdir=/etc', 'lowerdir'), ('O,workdir=/tmp/w', 'workdir')):
            with self.subTest(option=option):
                r = self.captured(b, ['cat', '/v/shadow'], {'mounts': [f'type=bind,src={src},dst=/v,{option}']},
                                  user=kt.ALICE)
                self.assertError(r, kt.E_INVALID, ['mounts[0]', key])
                self.assertEqual(self.props(b.path)['Processes'], [])

    # -- paths that are never alice's --------------------------------------------------------------

    def test_kilnds_own_descriptors_are_not_volume_sources(self):
        # kilnd holds descriptors of its own directories (state, bundles), which alice cannot
        # enter; /proc/self/fd/N resolved inside kilnd would name them. (A running volume's source
        # is closed once its container runs, so kilnd's own directories are what it holds for sure.)
        held = {fd: target for fd, target in self.kilnd_fds().items()
                if target.startswith(self.env.dir + '/') and os.path.isdir(target)}
        self.assertTrue(held, 'kilnd holds no descriptor of its own directories: the test would prove nothing')
        mine = self.alices_builder()
        for fd, target in held.items():
            for key, value, arg in (('volumes', f'/proc/self/fd/{fd}:/v', 'volumes[0]'),
                                    ('mounts', f'type=bind,src=/proc/self/fd/{fd},dst=/v', 'mounts[0]')):
                with self.subTest(fd=fd, target=target, key=key):
                    r = self.captured(mine, ['ls', '/v'], {key: [value]}, user=kt.ALICE)
                    self.assertEqual(r.out, '')
                    self.assertError(r, kt.E_INVALID, [arg])

    def test_unreadable_source_is_staged_not_named_to_the_runtime(self):
        b = self.alices_builder()
        secret = self.secret_dir()
        self.set_trusted(True)  # run-privileged: alice may bind what she cannot read
        proc = self.start(b, ['sh', '-c', 'cat /s/file; sleep 30'], {'volumes': [f'{secret}:/s:ro']},
                          user=kt.ALICE)
        try:
            self.wait_running(proc)
            bundles = os.path.join(self.run_dir, 'bundles')
            configs = [os.path.join(bundles, d, 'config.json') for d in os.listdir(bundles)]
            self.assertEqual(len(configs), 1, configs)
            with open(configs[0]) as f:
                mounts = json.load(f)['mounts']
            volume = [m for m in mounts if m['destination'] == '/s']
            self.assertEqual(len(volume), 1, mounts)
            # The runtime binds what kilnd staged in the bundle, never alice's path.
            self.assertTrue(volume[0]['source'].startswith(os.path.dirname(configs[0]) + '/'), volume)
            self.assertNotIn(secret, json.dumps(mounts))
            st = os.lstat(volume[0]['source'])
            self.assertTrue(stat.S_ISDIR(st.st_mode))
        finally:
            self.kill_process(proc, 'KILL')
            self.wait_process(proc)


kr.parametrize(globals(), SecurityVolumesCases)

if __name__ == '__main__':
    kt.main()
