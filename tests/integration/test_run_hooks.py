#!/usr/bin/env python3
"""OCI hooks from the administrator's hooks.d directories ([Hooks] Directories; kiln-env points it at
DIR/hooks.d), the containers-common format, run by runc (isolation=oci) and by kiln-isolate
(isolation=chroot) at the same stages; as root and as kiln-alice (user namespace).

- A hook of each runtime stage (prestart, createRuntime, poststart, poststop) runs once, in that
  order, with the OCI state on stdin: the pid it names is the container's — at poststart it is alive,
  its /proc/PID/cmdline is the command's, and it is the run's Process.Pid —, the id is the same for
  every stage, the annotations are the builder's labels; a hook's env and args are as configured.
  From prestart on, that process is in the run's own cgroup (its pids cgroup, as the host sees it).
- createContainer (on the host's file system, before pivot_root) and startContainer (inside the
  container, just before the command) run too, in that order, and startContainer sees the
  container's root.
- when conditions: an annotations pair matches only a builder whose label matches both expressions;
  commands matches argv[0] as resolved (/bin/true); always=false never matches; a hook with
  hasBindMounts runs only for a run with a -v bind mount.
- A prestart hook that exits 1 fails the run (RuntimeFailed, its message naming the hook's words)
  and the command never ran (no file in the upper dir); the hooks after it did not run.
- A prestart hook past its timeout is killed and fails the run (RuntimeFailed),
  well before the hook would have ended (the message says so); no such process is left.
- A hooks.d file with bad JSON is skipped (kilnd's log names it) and the other hooks still run.
"""
import json
import os
import shutil
import stat
import tempfile
import time

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

# The hook: records "STAGE PID STATUS ID ANNOTATION CMDLINE" in LOG, from the state on stdin.
RECORD = r'''#!/usr/bin/python3
import json, os, sys
state = json.load(sys.stdin)
stage, log = sys.argv[1], sys.argv[2]
pid = state.get('pid', 0)


def read_cmdline():
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read().replace(b'\0', b' ').decode().strip()
    except OSError:
        return '-'


def read_cgroup():
    """The process's pids cgroup (cgroup v1), or its only one (v2)."""
    try:
        with open(f'/proc/{pid}/cgroup') as f:
            lines = [line.rstrip('\n').split(':', 2) for line in f]
    except OSError:
        return '-'
    for _, controllers, path in lines:
        if 'pids' in controllers.split(',') or len(lines) == 1:
            return path
    return '-'


cmdline = read_cmdline() if pid else ''
annotation = (state.get('annotations') or {}).get('org.example.hook', '-')
with open(log, 'a') as f:
    f.write(json.dumps([stage, pid, state.get('status'), state.get('id'), annotation,
                        os.environ.get('HOOK_ENV', '-'), cmdline, read_cgroup() if pid else '-']) + '\n')
'''

FAIL = '''#!/bin/sh
cat > /dev/null
echo "hook says no" >&2
exit 1
'''

# startContainer runs inside the container: a busybox script in the image writes into its root.
START_IN_IMAGE = '''#!/bin/sh
cat > /dev/null
echo "$1" >> /hook-start.log
'''

RUNTIME_STAGES = ['prestart', 'createRuntime', 'poststart', 'poststop']

_TOOLS = None


def setUpModule():
    global _TOOLS
    tu.setUpModule()
    # Outside DIR (0700): a createContainer hook runs in the container's user namespace.
    _TOOLS = tempfile.mkdtemp(prefix='kiln-hooks.')
    os.chmod(_TOOLS, 0o755)
    for name, text in (('record', RECORD), ('fail', FAIL)):
        path = os.path.join(_TOOLS, name)
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, 0o755)


def tearDownModule():
    shutil.rmtree(_TOOLS, ignore_errors=True)
    tu.tearDownModule()


def processes_with_cmdline(cmdline):
    found = []
    for pid in kt.process_table():
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if f.read() == cmdline:
                    found.append(pid)
        except OSError:
            pass
    return found


def add_start_hook(root):
    path = os.path.join(root, 'hook-start')
    with open(path, 'w') as f:
        f.write(START_IN_IMAGE)
    os.chmod(path, 0o755)


class RunHooksCases(kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder
    upper_dir = tu.UsernsCases_oci.upper_dir

    def setUp(self):
        super().setUp()
        self.hooks_dir = os.path.join(self.env.dir, 'hooks.d')
        shutil.rmtree(self.hooks_dir, ignore_errors=True)
        os.makedirs(self.hooks_dir)
        self.log_dir = tempfile.mkdtemp(dir=_TOOLS)
        os.chmod(self.log_dir, 0o1777)
        self.log = os.path.join(self.log_dir, 'log')

    def tearDown(self):
        shutil.rmtree(self.hooks_dir, ignore_errors=True)
        super().tearDown()

    def hook_file(self, name, stages, when=None, path=None, args=None, env=None, timeout=None):
        hook = {'path': path or os.path.join(_TOOLS, 'record'),
                'args': args or ['record', stages[0], self.log]}
        if env:
            hook['env'] = env
        if timeout:
            hook['timeout'] = timeout
        doc = {'version': '1.0.0', 'hook': hook, 'when': when or {'always': True}, 'stages': stages}
        with open(os.path.join(self.hooks_dir, name), 'w') as f:
            json.dump(doc, f)

    def record_hooks(self, stages, when=None, prefix=''):
        for i, stage in enumerate(stages):
            self.hook_file(f'{prefix}{i:02d}-{stage}.json', [stage], when=when)

    def records(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def stages(self):
        return [r[0] for r in self.records()]

    def labelled_builder(self, user=None, label='yes'):
        b = self.alices_builder() if user else self.builder()
        self.env.kiln('config', '--label', f'org.example.hook={label}', b.name, user=user, check=True)
        return b

    # -- stages and the state --------------------------------------------------------

    def assert_stages_and_pid(self, user=None):
        b = self.labelled_builder(user)
        self.record_hooks(RUNTIME_STAGES)
        self.hook_file('99-env.json', ['poststop'], path=os.path.join(_TOOLS, 'record'),
                       args=['record', 'env', self.log], env=['HOOK_ENV=from-the-file'])
        path = self.start(b, ['sleep', '2'], user=user)
        pid = self.wait_running(path)['Pid']
        self.wait_until(lambda: 'poststart' in self.stages(), 10, 'no poststart record')
        self.assertEqual(self.wait_process(path), 0)
        self.wait_until(lambda: 'env' in self.stages(), 10, 'no poststop record')
        records = self.records()
        self.assertEqual([r[0] for r in records], RUNTIME_STAGES + ['env'], records)
        by_stage = {r[0]: r for r in records}
        # The container's pid, the same process from prestart on; alive at poststart as the command.
        for stage in ('prestart', 'createRuntime', 'poststart'):
            self.assertEqual(by_stage[stage][1], pid, records)
            # Already in the run's cgroup: what the hooks and the setup after them do counts against
            # the run's limits (kiln-isolate's init waits for its cgroup before its file system).
            self.assertRegex(by_stage[stage][7], r'/user-\d+/run-[^/]+$', records)
        # Alive at poststart. kiln-isolate runs poststart once the command was exec'd; runc (1.1) runs it
        # just before it lets its init exec, so there the process may still be runc's init.
        if self.isolation == 'chroot':
            self.assertEqual(by_stage['poststart'][6], '/bin/sleep 2', records)
        else:
            self.assertTrue(by_stage['poststart'][6] == '/bin/sleep 2' or
                            by_stage['poststart'][6].endswith('runc init'), records)
        self.assertIn(by_stage['poststart'][2], ('created', 'running'), records)  # runc: created
        self.assertEqual(by_stage['poststop'][2], 'stopped', records)
        self.assertEqual(len({r[3] for r in records}), 1, records)
        self.assertTrue(all(r[4] == 'yes' for r in records), records)
        self.assertEqual(by_stage['env'][5], 'from-the-file')
        self.assertEqual(by_stage['prestart'][5], '-')  # nothing of kilnd's environment leaks in
        self.assertFalse(os.path.exists(f'/proc/{pid}/cmdline') and
                         open(f'/proc/{pid}/cmdline', 'rb').read() == b'sleep\x002\x00')

    def test_stages_and_pid(self):
        self.assert_stages_and_pid()

    def test_stages_and_pid_for_alice(self):
        self.assert_stages_and_pid(user=kt.ALICE)

    def test_container_stages(self):
        b = self.builder(extra=add_start_hook)
        self.hook_file('10-create.json', ['createContainer'])
        self.hook_file('20-start.json', ['startContainer'], path='/hook-start', args=['hook-start', 'started'])
        self.hook_file('00-prestart.json', ['prestart'])
        self.run_ok(b, 'true')
        self.assertEqual(self.stages(), ['prestart', 'createContainer'])
        with open(os.path.join(self.upper_dir(b), 'hook-start.log')) as f:
            self.assertEqual(f.read(), 'started\n')

    # -- when -------------------------------------------------------------------------

    def test_conditions(self):
        yes, no = self.labelled_builder(), self.labelled_builder(label='no')
        self.hook_file('10-annotation.json', ['prestart'], args=['record', 'annotation', self.log],
                       when={'annotations': {r'^org\.example\.hook$': '^yes$'}})
        self.hook_file('20-command.json', ['prestart'], args=['record', 'command', self.log],
                       when={'commands': ['/true$']})
        self.hook_file('30-never.json', ['prestart'], args=['record', 'never', self.log],
                       when={'always': False, 'commands': ['.*']})
        self.hook_file('40-bind.json', ['prestart'], args=['record', 'bind', self.log],
                       when={'hasBindMounts': True})
        self.run_ok(yes, 'true')
        self.assertEqual(self.stages(), ['annotation', 'command'])
        os.unlink(self.log)
        self.run_ok(no, 'echo')
        self.assertEqual(self.stages(), [])
        volume = self.unique_scratch_dir('volume')
        self.run_ok('-v', f'{volume}:/v', no, 'true')
        self.assertEqual(self.stages(), ['command', 'bind'])

    # -- failures ------------------------------------------------------------------------

    def assert_failing_prestart(self, user=None):
        b = self.alices_builder() if user else self.builder()
        self.hook_file('10-fail.json', ['prestart'], path=os.path.join(_TOOLS, 'fail'), args=['fail'])
        self.hook_file('20-after.json', ['prestart', 'poststart'])
        r = self.captured(b, ['touch', '/ran'], user=user)
        self.assertError(r, 'org.kiln.Builder1.Error.RuntimeFailed', ['hook says no'])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))
        self.assertEqual(self.stages(), [])

    def test_failing_prestart(self):
        self.assert_failing_prestart()

    def test_failing_prestart_for_alice(self):
        self.assert_failing_prestart(user=kt.ALICE)

    def test_timeout(self):
        b = self.builder()
        self.hook_file('10-slow.json', ['prestart'], path='/bin/sleep', args=['sleep', '37'], timeout=1)
        started = time.monotonic()
        r = self.captured(b, ['touch', '/ran'])
        self.assertError(r, 'org.kiln.Builder1.Error.RuntimeFailed', ['hook'])
        self.assertRegex(r.message, 'timed out|timeout')
        self.assertLess(time.monotonic() - started, 15)
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))
        # The hook was killed, not left behind.
        self.assertEqual(processes_with_cmdline(b'sleep\x0037\x00'), [])

    def test_bad_file_is_skipped(self):
        b = self.builder()
        with open(os.path.join(self.hooks_dir, '05-broken.json'), 'w') as f:
            f.write('{"version": "1.0.0", "hook": ')
        self.hook_file('10-good.json', ['prestart'])
        self.run_ok(b, 'true')
        self.assertEqual(self.stages(), ['prestart'])
        with open(os.path.join(self.env.dir, 'kilnd.log')) as f:
            self.assertIn('05-broken.json', f.read())


kr.parametrize(globals(), RunHooksCases)

if __name__ == '__main__':
    kt.main()
