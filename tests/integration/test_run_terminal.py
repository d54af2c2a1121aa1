#!/usr/bin/env python3
"""`kiln run -t` with real runc, as root: the command gets a terminal of its own (through
script(1) and through a pty this test holds), with the caller's size and later sizes
(SIGWINCH becomes Process.Resize), ^C goes to the container as a byte, and kiln's terminal is
in raw mode while the command runs and restored afterwards on every way out. Parametrized over
isolation modes (kiln_runlib.ISOLATIONS); after each test nothing may be left behind."""
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_runlib as kr  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kr.setup_module
tearDownModule = kr.teardown_module


class RunTerminal(kr.RunTestCase):

    def test_terminal_through_script(self):
        b = self.builder()
        code, out, err = self.env.run(['script', '-qec', f'{self.env.kiln_cli} run -t {b.name} tty', '/dev/null'])
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r'/dev/pts/\d+')
        # Without -t the command has no terminal, even on one.
        code, out, err = self.env.run(['script', '-qec', f'{self.env.kiln_cli} run {b.name} tty', '/dev/null'])
        self.assertIn('not a tty', out + err)

    def test_terminal_flag_values(self):
        """--terminal=false means no terminal and --terminal=true one, as buildah's flags read;
        GLib alone took any --flag=VALUE as --flag."""
        b = self.builder()
        for flag, has_terminal in (('--terminal=false', False), ('--terminal=true', True), ('-t', True),
                                   ('--tty=false', False), ('--terminal=0', False),
                                   ('--terminal --terminal=false', False),
                                   ('--terminal=false --terminal', True)):
            code, out, err = self.env.run(['script', '-qec', f'{self.env.kiln_cli} run {flag} {b.name} tty',
                                           '/dev/null'])
            if has_terminal:
                self.assertEqual(code, 0, f'{flag}: {out} {err}')
                self.assertRegex(out, r'/dev/pts/\d+', flag)
            else:
                self.assertIn('not a tty', out + err, flag)
        code, out, err = self.env.run([self.env.kiln_cli, 'run', '--terminal=maybe', b.name, 'tty'])
        self.assertEqual(code, 125)
        self.assertIn("--terminal takes true or false, not 'maybe'", err)
        # A flag in the command's own arguments is the command's, not kiln's.
        out = self.run_ok(b, 'echo', '--terminal=false', '-t')
        self.assertEqual(out, '--terminal=false -t\n')

    def open_pty(self, rows, cols):
        master, slave = os.openpty()
        self.addCleanup(os.close, master)
        self.addCleanup(os.close, slave)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', rows, cols, 0, 0))
        return master, slave

    def spawn_on_pty(self, slave, *args):
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        child = subprocess.Popen([self.env.kiln_cli, 'run'] + [str(a) for a in args], stdin=slave, stdout=slave,
                                 stderr=slave, env=env)
        self.children.append(child)
        return child

    def read_until(self, master, text, timeout=15):
        data = b''
        deadline = time.monotonic() + timeout
        while text.encode() not in data and time.monotonic() < deadline:
            data += kr.read_available(master, 0.2)
        self.assertIn(text.encode(), data)
        return data.decode(errors='replace')

    def test_terminal_size_and_resize(self):
        b = self.builder()
        master, slave = self.open_pty(30, 100)
        before = termios.tcgetattr(slave)
        child = self.spawn_on_pty(slave, '-t', b, 'sh', '-c', 'stty size; read x; stty size; read y; exit 5')
        self.read_until(master, '30 100')
        # kiln puts its terminal in raw mode when Start answers, which may come after the command's
        # first output.
        self.assertTrue(self.wait_until(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON, 10),
                        'the terminal is not in raw mode')
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 25, 90, 0, 0))
        child.send_signal(signal.SIGWINCH)
        time.sleep(0.5)
        os.write(master, b'\r')
        self.read_until(master, '25 90')
        os.write(master, b'\r')
        self.assertEqual(child.wait(timeout=30), 5)
        self.assertEqual(termios.tcgetattr(slave), before, 'the terminal was not restored')

    def test_terminal_restored_after_signal(self):
        b = self.builder()
        master, slave = self.open_pty(24, 80)
        before = termios.tcgetattr(slave)
        child = self.spawn_on_pty(slave, '-t', b, 'sh', '-c', 'trap "exit 6" TERM; echo ready; sleep 60 & wait')
        self.read_until(master, 'ready')
        self.assertFalse(termios.tcgetattr(slave)[3] & termios.ICANON)
        child.send_signal(signal.SIGTERM)
        self.assertEqual(child.wait(timeout=30), 6)
        self.assertEqual(termios.tcgetattr(slave), before, 'the terminal was not restored after SIGTERM')

    def test_terminal_restored_when_kiln_dies(self):
        # A signal kiln does not pass on and dies of (SIGPIPE: no core file) still restores the
        # terminal; kiln's connection closing then kills the command.
        b = self.builder()
        master, slave = self.open_pty(24, 80)
        before = termios.tcgetattr(slave)
        child = self.spawn_on_pty(slave, '-t', b, 'sh', '-c', 'echo ready; sleep 60')
        self.read_until(master, 'ready')
        self.assertFalse(termios.tcgetattr(slave)[3] & termios.ICANON)
        child.send_signal(signal.SIGPIPE)
        self.assertEqual(child.wait(timeout=30), -signal.SIGPIPE)
        self.assertEqual(termios.tcgetattr(slave), before, 'the terminal stayed raw after kiln died')
        self.wait_until(lambda: not self.running_processes(), 15, 'the command outlived kiln')

    def test_terminal_restored_after_failure(self):
        b = self.builder()
        master, slave = self.open_pty(24, 80)
        before = termios.tcgetattr(slave)
        child = self.spawn_on_pty(slave, '-t', b, 'no-such-command')
        self.assertEqual(child.wait(timeout=30), 127)
        self.assertEqual(termios.tcgetattr(slave), before)
        child = self.spawn_on_pty(slave, '-t', '--cap-add', 'NOPE', b, 'true')
        self.assertEqual(child.wait(timeout=30), 125)
        self.assertEqual(termios.tcgetattr(slave), before)

    def test_terminal_ctrl_c_goes_to_container(self):
        b = self.builder()
        master, slave = self.open_pty(24, 80)
        child = self.spawn_on_pty(slave, '-t', b, 'sh', '-c', 'trap "echo caught; exit 8" INT; echo ready; '
                                                              'sleep 60 & wait')
        self.read_until(master, 'ready')
        os.write(master, b'\x03')  # ^C: a byte in raw mode, SIGINT in the container's terminal
        self.read_until(master, 'caught')
        self.assertEqual(child.wait(timeout=30), 8)


kr.parametrize(globals(), RunTerminal)

if __name__ == '__main__':
    kt.main()
