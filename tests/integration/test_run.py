#!/usr/bin/env python3
"""Builder.Run through `kiln run` with real runc, as root, asserting what a user sees:
exit statuses, working directory, environment, user and groups, capabilities, masked and
read-only paths, generated files, rlimits, devices, volumes and mounts, the root file system
mounted once, stdin and stdout streaming, concurrent runs, the CLI's own options (terminals: test_run_terminal.py).
Non-root callers are refused for now (AccessDenied). Parametrized over isolation modes
(kiln_runlib.ISOLATIONS); after each test nothing may be left behind (see kiln_runlib)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module


class RunCli(kr.RunTestCase):

    # -- exit statuses --------------------------------------------------------------------

    def test_filter_cache_stays_under_the_runtime_directory(self):
        # kiln-isolate's compiled seccomp filters live under kilnd's RuntimeDirectory, not in a place
        # of their own on the host.
        if self.isolation != 'chroot':
            self.skipTest('only kiln-isolate keeps compiled filters')
        cache = os.path.join(self.run_dir, 'isolate-cache')
        for name in self.listdir(cache):
            os.unlink(os.path.join(cache, name))
        self.run_ok(self.builder(), 'true')
        self.assertEqual(len(self.listdir(cache)), 1)

    def test_exit_status_zero_and_code(self):
        b = self.builder()
        self.assertEqual(self.run_ok(b, 'echo', 'hello'), 'hello\n')
        code, out, err = self.krun(b, 'sh', '-c', 'echo out; echo err >&2; exit 42')
        self.assertEqual((code, out, err), (42, 'out\n', 'err\n'))
        code, _, _ = self.krun(b, 'false')
        self.assertEqual(code, 1)

    def test_exit_status_not_executable(self):
        b = self.builder()
        code, out, err = self.krun(b, '/notexec')
        self.assertEqual(code, 126, f'a file that is not executable: stdout {out!r} stderr {err!r}')
        self.assertIn('/notexec', err)
        self.assertNotIn('should not run', out)

    def test_exit_status_not_found(self):
        b = self.builder()
        code, out, err = self.krun(b, 'no-such-command', 'arg')
        self.assertEqual((code, out), (127, ''), err)
        self.assertIn('no-such-command', err)
        code, _, err = self.krun(b, '/no/such/path')
        self.assertEqual(code, 127, err)

    def test_exit_status_killed(self):
        b = self.builder()
        # The shell is PID 1 of the container, which ignores its own SIGKILL: kill a child.
        code, _, err = self.krun(b, 'sh', '-c', 'sh -c "kill -9 \\$\\$"; exit $?')
        self.assertEqual(code, 137, err)
        code, _, err = self.krun(b, 'sh', '-c', 'kill -TERM $$; sleep 1; exit 3')
        # PID 1 without a handler ignores TERM: the script goes on.
        self.assertEqual(code, 3, err)
        code, _, err = self.krun(b, 'sh', '-c', 'trap "exit 9" TERM; kill -TERM $$; sleep 5')
        self.assertEqual(code, 9, err)

    def test_valid_exit_codes(self):
        b = self.builder()
        code, _, err = self.krun('--valid-exit-codes', '0,42', b, 'sh', '-c', 'exit 42')
        self.assertEqual(code, 0, err)
        code, _, err = self.krun('--valid-exit-codes', '0', '--valid-exit-codes', '3', b, 'sh', '-c', 'exit 3')
        self.assertEqual(code, 0, err)
        code, _, err = self.krun('--valid-exit-codes', '1,2', b, 'sh', '-c', 'exit 7')
        self.assertEqual(code, 7, err)
        # 0 is a failure when it is not listed.
        code, _, err = self.krun('--valid-exit-codes', '42', b, 'true')
        self.assertEqual(code, 1)
        self.assertIn('valid-exit-codes', err)
        code, _, err = self.krun('--valid-exit-codes', 'x', b, 'true')
        self.assertEqual(code, 125)
        self.assertIn("'x'", err)

    # -- the command line --------------------------------------------------------------------

    def test_options_before_and_after_builder(self):
        b = self.builder()
        out = self.run_ok('-e', 'A=1', b, '-e', 'B=2', '--workingdir', '/tmp', 'sh', '-c',
                          'echo $A $B $(pwd) "$@"', 'sh', '-e', '-x')
        self.assertEqual(out, '1 2 /tmp -e -x\n')
        # After "--" everything is the command, even what looks like an option.
        out = self.run_ok(b, '--', 'echo', '-e', '--workingdir')
        self.assertIn('--workingdir', out)
        out = self.run_ok('--', b, '--', 'echo', 'dashdash')
        self.assertEqual(out, 'dashdash\n')
        # The command's own options need no "--" once the command has started.
        out = self.run_ok(b, 'ls', '-d', '/etc')
        self.assertEqual(out, '/etc\n')

    def test_no_command_runs_entrypoint_and_cmd(self):
        b = self.builder()
        self.env.kiln('config', '--cmd', 'echo from-cmd', b.name, check=True)
        self.assertEqual(self.run_ok(b), 'from-cmd\n')
        self.env.kiln('config', '--entrypoint', '["/bin/echo", "entry"]', b.name, check=True)
        self.assertEqual(self.run_ok(b), 'entry echo from-cmd\n')

    def test_usage_errors(self):
        b = self.builder()
        for args, fragment in ((['--no-such-flag', b.name, 'true'], '--no-such-flag'),
                               ([], 'BUILDER'),
                               (['--timeout', 'soon', b.name, 'true'], "'soon'"),
                               (['-v', 'nocolon', b.name, 'true'], "'nocolon'"),
                               (['no-such-builder', 'true'], 'no-such-builder')):
            code, out, err = self.krun(*args)
            self.assertEqual((code, out), (125, ''), f'{args}: {err}')
            self.assertIn(fragment, err, args)
            self.assertEqual(len(err.strip().splitlines()), 1, f'{args}: one line of error: {err!r}')

    def test_service_errors_are_125_with_message(self):
        b = self.builder()
        code, _, err = self.krun('--cap-add', 'NOT_A_CAP', b, 'true')
        self.assertEqual(code, 125)
        self.assertIn('NOT_A_CAP', err)
        code, _, err = self.krun('--user', 'nosuchuser', b, 'true')
        self.assertEqual(code, 125)
        self.assertIn('nosuchuser', err)
        code, _, err = self.krun('--workingdir', 'relative', b, 'true')
        self.assertEqual(code, 125)
        self.assertIn('relative', err)

    def test_timeout(self):
        b = self.builder()
        started = time.monotonic()
        code, _, err = self.krun('--timeout', '1', b, 'sleep', '30')
        self.assertEqual(code, 137, err)
        self.assertLess(time.monotonic() - started, 15)
        self.assertIn('timeout', err)
        started = time.monotonic()
        code, _, err = self.krun('--timeout', '1.5s', b, 'sleep', '30')
        self.assertEqual(code, 137, err)
        self.assertGreaterEqual(time.monotonic() - started, 1.4)
        # Long enough: no effect.
        self.assertEqual(self.run_ok('--timeout', '1m30s', b, 'echo', 'in time'), 'in time\n')
        self.assertEqual(self.run_ok('--timeout', '500ms', b, 'true'), '')

    def test_signals_become_kill(self):
        b = self.builder()
        script = 'trap "echo got-$1; exit $2" $1; echo ready; sleep 30 & wait'
        for sig, name, status in ((signal.SIGINT, 'INT', 3), (signal.SIGTERM, 'TERM', 4),
                                  (signal.SIGHUP, 'HUP', 5)):
            child = self.spawn(b, 'sh', '-c', script, 'sh', name, status)
            self.assertEqual(child.stdout.readline(), 'ready\n')
            child.send_signal(sig)
            out, err = child.communicate(timeout=30)
            self.assertEqual((child.returncode, out), (status, f'got-{name}\n'), err)

    # -- working directory -------------------------------------------------------------

    def test_working_dir(self):
        b = self.builder()
        self.assertEqual(self.run_ok(b, 'pwd'), '/\n')
        # Created when missing, owned by the run's user.
        self.assertEqual(self.run_ok('--workingdir', '/work/sub', b, 'pwd'), '/work/sub\n')
        self.assertEqual(self.run_ok(b, 'stat', '-c', '%F %u:%g', '/work/sub'), 'directory 0:0\n')
        out = self.run_ok('--user', '1000:1000', '--workingdir', '/wd-user/deep', b, 'stat', '-c', '%u:%g', '.')
        self.assertEqual(out, '1000:1000\n')
        self.env.kiln('config', '--workingdir', '/srv/app', b.name, check=True)
        self.assertEqual(self.run_ok(b, 'pwd'), '/srv/app\n')
        self.assertEqual(self.run_ok('--workingdir', '/tmp', b, 'pwd'), '/tmp\n')

    # -- environment -----------------------------------------------------------------------

    def env_of(self, *args):
        out = self.run_ok(*args, 'env')
        return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)

    def test_environment(self):
        b = self.builder()
        env = self.env_of(b)
        self.assertEqual(env['PATH'], kr.DEFAULT_PATH)
        self.assertEqual(env['HOSTNAME'], b.id[:12])
        self.assertEqual(env['HOME'], '/root')
        env = self.env_of('-e', 'A=1', '-e', 'SPACED=a b', b)
        self.assertEqual((env['A'], env['SPACED']), ('1', 'a b'))
        self.env.kiln('config', '--env', 'FROM_BUILDER=yes', '--env', 'BOTH=builder', '--env', 'PATH=/bin',
                      b.name, check=True)
        env = self.env_of('-e', 'BOTH=run', b)
        self.assertEqual((env['FROM_BUILDER'], env['BOTH'], env['PATH']), ('yes', 'run', '/bin'))
        env = self.env_of('--hostname', 'kiln-host', '--user', 'builder', b)
        self.assertEqual((env['HOSTNAME'], env['HOME']), ('kiln-host', '/home/builder'))

    def test_environment_from_kiln(self):
        b = self.builder()
        extra = {'KILN_T_ONE': 'one', 'KILN_T_TWO': 'two', 'OTHER_T': 'x'}
        code, out, err = self.krun('-e', 'KILN_T_ONE', '-e', 'KILN_T_UNSET', b, 'env', env=extra)
        self.assertEqual(code, 0, err)
        self.assertIn('KILN_T_ONE=one\n', out)
        self.assertNotIn('KILN_T_UNSET', out)
        self.assertNotIn('KILN_T_TWO', out)
        code, out, err = self.krun('-e', 'KILN_T_*', b, 'env', env=extra)
        self.assertEqual(code, 0, err)
        self.assertIn('KILN_T_ONE=one\n', out)
        self.assertIn('KILN_T_TWO=two\n', out)
        self.assertNotIn('OTHER_T', out)

    def test_command_found_in_path(self):
        b = self.builder()
        self.env.kiln('config', '--env', 'PATH=/usr/bin', b.name, check=True)
        code, _, err = self.krun(b, 'echo', 'x')
        self.assertEqual(code, 127, f'echo is only in /bin: {err}')
        self.assertEqual(self.run_ok(b, '/bin/echo', 'x'), 'x\n')

    # -- user and groups -------------------------------------------------------------------

    def ids(self, *args):
        out = self.run_ok(*args, 'sh', '-c', 'id -u; id -g; id -G')
        uid, gid, groups = out.splitlines()
        return int(uid), int(gid), sorted(int(g) for g in groups.split())

    def test_user_by_name_and_number(self):
        b = self.builder()
        self.assertEqual(self.ids(b), (0, 0, [0, 10]))
        self.assertEqual(self.ids('--user', 'builder', b), (1000, 1000, [10, 29, 1000]))
        self.assertEqual(self.ids('--user', '1000', b), (1000, 1000, [10, 29, 1000]))
        # As buildah: with a group given, no supplementary groups from /etc/group.
        self.assertEqual(self.ids('--user', '1000:1000', b), (1000, 1000, [1000]))
        self.assertEqual(self.ids('--user', 'builder:other', b), (1000, 1001, [1001]))
        self.assertEqual(self.ids('--user', '4321:4321', b), (4321, 4321, [4321]))
        self.assertEqual(self.run_ok('--user', 'builder', b, 'whoami'), 'builder\n')
        self.env.kiln('config', '--user', 'builder', b.name, check=True)
        self.assertEqual(self.ids(b)[0], 1000)
        self.assertEqual(self.ids('--user', 'root', b)[0], 0)

    # -- capabilities --------------------------------------------------------------------------

    def caps(self, *args):
        status = kr.parse_status(self.run_ok(*args, 'cat', '/proc/self/status'))
        return {k: int(status[k], 16) for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')}

    def test_capabilities(self):
        b = self.builder()
        default = kr.cap_mask(kr.DEFAULT_CAPS)
        self.assertEqual(self.caps(b), {'CapInh': 0, 'CapPrm': default, 'CapEff': default, 'CapBnd': default,
                                        'CapAmb': 0})
        caps = self.caps('--cap-add', 'NET_ADMIN', b)
        self.assertEqual((caps['CapEff'], caps['CapBnd'], caps['CapInh']),
                         (default | kr.cap_mask(['NET_ADMIN']),) * 2 + (0,))
        caps = self.caps('--cap-add', 'CAP_NET_RAW,SYS_PTRACE', b)
        self.assertEqual(caps['CapEff'], default | kr.cap_mask(['NET_RAW', 'SYS_PTRACE']))
        caps = self.caps('--cap-drop', 'CHOWN', b)
        self.assertEqual((caps['CapEff'], caps['CapBnd']), (default & ~kr.cap_mask(['CHOWN']),) * 2)
        caps = self.caps('--cap-drop', 'ALL', b)
        self.assertEqual((caps['CapEff'], caps['CapPrm'], caps['CapBnd'], caps['CapInh']), (0, 0, 0, 0))
        caps = self.caps('--cap-drop', 'ALL', '--cap-add', 'KILL', b)
        self.assertEqual((caps['CapEff'], caps['CapBnd']), (kr.cap_mask(['KILL']),) * 2)
        # A user other than root keeps only the bounding set.
        caps = self.caps('--user', 'builder', b)
        self.assertEqual(caps, {'CapInh': 0, 'CapPrm': 0, 'CapEff': 0, 'CapBnd': default, 'CapAmb': 0})
        # The builder's own cap_add / cap_drop apply to every run.
        self.env.kiln('config', '--cap-add', 'NET_ADMIN', '--cap-drop', 'KILL', b.name, check=True)
        caps = self.caps(b)
        self.assertEqual(caps['CapEff'], (default | kr.cap_mask(['NET_ADMIN'])) & ~kr.cap_mask(['KILL']))

    def test_generated_files_are_readable_by_every_user(self):
        """kilnd's umask (0077) must not make the generated files private to root: a process of
        another user inside reads them, as under buildah."""
        b = self.builder()
        files = '/etc/hosts /etc/resolv.conf /etc/hostname /run/.containerenv'
        out = self.sh(b, f'stat -c "%n %a %u:%g" {files}')
        self.assertEqual(out.splitlines(), [f'{f} 644 0:0' for f in files.split()])
        out = self.run_ok('--user', 'builder', b, 'cat', '/etc/hosts', '/etc/hostname')
        self.assertIn('localhost', out)

    def test_cap_add_all_is_kilnds_bounding_set(self):
        """ALL is what kilnd holds, not every capability of the kernel: a host or unit whose bounding
        set lacks one (this kind of machine lacks CAP_SYS_RESOURCE) still runs --cap-add ALL, and
        naming a capability kilnd lacks is refused with its name."""
        b = self.builder()
        with open(f'/proc/{self.kilnd_pid()}/status') as f:
            kilnd_bounding = int(kr.parse_status(f.read())['CapBnd'], 16)
        caps = self.caps('--cap-add', 'ALL', b)
        self.assertEqual((caps['CapEff'], caps['CapBnd']), (kilnd_bounding,) * 2)
        lacking = [name for name in ('SYS_RESOURCE', 'SYS_MODULE', 'SYS_BOOT')
                   if not kilnd_bounding & kr.cap_mask([name])]
        if not lacking:
            self.skipTest('kilnd holds every capability tried here; nothing to refuse')
        code, out, err = self.krun('--cap-add', lacking[0], b, 'true')
        self.assertEqual((code, out), (125, ''), err)
        self.assertIn('cap_add', err)
        self.assertIn(f'CAP_{lacking[0]}', err)
        self.assertIn('bounding set', err)

    def test_capabilities_are_effective(self):
        b = self.builder()
        self.sh(b, 'touch /f && chown 1000 /f')
        code, _, _ = self.krun('--cap-drop', 'CHOWN', b, 'sh', '-c', 'touch /g && chown 1000 /g')
        self.assertNotEqual(code, 0, 'chown must fail without CAP_CHOWN')

    # -- masked and read-only paths ------------------------------------------------------------

    def test_masked_paths(self):
        b = self.builder()
        code, out, _ = self.krun(b, 'cat', '/proc/kcore')
        self.assertTrue(code != 0 or out == '', '/proc/kcore must be masked')
        self.assertEqual(self.run_ok(b, 'cat', '/proc/keys'), '')
        for path in ('/proc/timer_list', '/proc/sched_debug', '/proc/interrupts', '/proc/latency_stats'):
            code, out, _ = self.krun(b, 'cat', path)
            self.assertTrue(code != 0 or out == '', f'{path} must be masked: {out[:200]!r}')
        out = self.sh(b, 'ls -A /sys/firmware 2>/dev/null; true')
        self.assertEqual(out, '', '/sys/firmware must be masked')

    def test_read_only_paths(self):
        b = self.builder()
        code, _, err = self.krun(b, 'sh', '-c', 'echo kiln-test > /proc/sys/kernel/domainname')
        self.assertNotEqual(code, 0, '/proc/sys must be read-only')
        mountinfo = self.run_ok(b, 'cat', '/proc/self/mountinfo')
        points = {}
        for line in mountinfo.splitlines():
            fields = line.split()
            points[fields[4]] = fields[5].split(',')
        for path in ('/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'):
            if path in points:
                self.assertIn('ro', points[path], f'{path} is not mounted read-only')
        self.assertIn('/proc/sys', points)
        self.assertIn('ro', points['/sys'], '/sys must be read-only')

    # -- generated files ---------------------------------------------------------------------

    def test_generated_files(self):
        b = self.builder()
        short = b.id[:12]
        self.assertEqual(self.run_ok(b, 'hostname'), short + '\n')
        self.assertEqual(self.run_ok(b, 'cat', '/etc/hostname'), short + '\n')
        hosts = self.run_ok(b, 'cat', '/etc/hosts')
        self.assertRegex(hosts, rf'(?m)^\S+\s+.*\b{short}\b')
        self.assertIn('localhost', hosts)
        self.assertNotIn('image-host', hosts)
        self.assertEqual(self.run_ok('--hostname', 'kiln-box', b, 'hostname'), 'kiln-box\n')
        self.assertEqual(self.run_ok('--hostname', 'kiln-box', b, 'cat', '/etc/hostname'), 'kiln-box\n')
        self.assertRegex(self.run_ok('--hostname', 'kiln-box', b, 'cat', '/etc/hosts'), r'(?m)\bkiln-box\b')
        self.run_ok(b, 'test', '-f', '/etc/resolv.conf')
        containerenv = self.run_ok(b, 'cat', '/run/.containerenv')
        self.assertRegex(containerenv, r'(?m)^engine="kiln-[^"]+"$')
        self.assertIn(f'name="{b.name}"', containerenv)
        self.assertIn(f'id="{b.id}"', containerenv)

    def test_no_hosts_no_hostname(self):
        b = self.builder()
        self.assertEqual(self.run_ok('--no-hosts', b, 'cat', '/etc/hosts'), kr.IMAGE_HOSTS)
        self.assertEqual(self.run_ok('--no-hostname', b, 'cat', '/etc/hostname'), kr.IMAGE_HOSTNAME)
        # The generated files were bound in, never written into the root file system.
        self.run_ok(b, 'true')
        self.assertEqual(self.run_ok('--no-hosts', '--no-hostname', b, 'cat', '/etc/hosts', '/etc/hostname'),
                         kr.IMAGE_HOSTS + kr.IMAGE_HOSTNAME)

    def test_volume_over_generated_file(self):
        b = self.builder()
        src = self.unique_scratch_dir('hosts-vol')
        with open(os.path.join(src, 'hosts'), 'w') as f:
            f.write('1.2.3.4 from-volume\n')
        self.assertEqual(self.run_ok('-v', f'{src}/hosts:/etc/hosts', b, 'cat', '/etc/hosts'),
                         '1.2.3.4 from-volume\n')

    # -- rlimits and devices -----------------------------------------------------------------

    def test_ulimit(self):
        b = self.builder()
        out = self.sh(b, 'ulimit -n; ulimit -Hn', '--ulimit', 'nofile=1024:2048')
        self.assertEqual(out, '1024\n2048\n')
        self.env.kiln('config', '--ulimit', 'nofile=512:1024', b.name, check=True)
        self.assertEqual(self.sh(b, 'ulimit -n; ulimit -Hn'), '512\n1024\n')
        self.assertEqual(self.sh(b, 'ulimit -n; ulimit -Hn', '--ulimit', 'nofile=100:200'), '100\n200\n')

    def test_device(self):
        b = self.builder()
        out = self.sh(b, 'stat -c "%F %t:%T" /dev/kilnnull; echo data > /dev/kilnnull && echo written',
                      '--device', '/dev/null:/dev/kilnnull')
        self.assertEqual(out, 'character special file 1:3\nwritten\n')
        code, _, _ = self.krun(b, 'test', '-e', '/dev/kilnnull')
        self.assertNotEqual(code, 0, 'the device is only there for that run')

    # -- volumes and mounts ------------------------------------------------------------------

    def test_volume_read_write(self):
        b = self.builder()
        src = self.unique_scratch_dir('vol')
        with open(os.path.join(src, 'in'), 'w') as f:
            f.write('from host\n')
        out = self.sh(b, 'cat /mnt/in; echo from container > /mnt/out', '-v', f'{src}:/mnt')
        self.assertEqual(out, 'from host\n')
        with open(os.path.join(src, 'out')) as f:
            self.assertEqual(f.read(), 'from container\n')
        # A new destination is created; a relative source is the client's.
        out = self.sh(b, 'cat /new/dest/in', '-v', f'{os.path.basename(src)}:/new/dest',
                      cwd=os.path.dirname(src))
        self.assertEqual(out, 'from host\n')

    def test_volume_chown_to_run_user(self):
        # `U` gives the source to the run's user, symlinks inside left as links (never followed).
        b = self.builder()
        src = self.unique_scratch_dir('vol-u')
        outside = self.unique_scratch_dir('vol-u-outside')
        with open(os.path.join(src, 'f'), 'w') as f:
            f.write('x\n')
        os.symlink(outside, os.path.join(src, 'link'))
        out = self.sh(b, 'id -u; touch /data/written; stat -c %u:%g /data/f', '--user', '1000:1000',
                      '-v', f'{src}:/data:U')
        self.assertEqual(out, '1000\n1000:1000\n')
        for name in ('', 'f', 'written'):
            st = os.lstat(os.path.join(src, name))
            self.assertEqual((st.st_uid, st.st_gid), (1000, 1000), name)
        st = os.stat(outside)
        self.assertEqual((st.st_uid, st.st_gid), (0, 0), 'the symlink was followed')

    def test_volume_read_only(self):
        b = self.builder()
        src = self.unique_scratch_dir('vol-ro')
        with open(os.path.join(src, 'in'), 'w') as f:
            f.write('keep\n')
        code, out, err = self.krun('-v', f'{src}:/mnt:ro', b, 'sh', '-c',
                                   'cat /mnt/in; echo changed > /mnt/in; echo new > /mnt/new')
        self.assertNotEqual(code, 0)
        self.assertEqual(out, 'keep\n')
        self.assertIn('Read-only', err)
        self.assertEqual(os.listdir(src), ['in'])
        with open(os.path.join(src, 'in')) as f:
            self.assertEqual(f.read(), 'keep\n')

    def test_volume_single_file(self):
        b = self.builder()
        src = self.unique_scratch_dir('vol-file')
        path = os.path.join(src, 'file')
        with open(path, 'w') as f:
            f.write('one file\n')
        self.assertEqual(self.run_ok('-v', f'{path}:/etc/one:ro', b, 'cat', '/etc/one'), 'one file\n')

    def test_volume_propagation_private(self):
        b = self.builder()
        src = self.unique_scratch_dir('vol-prop')
        os.mkdir(os.path.join(src, 'sub'))
        code, out, err = self.krun('-v', f'{src}:/mnt', '--cap-add', 'SYS_ADMIN', b, 'sh', '-c',
                                   'mount -t tmpfs kilntmp /mnt/sub || exit 99; grep -c kilntmp /proc/self/mountinfo')
        if code == 99:
            self.skipTest(f'cannot mount inside the container here: {err.strip()}')
        self.assertEqual((code, out), (0, '1\n'), err)
        self.assertEqual(self.mounts_under(src), [], 'a mount made in the container reached the host')

    def test_mount_tmpfs(self):
        b = self.builder()
        fstype = 'awk \'$5 == "/scratch" { for (i = 7; i <= NF; i++) if ($i == "-") print $(i + 1) }\' ' \
            '/proc/self/mountinfo'
        out = self.sh(b, fstype + '; echo x > /scratch/f; cat /scratch/f', '--mount', 'type=tmpfs,destination=/scratch')
        self.assertEqual(out, 'tmpfs\nx\n')
        code, out, _ = self.krun(b, 'ls', '-A', '/scratch')
        self.assertTrue(code != 0 or out == '', 'the tmpfs content must not stay in the root file system')

    def test_mount_bind(self):
        b = self.builder()
        src = self.unique_scratch_dir('mount-bind')
        with open(os.path.join(src, 'f'), 'w') as f:
            f.write('bound\n')
        out = self.run_ok('--mount', f'type=bind,source={src},destination=/b,ro', b, 'cat', '/b/f')
        self.assertEqual(out, 'bound\n')

    def test_rootfs_mounted_once(self):
        b = self.builder()
        first = self.spawn(b, 'sh', '-c', 'echo ready; sleep 3')
        second = self.spawn(b, 'sh', '-c', 'echo ready; sleep 3')
        self.assertEqual(first.stdout.readline(), 'ready\n')
        self.assertEqual(second.stdout.readline(), 'ready\n')
        mounts = self.rootfs_mounts(b)
        self.assertEqual(len(mounts), 1, f'the root file system is mounted {len(mounts)} times: {mounts}')
        for child in (first, second):
            child.communicate(timeout=30)
            self.assertEqual(child.returncode, 0)

    def test_changes_persist_in_builder(self):
        b = self.builder()
        self.sh(b, 'echo kept > /etc/kiln-file')
        self.assertEqual(self.run_ok(b, 'cat', '/etc/kiln-file'), 'kept\n')
        other = self.builder()
        code, _, _ = self.krun(other, 'cat', '/etc/kiln-file')
        self.assertNotEqual(code, 0, 'a change in one builder showed up in another')
        # Never in the source tree either.
        self.assertFalse(os.path.exists(os.path.join(b.rootfs, 'etc', 'kiln-file')))

    # -- stdin and stdout --------------------------------------------------------------------

    def test_stdin(self):
        b = self.builder()
        self.assertEqual(self.run_ok(b, 'cat', input='hello\n'), 'hello\n')
        self.assertEqual(self.run_ok(b, 'wc', '-c', input='abc'), '3\n')
        # No stdin given: EOF at once.
        self.assertEqual(self.run_ok(b, 'cat', input=''), '')

    def test_stdin_lines(self):
        b = self.builder()
        lines = ''.join(f'{i}\n' for i in range(1, 100001))
        out = self.run_ok(b, '--', 'sh', '-c', 'while read i; do echo $i; done', input=lines)
        self.assertEqual(len(out.splitlines()), 100000)
        self.assertEqual(out, lines)

    def test_pipeline_through_shell(self):
        b = self.builder()
        cmd = f'seq 100000 | {self.env.kiln_cli} run {b.name} -- sh -c "while read i; do echo \\$i; done" | wc -l'
        code, out, err = self.env.run(['sh', '-c', cmd])
        self.assertEqual((code, out.strip()), (0, '100000'), err)

    def test_large_output(self):
        b = self.builder()
        cmd = f'{self.env.kiln_cli} run {b.name} dd if=/dev/zero bs=1M count=64 2>/dev/null | wc -c'
        code, out, err = self.env.run(['sh', '-c', cmd])
        self.assertEqual((code, out.strip()), (0, str(64 * 1024 * 1024)), err)

    def test_stdout_to_file(self):
        b = self.builder()
        out_dir = self.unique_scratch_dir('stdout-file')
        path = os.path.join(out_dir, 'out')
        with open(path, 'w') as f:
            code = subprocess.run([self.env.kiln_cli, 'run', b.name, 'sh', '-c', 'echo to-file; echo e >&2'],
                                  stdout=f, stderr=subprocess.PIPE,
                                  env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)).returncode
        self.assertEqual(code, 0)
        with open(path) as f:
            self.assertEqual(f.read(), 'to-file\n')

    # -- concurrency ---------------------------------------------------------------------

    def test_concurrent_runs_one_builder(self):
        b = self.builder()
        children = [self.spawn(b, 'sh', '-c', f'echo start-{i}; sleep 1; echo end-{i}') for i in range(20)]
        for i, child in enumerate(children):
            out, err = child.communicate(timeout=120)
            self.assertEqual((child.returncode, out), (0, f'start-{i}\nend-{i}\n'), err)

    def test_concurrent_runs_two_builders(self):
        builders = [self.builder(), self.builder()]
        children = []
        for i in range(20):
            b = builders[i % 2]
            children.append((b, i, self.spawn(b, 'sh', '-c', f'echo {i} $(hostname); sleep 1; exit {i}')))
        for b, i, child in children:
            out, err = child.communicate(timeout=120)
            self.assertEqual((child.returncode, out), (i, f'{i} {b.id[:12]}\n'), err)

    def test_bus_answers_during_runs(self):
        b = self.builder()
        child = self.spawn(b, 'sh', '-c', 'echo ready; sleep 3')
        self.assertEqual(child.stdout.readline(), 'ready\n')
        started = time.monotonic()
        self.list_builders()
        self.assertLess(time.monotonic() - started, 2)
        child.communicate(timeout=30)


kr.parametrize(globals(), RunCli)

if __name__ == '__main__':
    kt.main()
