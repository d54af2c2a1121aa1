#!/usr/bin/env python3
"""The network's gate: pasta's start-up overlaps the runtime's, and kiln-net-gate, kiln's own first
createRuntime hook, holds the command's exec until kilnd says pasta is ready (docs/network.md).

kiln.conf's [Network] Pasta= is a wrapper that records when it starts and waits 1.5 s before it execs
the real pasta (a pasta that is slow to be ready); an administrator's prestart and createRuntime hook
(hooks.d) record when they run. Under isolation oci and chroot, as root and as kiln-alice:
- the runtime runs while pasta is still starting: the prestart hook (which every runtime runs just
  before createRuntime) runs less than 1.5 s after pasta's wrapper started; kilnd used to start the
  runtime only once pasta was ready;
- the administrator's createRuntime hook runs after pasta is ready (1.5 s or more after the wrapper
  started): kiln's gate comes first among the createRuntime hooks in config.json, before hooks.d's;
- the command sees pasta's network configured (a default route in /proc/net/route).
A pasta that is never ready ([Network] HelperTimeoutSeconds=4): the run fails with RuntimeFailed naming
pasta, its package and the timeout, not the runtime's "hook" failure; the runtime had started (prestart
ran) but the administrator's createRuntime hook never ran; no kiln-net-gate or helper process, no
mount and no bundle are left, and the answer comes within the timeout and a few seconds.
A kilnd killed (SIGKILL) while the gate waits: the gate ends within seconds (an end of file on its
FIFO), and the next kilnd finds nothing left.
kiln-net-gate alone: 'r' on its FIFO is success, 'f', an end of file (the writer, kilnd, gone) or a FIFO
that has no writer at all are failures, each at once.

/dev/net/tun is 0600 on this machine (stock Debian's udev makes it 0666): the module sets it to 0666
for its runs and puts the mode back at the end.
"""
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

TUN = '/dev/net/tun'
DELAY = 1.5
TIMEOUT = 4  # [Network] HelperTimeoutSeconds: past DELAY and pasta's own start, by far
_TUN_MODE = None
_TOOLS = None

# pasta, DELAY late; or never ready when NEVER exists. Its pid is the helper's (exec).
PASTA = '''#!/bin/sh
echo "$$ $(date +%s.%N)" >> {tools}/pasta-start
if [ -e {tools}/never ]; then exec sleep 60; fi
sleep {delay}
exec {pasta} "$@"
'''

# An administrator's hook: "STAGE TIME [createRuntime hooks of config.json]" into LOG.
RECORD = r'''#!/usr/bin/python3
import json, os, sys, time
now = time.time()
state = json.load(sys.stdin)
stage, log = sys.argv[1], sys.argv[2]
with open(os.path.join(state['bundle'], 'config.json')) as f:
    hooks = json.load(f).get('hooks', {}).get('createRuntime', [])
with open(log, 'a') as f:
    f.write(json.dumps([stage, now, [h['path'] for h in hooks], [h.get('args') for h in hooks]]) + '\n')
'''


def setUpModule():
    global _TUN_MODE, _TOOLS
    _TUN_MODE = stat.S_IMODE(os.stat(TUN).st_mode)
    os.chmod(TUN, 0o666)
    _TOOLS = tempfile.mkdtemp(prefix='kiln-net-gate.')
    os.chmod(_TOOLS, 0o755)
    with open(os.path.join(_TOOLS, 'pasta'), 'w') as f:
        f.write(PASTA.format(tools=_TOOLS, delay=DELAY, pasta=shutil.which('pasta')))
    with open(os.path.join(_TOOLS, 'record'), 'w') as f:
        f.write(RECORD)
    for name in ('pasta', 'record'):
        os.chmod(os.path.join(_TOOLS, name), 0o755)
    tu.setUpModule()


def tearDownModule():
    try:
        tu.tearDownModule()
    finally:
        shutil.rmtree(_TOOLS, ignore_errors=True)
        os.chmod(TUN, _TUN_MODE)


def gate_program():
    return os.path.join(kt.ENV.build_root, 'service', 'kiln-net-gate')


def gates_running():
    found = []
    for pid in kt.process_table():
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                argv = f.read().split(b'\0')
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b'kiln-net-gate':
            found.append(pid)
    return found


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in ('Z', 'X')
    except OSError:
        return False


class GateCases(kr.ExtraConf, kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder

    @classmethod
    def conf_text(cls):
        return f'[Network]\nPasta={_TOOLS}/pasta\nHelperTimeoutSeconds={TIMEOUT}\n'

    def setUp(self):
        super().setUp()
        self.hooks_dir = os.path.join(self.env.dir, 'hooks.d')
        shutil.rmtree(self.hooks_dir, ignore_errors=True)
        os.makedirs(self.hooks_dir)
        self.log = os.path.join(_TOOLS, 'log')
        for name in ('log', 'pasta-start', 'never'):
            if os.path.exists(os.path.join(_TOOLS, name)):
                os.unlink(os.path.join(_TOOLS, name))
        for stage in ('prestart', 'createRuntime'):
            doc = {'version': '1.0.0', 'hook': {'path': os.path.join(_TOOLS, 'record'),
                                                'args': ['record', stage, self.log]},
                   'when': {'always': True}, 'stages': [stage]}
            with open(os.path.join(self.hooks_dir, f'50-{stage}.json'), 'w') as f:
                json.dump(doc, f)

    def tearDown(self):
        shutil.rmtree(self.hooks_dir, ignore_errors=True)
        super().tearDown()
        self.assertEqual(gates_running(), [])

    def records(self):
        try:
            with open(self.log) as f:
                return {r[0]: r for r in (json.loads(line) for line in f)}
        except FileNotFoundError:
            return {}

    def pasta_started(self):
        with open(os.path.join(_TOOLS, 'pasta-start')) as f:
            (pid, started), = (line.split() for line in f)
        return int(pid), float(started)

    def assert_overlap(self, user=None):
        b = self.alices_builder() if user else self.builder()
        out = self.run_ok('--network', 'pasta', b, 'cat', '/proc/net/route', user=user)
        # pasta copied the host's default route before the command ran: the gate held its exec.
        self.assertTrue(any(l.split()[1:2] == ['00000000'] for l in out.splitlines()[1:]), out)
        _, started = self.pasta_started()
        records = self.records()
        self.assertEqual(set(records), {'prestart', 'createRuntime'}, records)
        # The runtime ran while pasta was still starting (kilnd no longer waits before the runtime) ...
        self.assertLess(records['prestart'][1], started + DELAY, (started, records))
        # ... and the administrator's createRuntime hook only once pasta was ready: the gate is first.
        self.assertGreaterEqual(records['createRuntime'][1], started + DELAY, (started, records))
        paths, args = records['createRuntime'][2], records['createRuntime'][3]
        self.assertEqual(paths, [gate_program(), os.path.join(_TOOLS, 'record')], paths)
        self.assertEqual(args[0][1:], [os.path.join(os.path.dirname(args[0][1]), 'network-gate')])
        self.assertTrue(args[0][1].startswith(os.path.join(self.run_dir, 'bundles') + '/'), args)

    def test_runtime_starts_while_pasta_starts(self):
        self.assert_overlap()

    def test_runtime_starts_while_pasta_starts_for_alice(self):
        self.assert_overlap(user=kt.ALICE)

    def test_pasta_never_ready_fails_the_run_as_pasta(self):
        b = self.alices_builder()
        open(os.path.join(_TOOLS, 'never'), 'w').close()
        t0 = time.monotonic()
        r = self.captured(b, ['true'], {'network': 'pasta'}, user=kt.ALICE)
        took = time.monotonic() - t0
        self.assertError(r, kr.E_RUNTIME_FAILED,
                         ["Network 'pasta'", 'package passt', f'was not ready within {TIMEOUT} seconds'])
        self.assertNotIn('hook', str(r).lower())
        self.assertLess(took, TIMEOUT + 6, r)
        helper, _ = self.pasta_started()
        self.assertFalse(alive(helper), f'pasta {helper} left')
        records = self.records()
        # The runtime had started (its prestart hook ran), the gate failed it before the next hook.
        self.assertEqual(set(records), {'prestart'}, records)
        self.assertEqual(gates_running(), [])
        self.assertTrue(self.wait_until(lambda: not self.leftovers(), 10), self.leftovers())
        self.assertEqual(self.props(b.path)['Processes'], [])

    def test_gate_does_not_outlive_a_crashed_kilnd(self):
        b = self.builder()
        open(os.path.join(_TOOLS, 'never'), 'w').close()
        child = self.spawn('--network', 'pasta', b, 'true')
        self.assertTrue(self.wait_until(lambda: gates_running(), 20), f'no gate (client: {child.poll()})')
        gates = gates_running()
        kilnd = self.kilnd_pid()
        try:
            os.kill(kilnd, 9)
            # kilnd held the FIFO's only writer: the gate sees the end of file and fails the runtime.
            self.assertTrue(self.wait_until(lambda: not any(alive(g) for g in gates), 5),
                            f'gate {gates} outlived kilnd')
        finally:
            self.env.restart_kilnd()
            kr._warm_up()
            self.fd_baseline = self.kilnd_fds()
        child.communicate(timeout=30)
        self.assertEqual(gates_running(), [])


kr.parametrize(globals(), GateCases)


class GateProgramCases(kt.KilnTestCase):
    """kiln-net-gate alone, against a FIFO of the test's."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='kiln-net-gate.')
        self.fifo = os.path.join(self.dir, 'network-gate')
        os.mkfifo(self.fifo, 0o600)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def gate(self):
        return subprocess.Popen([gate_program(), self.fifo], stdin=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def test_words_and_ends(self):
        for word, status in ((b'r', 0), (b'f', 1), (None, 1)):
            with self.subTest(word=word):
                writer = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
                try:
                    child = self.gate()
                    time.sleep(0.1)
                    self.assertIsNone(child.poll(), 'the gate did not wait')
                    if word:
                        os.write(writer, word)
                finally:
                    os.close(writer)  # None: the writer (kilnd) is gone
                self.assertEqual(child.wait(timeout=5), status, child.stderr.read())
                child.stderr.close()
        # No writer at all (kilnd died before the runtime ran it): an end of file at once.
        child = self.gate()
        self.assertEqual(child.wait(timeout=5), 1)
        child.stderr.close()
        # A word written before the gate opens waits in the FIFO for it.
        writer = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        try:
            os.write(writer, b'r')
            child = self.gate()
            self.assertEqual(child.wait(timeout=5), 0)
            child.stderr.close()
        finally:
            os.close(writer)


if __name__ == '__main__':
    kt.main()
