#!/usr/bin/env python3
"""--secret id=ID,src=FILE|env=VAR and --mount type=secret, as BuildKit's RUN --mount=type=secret; both
executors, root and kiln-alice (user namespace).

- The CLI reads the secret as the caller and hands kilnd a sealed memfd; inside, the file at
  /run/secrets/ID (or target=) holds exactly its bytes, read-only, on a tmpfs of its own, owned and
  moded as uid=, gid=, mode= say (default 0:0, 0400).
- The secret's bytes are never on disk nor in kilnd's files: while the run holds the secret, no file
  of the builder's upper dir or of kilnd's runtime directory (outside the secret's own tmpfs) holds
  them, and after the run none under the runtime directory, the state directory or kilnd's log.
- A required secret that was not given is InvalidArgument naming mounts[0], and nothing ran; one not
  required is simply not mounted. A secret descriptor that is not a sealed memfd is InvalidArgument
  naming secrets[ID]; a mount without id, or with an unknown key, InvalidArgument naming mounts[0].
"""
import os
import secrets as pysecrets
import subprocess

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

setUpModule = tu.setUpModule
tearDownModule = tu.tearDownModule


def files_holding(root, needle, one_file_system=False):
    """Files under @root whose bytes contain @needle (with @one_file_system, not crossing mounts)."""
    found = []
    root_dev = os.lstat(root).st_dev
    for dirpath, dirnames, filenames in os.walk(root):
        if one_file_system:
            dirnames[:] = [d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == root_dev]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                with open(path, 'rb') as f:
                    if needle in f.read():
                        found.append(path)
            except OSError:
                pass
    return found


class RunSecretCases(kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder
    upper_dir = tu.UsernsCases_oci.upper_dir

    def secret_file(self, owner=None):
        token = 'kiln-secret-' + pysecrets.token_hex(16)
        path = os.path.join(self.unique_scratch_dir('secret'), 'token')
        with open(path, 'w') as f:
            f.write(token)
        os.chmod(path, 0o600)
        if owner:
            os.chown(path, owner.pw_uid, owner.pw_gid)
            os.chown(os.path.dirname(path), owner.pw_uid, owner.pw_gid)
        return token, path

    def assert_secret(self, b, user=None, owner=None):
        token, path = self.secret_file(owner)
        out = self.sh(b, 'cat /run/secrets/tok; echo; stat -c %u:%g:%a /run/secrets/tok; '
                         'grep " /run/secrets/tok " /proc/self/mountinfo',
                      '--secret', f'id=tok,src={path}', '--mount', 'type=secret,id=tok', user=user)
        lines = out.splitlines()
        self.assertEqual(lines[:2], [token, '0:0:400'])
        self.assertIn(' - tmpfs ', lines[2])
        self.assertIn(' ro,', lines[2] + ',')
        # While a run holds it: not in the upper dir, not in kilnd's own files of the run.
        child = self.spawn('--secret', f'id=tok,src={path}', '--mount', 'type=secret,id=tok', b, '--', 'sh', '-c',
                           'cat /run/secrets/tok > /dev/null && echo ready && sleep 4', user=user)
        self.assertEqual(child.stdout.readline(), 'ready\n')
        self.assertEqual(files_holding(self.upper_dir(b), token.encode()), [])
        self.assertEqual(files_holding(self.run_dir, token.encode(), one_file_system=True), [])
        child.communicate(timeout=60)
        self.wait_until(lambda: not self.running_processes(), 30)
        self.assert_nothing_left()
        for where in (self.upper_dir(b), self.run_dir, self.state_dir):
            self.assertEqual(files_holding(where, token.encode()), [], where)
        with open(os.path.join(self.env.dir, 'kilnd.log'), 'rb') as f:
            self.assertNotIn(token.encode(), f.read())

    def test_secret(self):
        self.assert_secret(self.builder())

    def test_secret_for_alice(self):
        self.assert_secret(self.alices_builder(), user=kt.ALICE, owner=tu.pwd.getpwnam(kt.ALICE))

    def test_env_secret_with_target_owner_and_mode(self):
        b = self.alices_builder()
        out = self.sh(b, 'cat /s; echo; stat -c %u:%g:%a /s', '--secret', 'id=e,env=KILN_TEST_SECRET',
                      '--mount', 'type=secret,id=e,target=/s,uid=1000,gid=1000,mode=0440',
                      user=kt.ALICE, env={'KILN_TEST_SECRET': 'from-the-environment'})
        self.assertEqual(out.split(), ['from-the-environment', '1000:1000:440'])

    def test_missing_secrets(self):
        b = self.builder()
        r = self.captured(b, ['touch', '/ran'], {'mounts': ['type=secret,id=nope,required']})
        self.assertError(r, kt.E_INVALID, ['mounts[0]', 'nope'])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))
        out = self.sh(b, 'test -e /run/secrets/nope || echo absent', '--mount', 'type=secret,id=nope')
        self.assertEqual(out, 'absent\n')

    def test_bad_secrets_are_refused(self):
        b = self.builder()
        token, path = self.secret_file(tu.pwd.getpwnam(kt.ALICE))
        os.chmod(path, 0o644)
        reply = self.rawcall(b.path, kt.BUILDER_IFACE, 'RunCaptured', 'asa{sv}',
                             [['touch', '/ran'], {'secrets': ['a{sh}', {'tok': 0}],
                                                  'mounts': ['as', ['type=secret,id=tok']]}],
                             fd_paths=[path])
        self.assertEqual(reply.get('error_name'), kt.E_INVALID, reply)
        self.assertIn('secrets[tok]', reply['body'][0])
        self.assertIn('sealed', reply['body'][0])
        for value, fragment in (('type=secret,target=/x', 'id'), ('type=secret,id=a/b', 'id'),
                                ('type=secret,id=x,bogus=1', 'bogus'), ('type=secret,id=x,mode=9', 'mode')):
            with self.subTest(value=value):
                r = self.captured(b, ['touch', '/ran'], {'mounts': [value]})
                self.assertError(r, kt.E_INVALID, ['mounts[0]', fragment])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))
        code, out, err = self.krun('--secret', 'id=tok', b, 'true')
        self.assertEqual((code, out), (125, ''), err)


kr.parametrize(globals(), RunSecretCases)

if __name__ == '__main__':
    kt.main()
