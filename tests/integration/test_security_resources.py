#!/usr/bin/env python3
"""What a run may consume (issue 10, item 7): each run in a cgroup of its own under the
environment's kiln parent, with kiln.conf's [Resources] limits, which a run may lower but not
raise without run-privileged; tmpfs sizes bounded. Checked on the host, for both isolations, as
root and as kiln-alice (group "kiln": run only; the test rules grant run-privileged to nobody
here): the process table and the cgroup files the kernel enforces, not only exit codes.

This module's kiln.conf: PidsLimit=64, Memory=256m, CPUWeight=100, TmpfsMaxSize=64m.
"""
import os
import pwd
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

PIDS_LIMIT = 64
MEMORY = 256 << 20
TMPFS_MAX = 64 << 20
CONF = f'[Resources]\nPidsLimit={PIDS_LIMIT}\nMemory=256m\nCPUWeight=100\nTmpfsMaxSize=64m\n'

# cgroup v2 only (unified), or v1 (hybrid or not): what the files are called.
UNIFIED = subprocess.run(['stat', '-f', '-c', '%T', '/sys/fs/cgroup'], capture_output=True,
                         text=True).stdout.strip() == 'cgroup2fs'

# The fork bomb: an inner shell backgrounds 100 sleeps (it dies at the first fork that fails), while
# the container's init, the outer shell, stays up on builtins only (a FIFO it holds open both ways),
# so the host can look at the run's processes.
FORK_BOMB = ('mkfifo /tmp/hold; exec 3<>/tmp/hold; '
             'sh -c \'i=0; while [ $i -lt 100 ]; do sleep 20 & i=$((i+1)); done\' 2>/tmp/bomb.err; '
             'echo "inner exit $?"; read -r line </tmp/bomb.err; echo "inner said: $line"; read -t 30 x <&3')






def setUpModule():
    kr.setup_module(extra_conf=CONF)


tearDownModule = kr.teardown_module


def readable_rootfs(path):
    """The run rootfs, readable by everyone (kiln-import reads it as the caller)."""
    os.chmod(os.path.join(path, 'root'), 0o755)


def cgroup_lines(pid):
    """/proc/PID/cgroup as {controller: path} ('' for the unified hierarchy)."""
    out = {}
    with open(f'/proc/{pid}/cgroup') as f:
        for line in f:
            _, controllers, path = line.rstrip('\n').split(':', 2)
            for c in (controllers.split(',') if controllers else ['']):
                out[c] = path
    return out


def host_cgroup_dir(pid, controller):
    """The directory on the host of @pid's cgroup in @controller's hierarchy."""
    lines = cgroup_lines(pid)
    if UNIFIED:
        return '/sys/fs/cgroup' + lines['']
    return f'/sys/fs/cgroup/{controller}' + lines[controller]


def read(path):
    with open(path) as f:
        return f.read().strip()


def pids_in(controller_path):
    """Every process on the host whose cgroup (pids hierarchy, or unified) is @controller_path."""
    found = []
    key = '' if UNIFIED else 'pids'
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            if cgroup_lines(entry).get(key) == controller_path:
                found.append(int(entry))
        except (OSError, ValueError):
            pass
    return found


class ResourceCases(kr.RunTestCase):

    def refused_captured(self, b, argv, options):
        """RunCaptured as kiln-alice without run-privileged (the test rules grant it per environment)."""
        self.env.set_trusted(kt.ALICE, False)
        return self.captured(b, argv, options, user=kt.ALICE)

    def refused_krun(self, *args):
        self.env.set_trusted(kt.ALICE, False)
        return self.krun(*args, user=kt.ALICE)

    def builder_for(self, user):
        if user is None:
            return self.builder()
        name = self.unique_name('alice')
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=readable_rootfs)
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs, user=user, check=True)
        path = self.get_builder(name, user=user).object_path()
        return kr.Builder(name, path, self.props(path)['Id'], rootfs)

    def test_fork_bomb_is_bounded_in_a_cgroup_of_its_own(self):
        # root under kiln.conf's defaults; alice with lower limits of her own.
        for user, options, pids, memory in (
                (None, {}, PIDS_LIMIT, MEMORY),
                (kt.ALICE, {'pids_limit': ('x', 'int64 20'), 'memory': ('t', f'uint64 {64 << 20}')}, 20, 64 << 20)):
            with self.subTest(user=user or 'root'):
                b = self.builder_for(user)
                proc = self.start(b, ['sh', '-c', FORK_BOMB], options, user=user)
                pid = self.wait_running(proc)['Pid']
                # The run's own cgroup, under this environment's parent and the owner's.
                uid = pwd.getpwnam(user).pw_uid if user else 0
                pids_path = cgroup_lines(pid)['' if UNIFIED else 'pids']
                pids_dir = host_cgroup_dir(pid, 'pids')
                memory_dir = host_cgroup_dir(pid, 'memory')
                # The host's process table, for as long as the sleeps live: never more than the limit.
                most = 0
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    most = max(most, len(pids_in(pids_path)))
                    time.sleep(0.05)
                self.assertLessEqual(most, pids)
                self.assertGreaterEqual(most, pids - 5, 'the fork bomb did not even start')
                self.assertIn(f'/user-{uid}/run-', pids_path)
                self.assertIn('/kiln-env-', pids_path)
                # In the run's cgroup in every hierarchy, not only those with a limit (on cgroup v1
                # kiln-isolate's init moves itself into each, the runtime moves its init).
                for controller, path in cgroup_lines(pid).items():
                    if UNIFIED or controller:
                        self.assertTrue(path.endswith(pids_path.rsplit('/', 1)[1]), (controller, path))
                self.assertEqual(read(os.path.join(pids_dir, 'pids.max')), str(pids))
                self.assertEqual(read(os.path.join(memory_dir, 'memory.max' if UNIFIED
                                                   else 'memory.limit_in_bytes')), str(memory))
                self.assertTrue(self.kill_process(proc, 'KILL').ok)
                self.assertEqual(self.wait_process(proc), 137)
                # Gone with the run, in every hierarchy.
                self.assertFalse(os.path.exists(pids_dir), pids_dir)
                self.assertFalse(os.path.exists(memory_dir), memory_dir)
                self.assertEqual(pids_in(pids_path), [])

    def test_inside_the_bomb_sees_fork_fail(self):
        b = self.builder()
        code, out, err = self.krun(b, '--', 'sh', '-c',
                                   'sh -c \'i=0; while [ $i -lt 100 ]; do sleep 5 & i=$((i+1)); done\'; '
                                   'echo "inner exit $?"')
        self.assertEqual(code, 0, err)
        self.assertIn("can't fork", err)
        self.assertNotIn('inner exit 0', out)

    def test_the_container_sees_its_own_cgroup_only(self):
        for user in (None, kt.ALICE):
            with self.subTest(user=user or 'root'):
                b = self.builder_for(user)
                limits = 'pids.max' if UNIFIED else 'pids/pids.max'
                out = self.sh(b, f'cat /proc/self/cgroup; echo ---; ls /sys/fs/cgroup/{os.path.dirname(limits)}; '
                                 f'echo ---; cat /sys/fs/cgroup/{limits}', user=user)
                own, listing, value = out.split('---\n')
                # Every hierarchy shows the namespace's root: nothing of the host's paths.
                for line in own.strip().splitlines():
                    self.assertEqual(line.split(':', 2)[2], '/', own)
                # Only the run's cgroup is mounted: its limit, and none of the host's cgroups.
                self.assertEqual(value.strip(), str(PIDS_LIMIT))
                self.assertNotIn('kiln-env-', listing)
                self.assertNotIn('user-', listing)
                self.assertNotIn('process_api', listing)

    def test_defaults_apply_without_options(self):
        b = self.builder()
        out = self.sh(b, 'cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes '
                         '/sys/fs/cgroup/cpu/cpu.shares' if not UNIFIED else
                      'cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.weight')
        self.assertEqual(out.split(), [str(PIDS_LIMIT), str(MEMORY), '1024' if not UNIFIED else '100'])

    def test_alice_may_lower_but_not_raise(self):
        b = self.builder_for(kt.ALICE)
        raising = [({'pids_limit': ('x', 'int64 4096')}, 'pids_limit above'),
                   ({'pids_limit': ('x', 'int64 -1')}, 'pids_limit none'),
                   ({'memory': ('t', f'uint64 {MEMORY * 2}')}, 'memory above'),
                   ({'memory': ('t', 'uint64 0')}, 'memory none'),
                   ({'cpu_weight': ('t', 'uint64 200')}, 'cpu_weight above')]
        for options, says in raising:
            with self.subTest(options=options):
                r = self.refused_captured(b, ['true'], options)
                self.assertError(r, kt.E_INTERACTIVE, ['run-privileged', says])
                self.assertEqual(self.props(b.path)['Processes'], [])
        # The CLI says the same (and an interactive caller without an agent is denied).
        code, out, err = self.refused_krun('--pids-limit', '4096', b, 'true')
        self.assertEqual(code, 125, err)
        self.assertIn('org.kiln.builder1.run-privileged', err)
        self.assertIn('pids_limit above', err)
        # Lowering needs nothing, and takes.
        r = self.captured(b, ['cat', '/sys/fs/cgroup/pids.max' if UNIFIED else '/sys/fs/cgroup/pids/pids.max'],
                          {'pids_limit': ('x', 'int64 32'), 'memory': ('t', f'uint64 {MEMORY // 2}'),
                           'cpu_weight': ('t', 'uint64 10')}, user=kt.ALICE)
        self.assertTrue(r.ok, r)
        self.assertIn("'32\\n'", r.out)

    def test_root_may_raise(self):
        b = self.builder()
        out = self.sh(b, 'cat /sys/fs/cgroup/pids.max' if UNIFIED else 'cat /sys/fs/cgroup/pids/pids.max',
                      '--pids-limit', '4096')
        self.assertEqual(out.strip(), '4096')

    def test_huge_tmpfs_is_refused(self):
        b = self.builder_for(kt.ALICE)
        code, out, err = self.refused_krun('--mount', 'type=tmpfs,dst=/t,tmpfs-size=100000g', b, 'true')
        self.assertEqual(code, 125, err)
        self.assertIn('org.kiln.builder1.run-privileged', err)
        self.assertIn('mounts[0] tmpfs of', err)
        r = self.refused_captured(b, ['true'], {'mounts': ['type=tmpfs,destination=/t,tmpfs-size=100000g']})
        self.assertError(r, kt.E_INTERACTIVE, ['mounts[0]', 'TmpfsMaxSize'])
        # Every spelling of a size: mount(8)'s size=, a percentage of the RAM, a second size.
        for value in ('type=tmpfs,dst=/t,size=100000g', 'type=tmpfs,dst=/t,tmpfs-size=1000%',
                      'type=tmpfs,dst=/t,tmpfs-size=1m,size=100000G'):
            with self.subTest(mount=value):
                r = self.refused_captured(b, ['true'], {'mounts': ['type=bind,src=/tmp,dst=/b', value]})
                self.assertError(r, kt.E_INTERACTIVE, ['mounts[1] tmpfs of'])
        r = self.refused_captured(b, ['true'], {'shm_size': '1g'})
        self.assertError(r, kt.E_INTERACTIVE, ['shm_size'])
        self.assertEqual(self.props(b.path)['Processes'], [])

    def test_tmpfs_without_size_is_bounded(self):
        for user in (None, kt.ALICE):
            with self.subTest(user=user or 'root'):
                b = self.builder_for(user)
                out = self.sh(b, 'grep " /t " /proc/self/mounts', '--mount', 'type=tmpfs,dst=/t', user=user)
                self.assertIn(f'size={TMPFS_MAX // 1024}k', out)


kr.parametrize(globals(), ResourceCases)

if __name__ == '__main__':
    kt.main()
