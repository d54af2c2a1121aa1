#!/usr/bin/env python3
"""What runs and failures leave behind in kilnd and on the host (issue "Hardening", items 10
and 11; kiln-isolate's own /dev/null for masking is tests/isolate's masked-paths-own-null): kilnd is a child subreaper, so every orphan of a run re-parents to it and must be
reaped, not kept as a zombie; a create that fails after the runtime started its `init` must
leave no process, no runtime state and no zombie; an internal failure answers a kiln error
name and never shows the host paths of kilnd's own state. Parametrized over isolation modes
where they apply; after each test nothing may be left behind (see kiln_runlib)."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module

E_FAILED = 'org.kiln.Builder1.Error.Failed'


proc_stat = kt.proc_stat


def children_of(ppid):
    """{pid: (state, comm)} of every process whose parent is @ppid."""
    return {pid: (state, comm) for pid, (state, parent, comm) in kt.process_table().items() if parent == ppid}


def cmdline(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace').strip()
    except OSError:
        return ''


class Leftovers(kr.RunTestCase):

    def zombies(self):
        return {p: c for p, (s, c) in children_of(self.kilnd_pid()).items() if s == 'Z'}

    def assert_no_zombies(self, timeout=10):
        if not self.wait_until(lambda: not self.zombies(), timeout):
            self.fail(f'kilnd keeps zombie children: {self.zombies()}')

    def test_background_child_of_host_pid_run_is_reaped(self):
        """A --pid host run whose shell leaves a background sleep: the sleep re-parents to
        kilnd when the shell exits and is killed with the run's cgroup; it must be reaped, not
        kept as a zombie."""
        b = self.builder()
        marker = 'orphan%d' % (os.getpid() % 100000)  # comm keeps 15 characters
        # The background process is a script whose name (its comm) is a marker; it sleeps, and its
        # stdio is not the run's (else the run would wait for it).
        self.sh(b, f'printf "#!/bin/sh\\nsleep 4; :\\n" > /tmp/{marker}; chmod 755 /tmp/{marker}; '
                   f'/tmp/{marker} </dev/null >/dev/null 2>&1 & exit 0', '--pid', 'host')
        kilnd = self.kilnd_pid()

        def orphan():
            return [p for p, (s, c) in children_of(kilnd).items() if c == marker]
        adopted = orphan()
        # Both executors end what is left in the run's cgroup when the run ends (runc's `delete
        # --force`, kilnd's removal of the run's cgroup for kiln-isolate), so the orphan is a zombie
        # of kilnd's at once: before the reaper it stayed one until kilnd exited.
        # Gone entirely (reaped), not a zombie: within the sleep plus a few seconds.
        if not self.wait_until(lambda: not orphan(), 15):
            self.fail(f'the orphan {adopted} stays as {[proc_stat(p) for p in orphan()]} under kilnd')
        self.assert_no_zombies()
        self.assertEqual(self.run_ok(b, 'echo', 'again').strip(), 'again')

    def test_internal_failure_names_no_host_path(self):
        """An internal failure (the builder's directory gone behind kilnd's back) answers kiln's
        own error name, with an id, and no path of kilnd's state or runtime directory; the log has
        the details under that id."""
        b = self.builder()
        self.run_ok(b, 'true')
        # Wait for the kept root file system mount to go, then break the builder's storage.
        state_dir, run_dir = os.path.join(self.env.dir, 'state'), self.run_dir
        builder_dir = os.path.join(self.builders_dir, b.id)
        broken = builder_dir + '.moved'
        self.wait_until(lambda: not self.rootfs_mounts(b), 30)
        os.rename(builder_dir, broken)
        try:
            r = self.captured(b, ['true'])
        finally:
            os.rename(broken, builder_dir)
        self.assertFalse(r.ok, r)
        self.assertEqual(r.error_name, E_FAILED, r)
        for d in (state_dir, run_dir, self.env.dir):
            self.assertNotIn(d, r.err, f'the error shows a host path of kilnd: {r}')
        m = re.search(r'id ([0-9a-f]{16})', r.err)
        self.assertIsNotNone(m, f'no id to find the failure in the log: {r}')
        with open(self.env.kilnd_log) as f:
            self.assertIn(f'Internal error {m.group(1)}:', f.read())


class FailedCreate(kr.RunTestCase):
    """The runtime's create (`run --detach`, create and start in one) runs `runc init`, then fails: it
    exits non-zero after runc made the container (state written, the command running), or it is killed
    mid-way (SIGKILL as soon as runc init exists). Either way nothing may be left: no runc init, no
    runtime state, no zombie; and the builder runs again."""

    CREATE_FAILS = 'REAL "$@"; exit 1'
    # runc init is the runtime's child: kill the runtime once it exists (100 ms at most).
    CREATE_KILLED = ('REAL "$@" & pid=$!; i=0; '
                     'while [ $i -lt 200 ] && ! pgrep -P $pid >/dev/null; do i=$((i+1)); sleep 0.005; done; '
                     'kill -9 $pid; exit 1')

    def wrapper(self, real, create):
        scratch = self.unique_scratch_dir('runtime')
        path = os.path.join(scratch, 'runc-wrapper')
        with open(path, 'w') as f:
            f.write('#!/bin/sh\n'
                    f'case " $* " in *" create "*|*" run "*) {create.replace("REAL", real)};; esac\n'
                    f'exec {real} "$@"\n')
        os.chmod(path, 0o755)
        os.chmod(scratch, 0o755)
        return path

    def check_failed_create(self, create):
        real = subprocess.run(['sh', '-c', 'command -v runc'], capture_output=True, text=True).stdout.strip()
        self.assertTrue(real, 'runc not found')
        wrapper = self.wrapper(real, create)
        b = self.builder()
        kilnd = self.kilnd_pid()
        code, out, err = self.krun('--runtime', wrapper, b, 'true')
        self.assertNotEqual(code, 0, f'the run did not fail: {out!r} {err!r}')

        def inits():
            return {p: c for p, (s, c) in children_of(kilnd).items()
                    if s != 'Z' and 'init' in cmdline(p) and 'runc' in cmdline(p)}
        if not self.wait_until(lambda: not inits(), 10):
            self.fail(f'runc init left running under kilnd: {inits()}')
        state_root = os.path.join(self.run_dir, 'runtime')
        listed = subprocess.run([real, '--root', state_root, 'list', '-q'], capture_output=True, text=True)
        self.assertEqual(listed.stdout.split(), [], f'runtime state left: {listed.stdout!r}')
        self.assertEqual(self.listdir(state_root), [])
        if not self.wait_until(lambda: not {p for p, (s, c) in children_of(kilnd).items() if s == 'Z'}, 10):
            self.fail(f'zombies under kilnd: {children_of(kilnd)}')
        self.assertEqual(self.run_ok(b, 'echo', 'again').strip(), 'again')

    def test_create_that_fails_after_runc_made_the_container(self):
        self.check_failed_create(self.CREATE_FAILS)

    def test_create_killed_mid_way(self):
        self.check_failed_create(self.CREATE_KILLED)


kr.parametrize(globals(), Leftovers)
FailedCreate.isolation = 'oci'

if __name__ == '__main__':
    kt.main()
