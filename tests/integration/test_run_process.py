#!/usr/bin/env python3
"""Run, RunCaptured and Start on the bus with real runc, as root: RunCaptured through busctl
and gdbus call (outputs, exit status, the capture limit), the Process API (State, Pid, Wait,
the Exited signal, Kill, Resize, ExitStatus, lingering), the timeout option, a caller that
leaves, Remove of a busy builder. Parametrized over isolation modes (kiln_runlib.ISOLATIONS);
after each test nothing may be left behind (see kiln_runlib)."""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module


def captured_reply(result):
    """(exit status, stdout, stderr) of a gdbus RunCaptured reply: "(3, 'out', 'err')"."""
    text = result.out.strip()
    m = re.match(r'\((-?\d+), ', text)
    assert m, result
    out, pos = _gvariant_string(text, m.end())
    assert text[pos:pos + 2] == ', ', result
    err, pos = _gvariant_string(text, pos + 2)
    assert text[pos:] == ')', result
    return int(m.group(1)), out, err


_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', 'a': '\a', 'b': '\b', 'f': '\f', 'v': '\v'}


def _gvariant_string(text, pos):
    """A quoted string as g_variant_print writes it, starting at text[pos]: (value, end)."""
    quote = text[pos]
    assert quote in '\'"', text[pos:pos + 20]
    out = []
    i = pos + 1
    while text[i] != quote:
        c = text[i]
        if c == '\\':
            n = text[i + 1]
            if n == 'u':
                out.append(chr(int(text[i + 2:i + 6], 16)))
                i += 6
                continue
            if n == 'U':
                out.append(chr(int(text[i + 2:i + 10], 16)))
                i += 10
                continue
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return ''.join(out), i + 1


class RunBus(kr.RunTestCase):

    # -- RunCaptured ---------------------------------------------------------------------

    def test_run_captured_busctl(self):
        b = self.builder()
        # "--": the command's own options are not busctl's.
        reply = self.busctl('--', 'call', kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'RunCaptured', 'asa{sv}',
                            '3', 'sh', '-c', 'echo out; echo err >&2; exit 3', '0')
        self.assertEqual(reply['data'], [3, 'out\n', 'err\n'])
        reply = self.busctl('call', kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'RunCaptured', 'asa{sv}',
                            '1', 'pwd', '2', 'working_dir', 's', '/srv', 'env', 'as', '1', 'X=1')
        self.assertEqual(reply['data'], [0, '/srv\n', ''])

    def test_run_captured_gdbus(self):
        b = self.builder()
        r = self.captured(b, ['sh', '-c', 'echo "$X"; id -u >&2; exit 42'], {'env': ['X=from gdbus'],
                                                                           'user': 'builder'})
        self.assertTrue(r.ok, r)
        self.assertEqual(captured_reply(r), (42, 'from gdbus\n', '1000\n'))
        # Not found / not executable, as the CLI shows them.
        r = self.captured(b, ['no-such-command'])
        self.assertTrue(r.ok, r)
        status, out, err = captured_reply(r)
        self.assertEqual((status, out), (127, ''))
        self.assertIn('no-such-command', err)

    def test_run_captured_ignores_stdio(self):
        b = self.builder()
        # stdin is /dev/null: cat ends at once.
        r = self.captured(b, ['cat'])
        self.assertEqual(captured_reply(r), (0, '', ''))

    def test_run_captured_invalid_utf8(self):
        b = self.builder()
        r = self.captured(b, ['printf', 'a\\377b'])
        self.assertTrue(r.ok, r)
        status, out, _ = captured_reply(r)
        self.assertEqual(status, 0)
        self.assertEqual(out, 'a\ufffdb')

    def test_run_captured_limit(self):
        # The harness writes kiln.conf itself (no way to ask for a small CaptureBytes), so this
        # uses the configured bound, 1 MiB by default.
        limit = kt.read_conf_value(self.env, 'Limits', 'CaptureBytes', 1024 * 1024)
        b = self.builder()
        r = self.captured(b, ['sh', '-c', f'yes | head -c {limit}'])
        self.assertTrue(r.ok, f'exactly the limit fits: {str(r)[:500]}')
        self.assertEqual(captured_reply(r), (0, 'y\n' * (limit // 2), ''))
        started = time.monotonic()
        r = self.captured(b, ['yes'], timeout=60)
        self.assertError(r, kt.E_LIMIT)
        self.assertIn(str(limit), r.message)
        self.assertLess(time.monotonic() - started, 30, 'the run was not killed at the limit')
        r = self.captured(b, ['sh', '-c', f'yes | head -c {limit + 1} >&2'])
        self.assertError(r, kt.E_LIMIT)

    def test_run_blocking_call(self):
        b = self.builder()
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Run', kt.gv_strv(['sh', '-c', 'exit 7']), kt.gv_dict())
        self.assertTrue(r.ok, r)
        self.assertEqual(r.out.strip(), '(7,)')

    def test_run_with_descriptors(self):
        # Run with stdin from a file the caller opened (what the CLI does with its own stdio).
        b = self.builder()
        src = self.unique_scratch_dir('stdin-file')
        path = os.path.join(src, 'in')
        with open(path, 'w') as f:
            f.write('one\ntwo\nthree\n')
        reply = self.rawcall(b.path, kt.BUILDER_IFACE, 'Run', 'asa{sv}',
                             [['sh', '-c', 'test "$(wc -l)" = 3'], {'stdin': ('h', 0)}], fd_paths=[path])
        self.assertEqual(reply['type'], 'method_return', reply)
        self.assertEqual(reply['body'], [0])

    # -- Start and the Process object --------------------------------------------------------

    def test_start_wait_properties(self):
        b = self.builder()
        before = int(time.time() * 1e6)
        path = self.start(b, ['sleep', '2'])
        props = self.wait_running(path)
        self.assertEqual(props['Builder'], b.path)
        self.assertEqual(props['Argv'], ['/bin/sleep', '2'])
        self.assertEqual(props['Owner'], 0)
        self.assertEqual(props['ExitStatus'], -1)
        self.assertGreater(props['Pid'], 0)
        self.assertTrue(kr.pid_alive(props['Pid'], 'sleep'), f'pid {props["Pid"]} is not the sleep')
        self.assertGreaterEqual(props['StartedAt'], before - 1_000_000)
        self.assertIn(path, self.props(b.path)['Processes'])
        self.assertEqual(self.wait_process(path), 0)
        props = self.process_props(path)
        self.assertEqual((props['State'], props['ExitStatus']), ('exited', 0))
        self.assertGreaterEqual(props['ExitedAt'], props['StartedAt'] + 1_500_000)
        self.assertFalse(kr.pid_alive(props['Pid'], 'sleep'))
        # A late Wait still answers while the object lingers.
        self.assertEqual(self.wait_process(path), 0)

    def test_start_busctl(self):
        b = self.builder()
        # detach: busctl leaves the bus right after the call.
        reply = self.busctl('--', 'call', kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'Start', 'asa{sv}',
                            '3', 'sh', '-c', 'sleep 1; exit 5', '1', 'detach', 'b', 'true')
        path = reply['data'][0]
        self.assertTrue(path.startswith(kr.PROCESS_PATH_PREFIX), reply)
        reply = self.busctl('call', kt.BUS_NAME, path, kr.PROCESS_IFACE, 'Wait')
        self.assertEqual(reply['data'], [5])
        reply = self.busctl('get-property', kt.BUS_NAME, path, kr.PROCESS_IFACE, 'ExitStatus')
        self.assertEqual(reply['data'], 5)

    def test_exited_signal(self):
        b = self.builder()
        with kt.Listener(self.env) as listener:
            path = self.start(b, ['sh', '-c', 'sleep 1; exit 3'])
            s = listener.wait_for(lambda s: s.get('member') == 'Exited' and s.get('path') == path, timeout=30)
            self.assertIsNotNone(s, f'no Exited signal for {path}: {listener.signals}')
            self.assertEqual(s['interface'], kr.PROCESS_IFACE)
            self.assertEqual(s['body'], [3])
        self.assertEqual(self.process_props(path)['ExitStatus'], 3)

    def test_kill(self):
        b = self.builder()
        for name, status in (('KILL', 137), ('SIGKILL', 137), ('9', 137)):
            path = self.start(b, ['sleep', '100'])
            pid = self.wait_running(path)['Pid']
            r = self.kill_process(path, name)
            self.assertTrue(r.ok, r)
            self.assertEqual(self.wait_process(path), status, name)
            self.assertFalse(kr.pid_alive(pid, 'sleep'))
        # TERM reaches a handler of the container's PID 1.
        path = self.start(b, ['sh', '-c', 'trap "exit 11" TERM; sleep 100 & wait'])
        self.wait_running(path)
        self.assertTrue(self.kill_process(path, 'TERM').ok)
        self.assertEqual(self.wait_process(path), 11)

    def test_runtime_state_while_running(self):
        # While a command runs, its runtime keeps state under kilnd's state root for it (what kilnd's
        # start-up clean-up finds after a crash): runc's, or kiln-isolate's for a detached run. Once
        # the process is gone, kilnd has removed it (without running `delete` for kiln-isolate).
        b = self.builder()
        path = self.start(b, ['sleep', '100'])
        self.wait_running(path)
        sub = 'isolate' if self.isolation == 'chroot' else 'runtime'
        self.assertEqual(len(self.listdir(os.path.join(self.run_dir, sub))), 1, sub)
        self.assertTrue(self.kill_process(path, 'KILL').ok)
        self.assertEqual(self.wait_process(path), 137)
        self.assertEqual(self.listdir(os.path.join(self.run_dir, sub)), [], sub)

    def test_kill_errors(self):
        b = self.builder()
        path = self.start(b, ['sleep', '100'])
        self.wait_running(path)
        r = self.kill_process(path, 'NOTASIGNAL')
        self.assertError(r, kt.E_INVALID, 'NOTASIGNAL')
        self.assertEqual(self.process_props(path)['State'], 'running')
        self.assertTrue(self.kill_process(path, 'KILL').ok)
        self.assertEqual(self.wait_process(path), 137)
        # Not running any more.
        r = self.kill_process(path, 'KILL')
        self.assertFalse(r.ok, r)

    def test_resize(self):
        b = self.builder()
        path = self.start(b, ['sleep', '100'])
        self.wait_running(path)
        r = self.gcall(path, kr.PROCESS_IFACE + '.Resize', '40', '100')
        self.assertError(r, kt.E_INVALID)  # no terminal
        self.assertTrue(self.kill_process(path, 'KILL').ok)
        self.wait_process(path)

    def test_timeout_option(self):
        b = self.builder()
        started = time.monotonic()
        path = self.start(b, ['sleep', '100'], {'timeout': ('t', 'uint64 1000000')})
        self.assertEqual(self.wait_process(path), 137)
        self.assertLess(time.monotonic() - started, 15)
        r = self.captured(b, ['sh', '-c', 'echo before; sleep 100'], {'timeout': ('t', 'uint64 500000')})
        self.assertTrue(r.ok, r)
        self.assertEqual(captured_reply(r), (137, 'before\n', ''))

    def test_start_without_detach_dies_with_gdbus(self):
        b = self.builder()
        path = self.start(b, ['sleep', '100'], {'detach': False})
        self.assertEqual(self.wait_process(path), 137)

    def test_disconnect_kills(self):
        b = self.builder()
        conn = kt._Connection(self.env.bus_address)
        conn.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
        reply, _ = conn.call_and_wait(kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'Start', 'asa{sv}',
                                      [['sleep', '100'], {}])
        self.assertEqual(reply['type'], 'method_return', reply)
        path = reply['body'][0]
        pid = self.wait_running(path)['Pid']
        self.assertTrue(kr.pid_alive(pid, 'sleep'))
        conn.sock.close()
        self.wait_until(lambda: not kr.pid_alive(pid, 'sleep'), 15, 'the process outlived its caller')
        self.wait_until(lambda: not self.running_processes(), 15, 'the process is still listed as running')

    def test_detach_survives_disconnect(self):
        b = self.builder()
        conn = kt._Connection(self.env.bus_address)
        conn.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
        reply, _ = conn.call_and_wait(kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'Start', 'asa{sv}',
                                      [['sleep', '100'], {'detach': ('b', True)}])
        self.assertEqual(reply['type'], 'method_return', reply)
        path = reply['body'][0]
        pid = self.wait_running(path)['Pid']
        conn.sock.close()
        time.sleep(2)
        self.assertTrue(kr.pid_alive(pid, 'sleep'), 'a detached process died with its caller')
        self.assertEqual(self.process_props(path)['State'], 'running')
        self.assertTrue(self.kill_process(path, 'KILL').ok)
        self.assertEqual(self.wait_process(path), 137)

    def test_run_caller_leaving_kills(self):
        # A blocking Run whose caller goes away: the process is killed too.
        b = self.builder()
        conn = kt._Connection(self.env.bus_address)
        conn.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
        conn.call(kt.BUS_NAME, b.path, kt.BUILDER_IFACE, 'Run', 'asa{sv}', [['sleep', '100'], {}])
        self.wait_until(lambda: self.running_processes(), 15, 'Run did not start')
        path = self.running_processes()[0]
        pid = self.wait_running(path)['Pid']
        conn.sock.close()
        self.wait_until(lambda: not kr.pid_alive(pid, 'sleep'), 15, 'the process outlived its caller')

    def test_remove_busy_and_force(self):
        b = self.builder()
        path = self.start(b, ['sleep', '100'])
        pid = self.wait_running(path)['Pid']
        r = self.remove(b.path)
        self.assertError(r, kt.E_BUSY)
        self.assertIn(b.name, [e[1] for e in self.list_builders()])
        self.assertTrue(kr.pid_alive(pid, 'sleep'))
        r = self.remove(b.path, force=True)
        self.assertTrue(r.ok, r)
        self.assertFalse(kr.pid_alive(pid, 'sleep'), 'Remove(force) answered before the process ended')
        self.assertNotIn(b.name, [e[1] for e in self.list_builders()])
        self.assertFalse(os.path.exists(self.builder_dir(b.id)))
        self.assertEqual(self.rootfs_mounts(b), [])

    def test_processes_per_user_limit(self):
        # [Limits] ProcessesPerUser (64 by default) counts running processes of one uid, root's
        # too: one more Start answers LimitExceeded and starts nothing.
        limit = 64
        b = self.builder()
        paths = [self.start(b, ['sleep', '100']) for _ in range(limit)]
        for path in paths:
            self.wait_running(path)
        before = self.running_processes()
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Start', kt.gv_strv(['sleep', '100']),
                       kt.gv_dict({'detach': True}))
        self.assertError(r, kt.E_LIMIT)
        self.assertIn('64', r.message)
        self.assertEqual(sorted(self.running_processes()), sorted(before))
        r = self.remove(b.path, force=True)
        self.assertTrue(r.ok, r)
        # Below the limit again, a run works.
        b2 = self.builder()
        self.assertEqual(self.run_ok(b2.name, 'true'), '')

    def test_remove_force_through_cli(self):
        b = self.builder()
        child = self.spawn(b, 'sh', '-c', 'echo ready; sleep 100')
        self.assertEqual(child.stdout.readline(), 'ready\n')
        code, out, err = self.env.kiln('rm', b.name)
        self.assertEqual(code, 125, out)
        self.assertIn(b.name, err)
        code, out, err = self.env.kiln('rm', '--force', b.name)
        self.assertEqual((code, out), (0, b.id + '\n'), err)
        child.communicate(timeout=30)
        self.assertEqual(child.returncode, 137)

    def test_kilnd_stop_cleans_up(self):
        b = self.builder()
        path = self.start(b, ['sleep', '100'])
        detached = self.wait_running(path)['Pid']
        child = self.spawn(b, 'sh', '-c', 'echo ready; sleep 100')
        self.assertEqual(child.stdout.readline(), 'ready\n')
        self.env.restart_kilnd()
        # The client waiting in Wait hears that kilnd went away.
        _, err = child.communicate(timeout=30)
        self.assertEqual(child.returncode, 125, err)
        self.assertIn('disconnected', err)
        self.assertFalse(kr.pid_alive(detached, 'sleep'), 'a run outlived kilnd')
        self.assertEqual(self.leftovers(), {}, 'kilnd left these behind when it stopped')
        # The restarted kilnd runs in the builder as before; its descriptors are the new baseline.
        self.assertEqual(self.run_ok(b, 'echo', 'again'), 'again\n')
        self.fd_baseline = self.kilnd_fds()
        self.assertEqual(self.run_ok(b, 'true'), '')

    def test_processes_property(self):
        b = self.builder()
        self.assertEqual(self.props(b.path)['Processes'], [])
        paths = [self.start(b, ['sleep', '100']) for _ in range(3)]
        for p in paths:
            self.wait_running(p)
        self.assertEqual(sorted(self.props(b.path)['Processes']), sorted(paths))
        self.assertTrue(self.kill_process(paths[0], 'KILL').ok)
        self.wait_process(paths[0])
        self.wait_until(lambda: sorted(self.props(b.path)['Processes']) == sorted(paths[1:]), 10,
                        f'Processes still lists the exited {paths[0]}: {self.props(b.path)["Processes"]}')
        for p in paths[1:]:
            self.assertTrue(self.kill_process(p, 'KILL').ok)
            self.wait_process(p)

    def test_runtime_failure_leaves_nothing(self):
        b = self.builder()
        r = self.captured(b, ['true'], {'runtime_args': ['--no-such-runc-flag']})
        self.assertError(r, kr.E_RUNTIME_FAILED)
        self.assertEqual(self.props(b.path)['Processes'], [])

    def test_bad_options(self):
        b = self.builder()
        for options, fragment in (({'no_such_option': 'x'}, 'no_such_option'),
                                  ({'working_dir': 'relative'}, 'working_dir'),
                                  ({'terminal': 'yes'}, 'terminal'),
                                  ({'cap_add': ['CAP_NOT_REAL']}, 'CAP_NOT_REAL'),
                                  ({'ulimits': ['nofile=abc']}, 'nofile=abc'),
                                  ({'network': 'bogus'}, 'network'),
                                  ({'mounts': ['type=volume,destination=/x']}, 'type=volume')):
            r = self.captured(b, ['true'], options)
            self.assertError(r, kt.E_INVALID, fragment)
        self.assertEqual(self.props(b.path)['Processes'], [])


kr.parametrize(globals(), RunBus)

if __name__ == '__main__':
    kt.main()
