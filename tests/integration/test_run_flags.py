#!/usr/bin/env python3
"""kiln run's flags for the Run options that had none, named as buildah names them; each is seen
from inside the container, so the flag is known to reach kilnd.

- --shm-size: the size of /dev/shm.
- --security-opt seccomp=unconfined (root): Seccomp: 0 in /proc/self/status, 2 without it.
- --security-opt no-new-privileges[=true|false]: NoNewPrivs in /proc/self/status.
- --userns host (root, on a builder whose runs are otherwise mapped): the identity uid_map.
- Any other --security-opt is a usage error (exit 125) naming it, and nothing runs.
- --no-ask-password is taken before and after BUILDER, and is the command's own after its first word.
"""
import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

setUpModule = tu.setUpModule
tearDownModule = tu.tearDownModule


def status_field(text, name):
    for line in text.splitlines():
        if line.startswith(name + ':'):
            return line.split(':', 1)[1].strip()
    raise AssertionError(f'no {name} in {text!r}')


class RunFlagsCases(kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder

    def status(self, b, *options, **kwargs):
        return self.sh(b, 'cat /proc/self/status', *options, **kwargs)

    def test_shm_size(self):
        b = self.builder()
        for size, kib in (('7m', 7168), ('3000k', 3000)):
            with self.subTest(size=size):
                out = self.sh(b, 'df -k /dev/shm | tail -n 1', '--shm-size', size)
                self.assertEqual(int(out.split()[1]), kib, out)
        out = self.sh(b, 'df -k /dev/shm | tail -n 1')
        self.assertNotIn(int(out.split()[1]), (7168, 3000), out)

    def test_security_opt_seccomp_unconfined(self):
        b = self.builder()
        self.assertEqual(status_field(self.status(b), 'Seccomp'), '2')
        self.assertEqual(status_field(self.status(b, '--security-opt', 'seccomp=unconfined'), 'Seccomp'), '0')

    def test_security_opt_no_new_privileges(self):
        b = self.builder()
        self.assertEqual(status_field(self.status(b), 'NoNewPrivs'), '0')
        for options, expected in ((['--security-opt', 'no-new-privileges'], '1'),
                                  (['--security-opt=no-new-privileges=true'], '1'),
                                  (['--security-opt', 'no-new-privileges=true',
                                    '--security-opt', 'no-new-privileges=false'], '0'),
                                  (['--security-opt', 'seccomp=unconfined',
                                    '--security-opt', 'no-new-privileges'], '1')):
            with self.subTest(options=options):
                self.assertEqual(status_field(self.status(b, *options), 'NoNewPrivs'), expected)

    def test_userns_host(self):
        b = self.alices_builder()
        mapped = self.sh(b, 'cat /proc/self/uid_map')
        self.assertNotEqual(mapped.split(), ['0', '0', '4294967295'])
        out = self.sh(b, 'cat /proc/self/uid_map', '--userns', 'host')
        self.assertEqual(out.split(), ['0', '0', '4294967295'])

    def test_bad_security_opt_is_a_usage_error(self):
        b = self.builder()
        for value in ('apparmor=unconfined', 'label=disable', 'seccomp=', 'no-new-privileges=maybe', 'mask=/x'):
            with self.subTest(value=value):
                code, out, err = self.krun('--security-opt', value, b, 'echo', 'ran')
                self.assertEqual((code, out), (125, ''), err)
                self.assertIn(f"'{value}'", err)
                self.assertIn('kiln: run:', err)

    def test_no_ask_password_around_builder_not_in_the_command(self):
        b = self.builder()
        out = self.run_ok('--no-ask-password', b, '--no-ask-password=true', 'echo', '--no-ask-password')
        self.assertEqual(out, '--no-ask-password\n')
        out = self.run_ok(b, '--', 'echo', '--no-ask-password=false')
        self.assertEqual(out, '--no-ask-password=false\n')


kr.parametrize(globals(), RunFlagsCases)

if __name__ == '__main__':
    kt.main()
