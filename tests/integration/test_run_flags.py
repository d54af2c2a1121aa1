#!/usr/bin/env python3
"""kiln run's flags for the Run options that had none, named as buildah names them; each is seen
from inside the container, so the flag is known to reach kilnd.

- --shm-size: the size of /dev/shm.
- --security-opt seccomp=unconfined (root): Seccomp: 0 in /proc/self/status, 2 without it.
- --security-opt no-new-privileges[=true|false]: NoNewPrivs in /proc/self/status.
- --userns host (root, on a builder whose runs are otherwise mapped): the identity uid_map.
- Any other --security-opt is a usage error (exit 125) naming it, and nothing runs.
- --no-ask-password is taken before and after BUILDER, and is the command's own after its first word.
- --runtime-flag debug: the runtime's (runc's, or kiln-isolate's) debug lines about the run reach the
  caller's stderr, "RUNTIME: debug: ...", and none without it (root, and kiln-alice with
  run-privileged, whose runtime runs inside kiln-runtime-ns). The runtime's --log and --log-format are
  kilnd's: a caller's is InvalidArgument naming runtime_args[0], and the runtime never writes there.
"""
import os

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
    set_trusted = tu.UsernsCases_oci.set_trusted

    def tearDown(self):
        self.set_trusted(False)
        super().tearDown()

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


    # -- what the runtime says (issue 12 item 5) ----------------------------------------

    def assert_runtime_debug_relayed(self, b, user=None):
        code, out, err = self.krun(b, 'echo', 'ran', user=user)
        self.assertEqual((code, out), (0, 'ran\n'), err)
        self.assertNotIn(': debug: ', err)
        code, out, err = self.krun('--runtime-flag', 'debug', b, 'echo', 'ran', user=user)
        self.assertEqual((code, out), (0, 'ran\n'), err)
        debug = [line for line in err.splitlines() if ': debug: ' in line]
        self.assertTrue(debug, err)
        runtime = 'kiln-isolate' if self.isolation == 'chroot' else 'run'  # runc, or kiln-runtime-ns
        self.assertTrue(all(line.startswith(('runc', 'crun', 'kiln-')) for line in debug), debug)
        self.assertTrue(any(runtime in line for line in debug), debug)

    def test_runtime_flag_debug_is_relayed(self):
        self.assert_runtime_debug_relayed(self.builder())

    def test_runtime_flag_debug_is_relayed_for_alice(self):
        self.set_trusted(True)
        self.assert_runtime_debug_relayed(self.alices_builder(), user=kt.ALICE)

    def test_runtime_log_flags_are_refused(self):
        b = self.builder()
        log = os.path.join(self.unique_scratch_dir('log'), 'runtime.log')
        for args in (['--log', log], [f'--log={log}'], ['--log-format', 'text'], ['--log-format=text']):
            with self.subTest(args=args):
                r = self.captured(b, ['echo', 'ran'], {'runtime_args': args})
                self.assertError(r, kt.E_INVALID, ['runtime_args[0]', "kilnd's own"])
                self.assertFalse(os.path.exists(log))
        code, out, err = self.krun('--runtime-flag', f'log={log}', b, 'echo', 'ran')
        self.assertNotEqual(code, 0)
        self.assertEqual(out, '')
        self.assertIn('runtime_args[0]', err)
        self.assertFalse(os.path.exists(log))


kr.parametrize(globals(), RunFlagsCases)

if __name__ == '__main__':
    kt.main()
