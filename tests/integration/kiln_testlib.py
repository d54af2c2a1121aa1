"""Helpers of kiln's service integration tests, on top of kiln_harness.

Each test module starts one kiln_harness.Env for all of its tests:

    import kiln_testlib as kt

    setUpModule = kt.setup_module
    tearDownModule = kt.teardown_module

    class T(kt.KilnTestCase):
        def test_x(self):
            path = self.create('b1')                       # Manager.CreateBuilder as root
            r = self.gcall(path, kt.BUILDER_IFACE + '.Configure', kt.gv_dict({'env': ['A=1']}),
                           user=kt.ALICE)
            self.assertError(r, kt.E_UNKNOWN_OBJECT)   # root's builder: not there for alice

    if __name__ == '__main__':
        kt.main()

Calls go through real clients: `gdbus call` (its errors carry the D-Bus error
name), `busctl --json=short` (structured replies,
--allow-interactive-authorization) and the kiln CLI. `busctl` prints no
error names, so where a busctl call's error name matters, BusMonitor (a
`busctl monitor` run as root) observes the reply on the bus.

Signals from kilnd are unicast to clients that have called it, and no stock
tool keeps a connection open after a call; Listener runs a minimal D-Bus
client (this file, run as a script by the test user) that calls kilnd once
(ListBuilders or GetManagedObjects) and then records every signal the bus
delivers to it. The same client makes the calls no stock tool can: with a
file descriptor argument (KilnTestCase.rawcall; busctl refuses 'h', gdbus
call cannot send descriptors).
"""
import fcntl
import json
import os
import pwd
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import unittest

try:
    import kiln_harness as kh
except ImportError:  # run as the Listener's client by a test user: not needed
    kh = None

BUS_NAME = 'org.kiln.Builder1'
MANAGER_PATH = '/org/kiln/Builder1'
BUILDER_PATH_PREFIX = '/org/kiln/Builder1/builder/'
MANAGER_IFACE = 'org.kiln.Builder1.Manager'
BUILDER_IFACE = 'org.kiln.Builder1.Builder'
PROPERTIES_IFACE = 'org.freedesktop.DBus.Properties'
OBJECT_MANAGER_IFACE = 'org.freedesktop.DBus.ObjectManager'

E_INVALID = 'org.kiln.Builder1.Error.InvalidArgument'
E_NOT_FOUND = 'org.kiln.Builder1.Error.NotFound'
E_EXISTS = 'org.kiln.Builder1.Error.Exists'
E_LIMIT = 'org.kiln.Builder1.Error.LimitExceeded'
E_BUSY = 'org.kiln.Builder1.Error.Busy'
E_ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
E_INTERACTIVE = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'
E_UNKNOWN_OBJECT = 'org.freedesktop.DBus.Error.UnknownObject'

ALICE = 'kiln-alice'
BOB = 'kiln-bob'

# Builder properties as in dbus/org.kiln.Builder1.Builder.xml.
BUILDER_PROPERTIES = {
    'Id': 's', 'Name': 's', 'Owner': 'u', 'From': 's', 'Created': 't', 'Isolation': 's',
    'UserNamespace': 's', 'Env': 'as', 'WorkingDir': 's', 'User': 's', 'Hostname': 's',
    'Entrypoint': 'as', 'Cmd': 'as', 'Shell': 'as', 'Volumes': 'as', 'Labels': 'a{ss}',
    'CapAdd': 'as', 'CapDrop': 'as', 'Ulimits': 'as', 'Processes': 'ao',
    'GroupAdd': 'as',  # run parity
    # Images (test_images.py)
    'StopSignal': 's', 'ExposedPorts': 'as', 'Layers': 'as', 'Image': 's',
    # The network settings of runs (docs/network.md)
    'Network': 's', 'NetworkOptions': 'as', 'Dns': 'as', 'DnsSearch': 'as', 'DnsOption': 'as',
    'AddHost': 'as', 'NoHosts': 'b',
}

ID_RE = re.compile(r'^[0-9a-f]{64}$')

# For commands a test user runs: the interpreter running the tests may live
# under /root (pyenv), which the users cannot enter.
USER_PYTHON = '/usr/bin/python3' if os.path.exists('/usr/bin/python3') else sys.executable


# -- GVariant text (arguments of gdbus call) ---------------------------------

def gv_str(s):
    escaped = s.replace('\\', '\\\\').replace("'", "\\'").replace('\n', '\\n').replace('\t', '\\t')
    return "'" + escaped + "'"


def gv_strv(items):
    if not items:
        return '@as []'
    return '[' + ', '.join(gv_str(i) for i in items) + ']'


def gv_value(v):
    """A Python value as GVariant text: str → s, list of str → as, dict of str → a{ss},
    bool → b, (type, text) → text as is (for anything else, e.g. ('s', "'x'"))."""
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, str):
        return gv_str(v)
    if isinstance(v, list):
        return gv_strv(v)
    if isinstance(v, dict):
        if not v:
            return '@a{ss} {}'
        return '{' + ', '.join(f'{gv_str(k)}: {gv_str(x)}' for k, x in v.items()) + '}'
    if isinstance(v, tuple):
        return v[1]
    raise TypeError(v)


def gv_dict(d=None, items=None):
    """a{sv} from a dict, or from a list of (key, value) pairs (keys may repeat)."""
    pairs = list(d.items()) if d else []
    pairs += items or []
    if not pairs:
        return '@a{sv} {}'
    return '{' + ', '.join(f'{gv_str(k)}: <{gv_value(v)}>' for k, v in pairs) + '}'


# -- results ------------------------------------------------------------------


def close_client(proc, timeout):
    """Ends a client process that reads its requests from stdin: closes its stdin, waits up to
    @timeout seconds, then kills it; closes its pipes."""
    if proc.poll() is None:
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        stream.close()

class CallResult:
    """What a client printed: ok, stdout, and for a failed gdbus call the D-Bus error
    name and message."""

    def __init__(self, cmd, code, out, err):
        self.cmd = cmd
        self.code = code
        self.out = out
        self.err = err
        self.ok = code == 0
        self.error_name = None
        self.message = None
        m = re.search(r'GDBus\.Error:([A-Za-z0-9_.]+): (.*)', err, re.S)
        if m:
            self.error_name = m.group(1)
            self.message = m.group(2).strip()

    def object_path(self):
        m = re.search(r"objectpath '([^']*)'", self.out)
        return m.group(1) if m else None

    def string(self):
        """The value of a gdbus reply that is one string: ('...',)."""
        m = re.fullmatch(r"\('(.*)',\)", self.out.strip(), re.S)
        return m.group(1) if m else None

    def __repr__(self):
        return (f'<{" ".join(self.cmd)}: exit {self.code}, error {self.error_name!r}, '
                f'message {self.message!r}, stdout {self.out.strip()!r}, stderr {self.err.strip()!r}>')


# -- the environment for a module ----------------------------------------------

ENV = None
_FAILED = False
_SCRATCH_COUNTER = 0


def setup_module(extra_conf=None):
    global ENV, _FAILED
    if os.geteuid() != 0:
        raise unittest.SkipTest('integration tests need root')
    _FAILED = False
    ENV = kh.Env().setup(extra_conf)


def teardown_module():
    global ENV
    if ENV is None:
        return
    env, ENV = ENV, None
    if _FAILED:
        env.dump_logs()
    env.stop(remove=not _FAILED)


def main():
    """unittest.main, with meson's skip status when not root."""
    if os.geteuid() != 0:
        print('SKIP: integration tests need root (they start a bus, polkitd and kilnd)')
        sys.exit(77)
    program = unittest.main(exit=False, verbosity=2)
    result = program.result
    if result.testsRun == len(result.skipped) and result.testsRun > 0:
        sys.exit(77)
    sys.exit(0 if result.wasSuccessful() else 1)


def read_conf_value(env, section, key, default):
    """An integer setting of the environment's kiln.conf, or @default."""
    current = None
    with open(os.path.join(env.dir, 'kiln.conf')) as f:
        for line in f:
            line = line.strip()
            if line.startswith('[') and line.endswith(']'):
                current = line[1:-1]
            elif current == section and '=' in line and not line.startswith('#'):
                k, v = line.split('=', 1)
                if k.strip() == key:
                    return int(v.strip())
    return default


class KilnTestCase(unittest.TestCase):
    """Base class: self.env is the module's Env; helpers for calls and state."""

    maxDiff = None

    @property
    def env(self):
        return ENV

    def run(self, result=None):
        global _FAILED
        before = len(result.failures) + len(result.errors) if result is not None else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            _FAILED = True
        return outcome

    # -- paths ----------------------------------------------------------------

    @property
    def state_dir(self):
        return os.path.join(self.env.dir, 'state')

    @property
    def builders_dir(self):
        return os.path.join(self.state_dir, 'builders')

    @property
    def layers_dir(self):
        return os.path.join(self.state_dir, 'layers')

    def builder_dir(self, id_):
        return os.path.join(self.builders_dir, id_)

    def unique_scratch_dir(self, name):
        """A new world-readable directory under the env's scratch dir, named NAME-N."""
        global _SCRATCH_COUNTER
        _SCRATCH_COUNTER += 1
        return self.env.scratch_dir(f'{name}-{_SCRATCH_COUNTER}')

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def uid(self, user):
        return 0 if user is None else pwd.getpwnam(user).pw_uid

    # -- clients ----------------------------------------------------------------

    def gcall(self, path, method, *args, user=None, dest=BUS_NAME, timeout=60):
        """gdbus call --system; @method is INTERFACE.METHOD; @args GVariant text."""
        cmd = ['gdbus', 'call', '--system', '--dest', dest, '--object-path', path,
               '--method', method, '--timeout', str(timeout), '--'] + list(args)
        code, out, err = self.env.run(cmd, user=user, timeout=timeout + 30)
        return CallResult(cmd, code, out, err)

    def busctl(self, *args, user=None, json_out=True, check=True, pass_fds=None):
        """busctl ARGS (--json=short); returns the parsed JSON, or the CallResult
        when @check is false."""
        cmd = ['busctl'] + (['--json=short'] if json_out else []) + list(args)
        code, out, err = self.env.run(cmd, user=user)
        if not check:
            return CallResult(cmd, code, out, err)
        self.assertEqual(code, 0, f'{cmd} as {user or "root"} failed: {err}')
        return json.loads(out) if json_out else out

    def bcall(self, path, iface, method, signature='', *args, user=None):
        """busctl call, returning the reply's data list."""
        reply = self.busctl('call', BUS_NAME, path, iface, method,
                            *([signature] + [str(a) for a in args] if signature else []), user=user)
        return reply['data'] if reply else []

    def create(self, name='', source='scratch', options=None, user=None):
        """CreateBuilder through gdbus; asserts success and returns the object path."""
        r = self.gcall(MANAGER_PATH, MANAGER_IFACE + '.CreateBuilder', name, source,
                       gv_dict(options), user=user)
        self.assertTrue(r.ok, f'CreateBuilder({name!r}, {source!r}) as {user or "root"}: {r}')
        path = r.object_path()
        self.assertIsNotNone(path, r)
        return path

    def create_call(self, name='', source='scratch', options=None, user=None):
        return self.gcall(MANAGER_PATH, MANAGER_IFACE + '.CreateBuilder', name, source,
                          gv_dict(options) if not isinstance(options, str) else options, user=user)

    def get_builder(self, name_or_id, user=None):
        return self.gcall(MANAGER_PATH, MANAGER_IFACE + '.GetBuilder', gv_str(name_or_id), user=user)

    def configure(self, path, changes, user=None):
        return self.gcall(path, BUILDER_IFACE + '.Configure',
                          changes if isinstance(changes, str) else gv_dict(changes), user=user)

    def remove(self, path, user=None, force=None):
        options = gv_dict({'force': force}) if force is not None else gv_dict()
        return self.gcall(path, BUILDER_IFACE + '.Remove', options, user=user)

    def list_builders(self, user=None):
        """ListBuilders as [(id, name, owner, from, path)], through busctl."""
        data = self.bcall(MANAGER_PATH, MANAGER_IFACE, 'ListBuilders', user=user)
        return [tuple(entry) for entry in data[0]]

    def props(self, path, user=None):
        """Properties.GetAll of the Builder interface as {name: value}, through busctl."""
        data = self.bcall(path, PROPERTIES_IFACE, 'GetAll', 's', BUILDER_IFACE, user=user)
        return {k: v['data'] for k, v in data[0].items()}

    def prop_types(self, path, user=None):
        data = self.bcall(path, PROPERTIES_IFACE, 'GetAll', 's', BUILDER_IFACE, user=user)
        return {k: v['type'] for k, v in data[0].items()}

    def managed_objects(self, user=None):
        data = self.bcall(MANAGER_PATH, OBJECT_MANAGER_IFACE, 'GetManagedObjects', user=user)
        return data[0]

    def tree(self, user=None):
        out = self.busctl('--list', 'tree', BUS_NAME, user=user, json_out=False)
        return [line.strip() for line in out.splitlines() if line.strip()]

    def observed_busctl(self, member, path, busctl_args, user=None, fd_path=None):
        """Runs `busctl BUSCTL_ARGS` as @user while a bus monitor watches, and returns
        (busctl's CallResult, the call of @member on @path seen on the bus, kilnd's reply).
        With @fd_path, busctl runs with that path open (by @user, read-only) as fd 3, for
        an 'h' argument of 3."""
        cmd = ['busctl'] + list(busctl_args)
        env = None
        if fd_path is not None:
            cmd = ['sh', '-c', 'exec busctl "$@" 3<"$KILN_TEST_FD_PATH"', 'sh'] + list(busctl_args)
            env = {'KILN_TEST_FD_PATH': fd_path}
        with BusMonitor(self.env) as monitor:
            code, out, err = self.env.run(cmd, user=user, env=env)
        result = CallResult(cmd, code, out, err)
        pairs = [(c, r) for c, r in monitor.replies_to(member, path) if c.get('destination') == BUS_NAME]
        self.assertEqual(len(pairs), 1, f'expected one {member} call on the bus, saw {pairs}; {result}')
        call, reply = pairs[0]
        self.assertIsNotNone(reply, f'kilnd did not answer {member}')
        return result, call, reply

    def rawcall(self, path, interface, member, signature='', args=(), user=None, fd_paths=()):
        """A method call through this file's own minimal D-Bus client, for what no stock
        tool sends: file descriptors (busctl refuses 'h', gdbus call cannot). @fd_paths
        are opened read-only by the client, as @user; an 'h' argument is an index into
        them. Returns the reply: {'type', 'error_name', 'body', ...}."""
        with open(os.path.abspath(__file__)) as f:
            source = f.read()
        spec = {'path': path, 'interface': interface, 'member': member, 'signature': signature,
                'args': list(args), 'fd_paths': list(fd_paths)}
        code, out, err = self.env.run([USER_PYTHON, '-c', source, 'call', self.env.bus_address,
                                       json.dumps(spec)], user=user)
        self.assertEqual(code, 0, f'raw call {member} as {user or "root"} failed: {err}')
        return json.loads(out)

    # -- state ----------------------------------------------------------------

    def snapshot(self):
        """What must not change when a call fails: the builders as root sees them, and
        what is on disk under STATE."""
        return {
            'builders': sorted(self.list_builders()),
            'builder_dirs': self.listdir(self.builders_dir),
            'layers': self.listdir(self.layers_dir),
        }

    def remove_all_builders(self):
        """Removes every builder (as root), and checks none is left on the bus or disk."""
        for entry in self.list_builders():
            r = self.remove(entry[4])
            self.assertTrue(r.ok, f'cleanup: Remove {entry[1]}: {r}')
        self.assertEqual(self.list_builders(), [])
        self.assertEqual(self.listdir(self.builders_dir), [], 'builder dirs left after Remove')

    def assertError(self, result, name, message_contains=None):
        self.assertFalse(result.ok, f'expected {name}, the call succeeded: {result}')
        self.assertEqual(result.error_name, name, result)
        for fragment in ([message_contains] if isinstance(message_contains, str) else message_contains or []):
            self.assertIn(fragment, result.message or '', result)

    def assertOk(self, result):
        self.assertTrue(result.ok, result)
        return result

    def make_rootfs(self, name, extra=None):
        """A small world-readable root file system under the env's scratch dir: files, a
        subdir, a symlink. Returns its path."""
        path = self.env.scratch_dir(name)
        os.makedirs(os.path.join(path, 'etc'), mode=0o755)
        os.makedirs(os.path.join(path, 'usr', 'share', 'doc'), mode=0o755)
        with open(os.path.join(path, 'etc', 'os-release'), 'w') as f:
            f.write(f'ID=kiln-test\nNAME={name}\n')
        with open(os.path.join(path, 'usr', 'share', 'doc', 'README'), 'w') as f:
            f.write('hello from ' + name + '\n')
        os.symlink('usr/share/doc/README', os.path.join(path, 'README'))
        for p in (os.path.join(path, 'etc', 'os-release'), os.path.join(path, 'usr', 'share', 'doc', 'README')):
            os.chmod(p, 0o644)
        for d in (path, os.path.join(path, 'etc'), os.path.join(path, 'usr'),
                  os.path.join(path, 'usr', 'share'), os.path.join(path, 'usr', 'share', 'doc')):
            os.chmod(d, 0o755)
        if extra:
            extra(path)
        return path


# -- busctl monitor: error names of busctl calls, unicast signals --------------

class BusMonitor:
    """`busctl monitor --json=short` as root, for the duration of a with-block."""

    def __init__(self, env):
        self.env = env
        self.proc = None
        self.messages = []

    def __enter__(self):
        full_env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        self.proc = subprocess.Popen(['busctl', '--json=short', 'monitor'], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=full_env)
        # busctl says so on stderr once it is a monitor.
        line = _readline(self.proc.stderr, 10)
        if b'Monitoring' not in line:
            self.proc.kill()
            raise RuntimeError(f'busctl monitor did not start: {line!r}')
        return self

    def __exit__(self, *exc):
        # Let the last messages arrive, then stop.
        time.sleep(0.3)
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        for line in out.decode(errors='replace').splitlines():
            line = line.strip()
            if line.startswith('{'):
                try:
                    self.messages.append(json.loads(line))
                except ValueError:
                    pass
        return False

    def replies_to(self, member, path=None):
        """[(call, reply)] for each call of @member (on @path) seen, reply None if none."""
        pairs = []
        for call in self.messages:
            if call.get('type') != 'method_call' or call.get('member') != member:
                continue
            if path is not None and call.get('path') != path:
                continue
            reply = None
            for m in self.messages:
                if m.get('type') in ('method_return', 'error') and m.get('destination') == call.get('sender') \
                        and m.get('reply_cookie') == call.get('cookie'):
                    reply = m
                    break
            pairs.append((call, reply))
        return pairs

    def signals(self, member=None, destination=None):
        return [m for m in self.messages if m.get('type') == 'signal'
                and (member is None or m.get('member') == member)
                and (destination is None or m.get('destination') == destination)]


def _readline(stream, timeout):
    """One line from a binary pipe, waiting at most @timeout seconds."""
    fd = stream.fileno()
    data = b''
    deadline = time.monotonic() + timeout
    while not data.endswith(b'\n'):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data


# -- Listener: a connection of a test user that has called kilnd ----------------

class Listener:
    """A D-Bus connection of @user that called kilnd (@first_call: 'ListBuilders' or
    'GetManagedObjects') and records the signals delivered to it (kilnd sends them
    unicast to such clients)."""

    def __init__(self, env, user=None, first_call='ListBuilders'):
        self.env = env
        self.user = user
        self.signals = []
        self.unique_name = None
        self._buffer = b''
        with open(os.path.abspath(__file__)) as f:
            source = f.read()
        cmd = [USER_PYTHON, '-c', source, 'listen', env.bus_address, first_call]
        cwd = None
        if user is not None:
            cmd = ['runuser', '-u', user, '--'] + cmd
            cwd = pwd.getpwnam(user).pw_dir
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd)
        first = self._next(15)
        if not first or 'unique_name' not in first:
            err = self.proc.stderr.read1(65536) if self.proc.poll() is not None else b''
            self.close()
            raise RuntimeError(f'listener as {user} did not start: {first!r} {err!r}')
        self.unique_name = first['unique_name']
        self.list_reply = first.get('reply')

    def _next(self, timeout):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b'\n' not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b'\n', 1)
        return json.loads(line)

    def wait_for(self, predicate, timeout=10):
        """The first signal (recorded earlier or arriving within @timeout) that
        @predicate accepts, or None."""
        for s in self.signals:
            if predicate(s):
                return s
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s = self._next(left)
            if s is None:
                return None
            self.signals.append(s)
            if predicate(s):
                return s

    def drain(self, seconds=1.0):
        """Records whatever arrives within @seconds; returns all signals so far."""
        self.wait_for(lambda s: False, timeout=seconds)
        return self.signals

    def close(self):
        close_client(self.proc, timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- a minimal D-Bus client (run by Listener as the test user) -----------------

def _align(n, a):
    return (n + a - 1) // a * a


class _Writer:
    def __init__(self):
        self.buf = bytearray()

    def pad(self, a):
        self.buf += b'\0' * (_align(len(self.buf), a) - len(self.buf))

    def put(self, sig, value):
        """Marshals @value of the single complete type @sig (basic types, v as (sig, value))."""
        c = sig[0]
        fixed = {'y': ('B', 1), 'b': ('I', 4), 'n': ('h', 2), 'q': ('H', 2), 'i': ('i', 4),
                 'u': ('I', 4), 'x': ('q', 8), 't': ('Q', 8), 'd': ('d', 8), 'h': ('I', 4)}
        if c in fixed:
            fmt, size = fixed[c]
            self.pad(size)
            self.buf += struct.pack('<' + fmt, int(value) if c != 'd' else value)
        elif c in 'so':
            data = value.encode()
            self.pad(4)
            self.buf += struct.pack('<I', len(data)) + data + b'\0'
        elif c == 'g':
            data = value.encode()
            self.buf += struct.pack('<B', len(data)) + data + b'\0'
        elif c == 'v':
            vsig, vval = value
            self.put('g', vsig)
            self.put(vsig, vval)
        elif c == 'a':
            elem = _complete_type(sig, 1)
            self.pad(4)
            at = len(self.buf)
            self.buf += b'\0\0\0\0'
            self.pad(8 if elem[0] in 'xtd({' else _alignment(elem))
            start = len(self.buf)
            items = value.items() if elem[0] == '{' else value
            for item in items:
                self.put(elem, item)
            struct.pack_into('<I', self.buf, at, len(self.buf) - start)
        elif c in '({':
            self.pad(8)
            inner = sig[1:-1]
            i = 0
            for v in value:
                t = _complete_type(inner, i)
                self.put(t, v)
                i += len(t)
        else:
            raise ValueError(sig)


def _alignment(sig):
    return {'y': 1, 'g': 1, 'v': 1, 'n': 2, 'q': 2, 'b': 4, 'i': 4, 'u': 4, 'h': 4, 's': 4, 'o': 4,
            'a': 4, 'x': 8, 't': 8, 'd': 8, '(': 8, '{': 8}[sig[0]]


def _complete_type(sig, i):
    """The complete type starting at sig[i]."""
    c = sig[i]
    if c == 'a':
        return 'a' + _complete_type(sig, i + 1)
    if c in '({':
        close = ')' if c == '(' else '}'
        depth, j = 0, i
        while True:
            if sig[j] in '({':
                depth += 1
            elif sig[j] in ')}':
                depth -= 1
                if depth == 0:
                    return sig[i:j + 1]
            j += 1
    return c


class _Reader:
    def __init__(self, data, pos=0):
        self.data = data
        self.pos = pos

    def pad(self, a):
        self.pos = _align(self.pos, a)

    def get(self, sig):
        c = sig[0]
        fixed = {'y': ('B', 1), 'b': ('I', 4), 'n': ('h', 2), 'q': ('H', 2), 'i': ('i', 4),
                 'u': ('I', 4), 'x': ('q', 8), 't': ('Q', 8), 'd': ('d', 8), 'h': ('I', 4)}
        if c in fixed:
            fmt, size = fixed[c]
            self.pad(size)
            (v,) = struct.unpack_from('<' + fmt, self.data, self.pos)
            self.pos += size
            return bool(v) if c == 'b' else v
        if c in 'so':
            self.pad(4)
            (n,) = struct.unpack_from('<I', self.data, self.pos)
            s = self.data[self.pos + 4:self.pos + 4 + n].decode(errors='replace')
            self.pos += 4 + n + 1
            return s
        if c == 'g':
            n = self.data[self.pos]
            s = self.data[self.pos + 1:self.pos + 1 + n].decode()
            self.pos += n + 2
            return s
        if c == 'v':
            vsig = self.get('g')
            return self.get(vsig)
        if c == 'a':
            elem = _complete_type(sig, 1)
            self.pad(4)
            (n,) = struct.unpack_from('<I', self.data, self.pos)
            self.pos += 4
            self.pad(_alignment(elem))
            end = self.pos + n
            items = []
            while self.pos < end:
                items.append(self.get(elem))
            return dict(items) if elem[0] == '{' else items
        if c in '({':
            self.pad(8)
            inner = sig[1:-1]
            out, i = [], 0
            while i < len(inner):
                t = _complete_type(inner, i)
                out.append(self.get(t))
                i += len(t)
            return tuple(out)
        raise ValueError(sig)

    def get_all(self, signature):
        out, i = [], 0
        while i < len(signature):
            t = _complete_type(signature, i)
            out.append(self.get(t))
            i += len(t)
        return out


_FIELDS = {1: 'path', 2: 'interface', 3: 'member', 4: 'error_name', 5: 'reply_serial',
           6: 'destination', 7: 'sender', 8: 'signature', 9: 'unix_fds'}
_TYPES = {1: 'method_call', 2: 'method_return', 3: 'error', 4: 'signal'}


class _Connection:
    def __init__(self, address):
        path = None
        for part in address.split(';')[0].split(':', 1)[1].split(','):
            k, _, v = part.partition('=')
            if k == 'path':
                path = v
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.serial = 0
        self.inbuf = b''
        self.sock.sendall(b'\0AUTH EXTERNAL ' + str(os.geteuid()).encode().hex().encode() + b'\r\n')
        line = self._auth_line()
        if not line.startswith(b'OK'):
            raise RuntimeError(f'authentication failed: {line!r}')
        self.sock.sendall(b'NEGOTIATE_UNIX_FD\r\n')
        line = self._auth_line()
        if not line.startswith(b'AGREE_UNIX_FD'):
            raise RuntimeError(f'the bus does not pass file descriptors: {line!r}')
        self.sock.sendall(b'BEGIN\r\n')

    def _auth_line(self):
        while b'\r\n' not in self.inbuf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError('bus closed the connection')
            self.inbuf += chunk
        line, self.inbuf = self.inbuf.split(b'\r\n', 1)
        return line

    def call(self, destination, path, interface, member, signature='', args=(), fds=(), flags=0):
        self.serial += 1
        body = _Writer()
        i = 0
        for a in args:
            t = _complete_type(signature, i)
            body.put(t, a)
            i += len(t)
        fields = [(1, ('o', path)), (3, ('s', member)), (6, ('s', destination))]
        if interface:
            fields.append((2, ('s', interface)))
        if signature:
            fields.append((8, ('g', signature)))
        if fds:
            fields.append((9, ('u', len(fds))))
        header = _Writer()
        header.buf += b'l' + bytes([1, flags, 1])
        header.buf += struct.pack('<II', len(body.buf), self.serial)
        header.put('a(yv)', fields)
        header.pad(8)
        data = bytes(header.buf) + bytes(body.buf)
        if fds:
            import array
            sent = self.sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', fds))])
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)
        return self.serial

    def read_message(self, timeout=None):
        """The next message as a dict, or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            msg = self._parse()
            if msg is not None:
                return msg
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError('bus closed the connection')
            self.inbuf += chunk

    def _parse(self):
        if len(self.inbuf) < 16:
            return None
        if self.inbuf[0:1] != b'l':
            raise RuntimeError('big-endian messages are not supported')
        body_len, _serial, fields_len = struct.unpack_from('<III', self.inbuf, 4)
        header_end = _align(16 + fields_len, 8)
        total = header_end + body_len
        if len(self.inbuf) < total:
            return None
        data, self.inbuf = self.inbuf[:total], self.inbuf[total:]
        r = _Reader(data, 12)
        fields = r.get('a(yv)')
        msg = {'type': _TYPES.get(data[1], str(data[1]))}
        for code, value in fields:
            if code in _FIELDS:
                msg[_FIELDS[code]] = value
        signature = msg.get('signature', '')
        try:
            msg['body'] = _Reader(data, header_end).get_all(signature) if signature else []
        except Exception as e:  # keep the message even if its body defeats this parser
            msg['body_error'] = str(e)
        return msg

    def call_and_wait(self, *args, **kwargs):
        serial = self.call(*args, **kwargs)
        pending = []
        while True:
            m = self.read_message(30)
            if m is None:
                raise RuntimeError('no reply')
            if m['type'] in ('method_return', 'error') and m.get('reply_serial') == serial:
                return m, pending
            pending.append(m)


def _listen_main(address, first_call):
    """Hello, @first_call on kilnd, then one JSON line per signal received until stdin closes."""
    conn = _Connection(address)
    hello, _ = conn.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
    unique = hello['body'][0]
    interface = OBJECT_MANAGER_IFACE if first_call == 'GetManagedObjects' else MANAGER_IFACE
    reply, early = conn.call_and_wait(BUS_NAME, MANAGER_PATH, interface, first_call)
    print(json.dumps({'unique_name': unique, 'reply': reply}), flush=True)
    for m in early:
        if m['type'] == 'signal':
            print(json.dumps(m, default=str), flush=True)
    while True:
        ready, _, _ = select.select([conn.sock, sys.stdin], [], [], None)
        if sys.stdin in ready and not sys.stdin.buffer.read1(4096):
            return 0
        if conn.sock in ready:
            chunk = conn.sock.recv(65536)
            if not chunk:
                return 0
            conn.inbuf += chunk
            m = conn._parse()
            while m is not None:
                if m['type'] == 'signal' and m.get('sender') != 'org.freedesktop.DBus':
                    print(json.dumps(m, default=str), flush=True)
                m = conn._parse()


def _call_main(address, spec_json):
    """One method call described by a JSON object (dest, path, interface, member, signature,
    args, fd_paths: files this process opens read-only and passes, 'h' values index them,
    flags); prints the reply as JSON."""
    spec = json.loads(spec_json)
    fds = [os.open(p, os.O_RDONLY | os.O_CLOEXEC) for p in spec.get('fd_paths', [])]
    conn = _Connection(address)
    conn.call_and_wait('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'Hello')
    reply, _ = conn.call_and_wait(spec.get('dest', BUS_NAME), spec['path'], spec.get('interface'), spec['member'],
                                  spec.get('signature', ''), spec.get('args', []), fds=fds,
                                  flags=spec.get('flags', 0))
    print(json.dumps(reply, default=str), flush=True)
    return 0


if __name__ == '__main__' and len(sys.argv) >= 4 and sys.argv[1] == 'listen':
    sys.exit(_listen_main(sys.argv[2], sys.argv[3]))
if __name__ == '__main__' and len(sys.argv) >= 4 and sys.argv[1] == 'call':
    sys.exit(_call_main(sys.argv[2], sys.argv[3]))


# -- on a terminal: what a user at a terminal has (the polkit agent prompts there) ----------------

PKTTYAGENT = '/usr/bin/pkttyagent'


def proc_stat(pid):
    """(state, ppid, comm) of @pid from /proc/PID/stat, or None once it is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except OSError:
        return None
    comm = stat[stat.index('(') + 1:stat.rindex(')')]
    fields = stat[stat.rindex(')') + 2:].split()
    return fields[0], int(fields[1]), comm


def process_table():
    """{pid: (state, ppid, comm)} of every process, from /proc."""
    table = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            st = proc_stat(int(entry))
            if st:
                table[int(entry)] = st
    return table


def processes_below(pid):
    """The descendants of @pid as {pid: (comm, state)}, from /proc."""
    children = {}
    for child, (state, ppid, comm) in process_table().items():
        children.setdefault(ppid, []).append((child, comm, state))
    found, todo = {}, [pid]
    while todo:
        for child, comm, state in children.get(todo.pop(), []):
            found[child] = (comm, state)
            todo.append(child)
    return found


def is_running(pid):
    """False once @pid has exited (a zombie that nobody reaped yet counts as exited)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(')') + 2] not in 'ZX'


class TerminalKiln:
    """kiln run as @user with a pseudo-terminal as stdin and controlling terminal (what a
    user at a terminal has; pkttyagent prompts on /dev/tty), stdout and stderr as pipes."""

    def __init__(self, env, user, *args, linger=False):
        self.master, slave = os.openpty()
        full_env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=env.bus_address)
        command = [env.kiln_cli] + list(args)
        if linger:
            # The session stays after kiln exits: the terminal does not hang up, so nothing
            # but kiln's own doing stops what it started.
            command = ['sh', '-c', '"$0" "$@"; exec sleep 120'] + command
        self.proc = subprocess.Popen(
            ['runuser', '-u', user, '--'] + command,
            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd='/',
            start_new_session=True,
            # After setsid: the terminal on stdin becomes the controlling terminal.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.screen = ''

    def read_until(self, text, timeout=30):
        """Reads what appears on the terminal until @text has; False if it did not in time."""
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if not ready:
                if self.proc.poll() is not None:  # kiln is gone and nothing more came
                    return False
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: no one has the terminal open any more
                return text in self.screen
            if not data:
                return text in self.screen
            self.screen += data.decode(errors='replace')
        return True

    def drain(self):
        """Reads what is left on the terminal."""
        while select.select([self.master], [], [], 0.1)[0]:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            self.screen += data.decode(errors='replace')

    def wait_echo_off(self, timeout=30):
        """Waits until the terminal stops echoing: a password is being read. (pkttyagent turns
        echo off with TCSAFLUSH, which drops what was typed before.)"""
        deadline = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ECHO:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def type(self, data):
        os.write(self.master, data)

    def kiln_pid(self):
        for pid, (comm, _) in processes_below(self.proc.pid).items():
            if comm == 'kiln':
                return pid
        return None

    def agents(self):
        """The pkttyagent processes below kiln."""
        return [pid for pid, (comm, _) in processes_below(self.proc.pid).items() if comm == 'pkttyagent']

    def finish(self, timeout=30):
        """Waits for kiln to exit; (exit code, stdout, stderr, terminal output)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.drain()
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f'kiln did not exit in {timeout} s; terminal: {self.screen!r}\n'
                                 f'stdout: {out!r}\nstderr: {err!r}')
        self.drain()
        return self.proc.returncode, out.decode(), err.decode(), self.screen

    def kill(self):
        for pid in processes_below(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self):
        if self.proc.poll() is None:
            self.kill()
            self.proc.communicate()
        os.close(self.master)
