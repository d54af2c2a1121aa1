#!/usr/bin/env python3
"""libkiln-1 as a desktop tool uses it: examples/kiln-run.py, in Debian's Python with PyGObject
and the Kiln-1 typelib of the build, creates a builder from a directory it opens itself, runs a
command with its output on the script's own descriptors, and removes the builder — as root and
as kiln-alice (in her user namespace); a caller polkit refuses gets kilnd's error name."""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_harness as kh  # noqa: E402
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module

# Debian's interpreter: python3-gi is installed for it, whatever python3 is first in PATH.
PYTHON = '/usr/bin/python3'
EXAMPLE = os.path.join(kh.SOURCE_ROOT, 'examples', 'kiln-run.py')


def sanitizer_preload(library):
    """A sanitizer build's library loads into an uninstrumented Python only after the sanitizer
    runtimes (ASan must come first); Python's own allocations are not the library's leaks."""
    ldd = subprocess.run(['ldd', library], capture_output=True, text=True, check=True).stdout
    runtimes = [line.split('=>')[1].split()[0] for line in ldd.splitlines()
                if re.search(r'lib(asan|ubsan)\.so', line) and '=>' in line]
    if not runtimes:
        return {}
    runtimes.sort(key=lambda path: 'asan' not in path)
    options = os.environ.get('ASAN_OPTIONS', '')
    return {'LD_PRELOAD': ' '.join(runtimes), 'ASAN_OPTIONS': f'{options}:detect_leaks=0'.lstrip(':')}


def readable_rootfs(path):
    """The run rootfs, readable by everyone (kilnd imports it as the caller)."""
    os.chmod(os.path.join(path, 'root'), 0o755)


class LibKiln(kr.RunTestCase):
    isolation = 'oci'

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(kh.BUILD_ROOT, 'lib', 'Kiln-1.typelib')):
            raise unittest.SkipTest('built without GObject Introspection (-Dintrospection)')

    def example(self, *args, user=None):
        lib = os.path.join(kh.BUILD_ROOT, 'lib')
        env = {'GI_TYPELIB_PATH': lib, 'LD_LIBRARY_PATH': lib}
        env.update(sanitizer_preload(os.path.join(lib, 'libkiln-1.so')))
        return self.env.run([PYTHON, EXAMPLE] + list(args), user=user, env=env)

    def test_example_as_root(self):
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=readable_rootfs)
        code, out, err = self.example(rootfs, 'sh', '-c', 'echo out; echo err >&2; exit 3')
        self.assertEqual((code, out), (3, 'out\n'), err)
        self.assertIn('err\n', err)
        self.assertRegex(err, r'builder rootfs-\d+-working-container \([0-9a-f]{12}\)')
        self.assertEqual(self.list_builders(), [], 'the example removes its builder')

    def test_example_as_alice(self):
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=readable_rootfs)
        code, out, err = self.example(rootfs, 'sh', '-c', 'id -u; cat /proc/self/uid_map', user=kt.ALICE)
        self.assertEqual(code, 0, err)
        lines = out.split('\n')
        self.assertEqual(lines[0], '0')
        self.assertEqual(lines[1].split()[:2], ['0', str(self.uid(kt.ALICE))], out)
        self.assertEqual(self.list_builders(), [])

    def test_refusal_reaches_the_tool_by_name(self):
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=readable_rootfs)
        code, out, err = self.example(rootfs, 'true', user=kt.BOB)
        self.assertNotEqual(code, 0)
        self.assertTrue(kt.E_INTERACTIVE in err or kt.E_ACCESS_DENIED in err, err)
        self.assertEqual(self.list_builders(), [])


if __name__ == '__main__':
    kt.main()
