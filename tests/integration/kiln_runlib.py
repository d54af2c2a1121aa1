"""Helpers of the run tests (test_run*.py), on top of kiln_testlib.

    import kiln_runlib as kr

    setUpModule = kr.setup_module
    tearDownModule = kr.teardown_module

    class RunCases(kr.RunTestCase):           # tests, written once
        def test_x(self):
            b = self.builder()                 # busybox builder, isolation self.isolation
            out = self.run_ok(b, 'echo', 'hi')  # kiln run B echo hi, exit 0 asserted
            ...

    kr.parametrize(globals(), RunCases)       # RunCases_oci (and _chroot once it is in ISOLATIONS)

Every test runs against real runc. After each test RunTestCase checks what must
be left behind: no mounts under the environment's directory, no bundles under
RUN/bundles, no runtime state under RUN/runtime, and kilnd's descriptor count
back to what it was before the test.
"""
import os
import re
import select
import subprocess
import time
import unittest

import kiln_testlib as kt

# Isolation modes the run tests cover; 'chroot' joins when kiln-isolate does.
ISOLATIONS = ('oci', 'chroot')

PROCESS_IFACE = 'org.kiln.Builder1.Process'
PROCESS_PATH_PREFIX = '/org/kiln/Builder1/process/'
E_RUNTIME_FAILED = 'org.kiln.Builder1.Error.RuntimeFailed'

DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# linux/capability.h
CAPS = {
    'CHOWN': 0, 'DAC_OVERRIDE': 1, 'DAC_READ_SEARCH': 2, 'FOWNER': 3, 'FSETID': 4, 'KILL': 5,
    'SETGID': 6, 'SETUID': 7, 'SETPCAP': 8, 'LINUX_IMMUTABLE': 9, 'NET_BIND_SERVICE': 10,
    'NET_BROADCAST': 11, 'NET_ADMIN': 12, 'NET_RAW': 13, 'IPC_LOCK': 14, 'IPC_OWNER': 15,
    'SYS_MODULE': 16, 'SYS_RAWIO': 17, 'SYS_CHROOT': 18, 'SYS_PTRACE': 19, 'SYS_PACCT': 20,
    'SYS_ADMIN': 21, 'SYS_BOOT': 22, 'SYS_NICE': 23, 'SYS_RESOURCE': 24, 'SYS_TIME': 25,
    'SYS_TTY_CONFIG': 26, 'MKNOD': 27, 'LEASE': 28, 'AUDIT_WRITE': 29, 'AUDIT_CONTROL': 30,
    'SETFCAP': 31,
}
# buildah's (containers.conf) default capabilities.
DEFAULT_CAPS = ('CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'NET_BIND_SERVICE', 'SETFCAP',
                'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT')


def cap_mask(names):
    mask = 0
    for n in names:
        mask |= 1 << CAPS[n]
    return mask


# Applets the run tests use, on top of make_busybox_rootfs's defaults.
APPLETS = ['sh', 'ls', 'cat', 'echo', 'id', 'true', 'false', 'env', 'pwd', 'mkdir', 'touch', 'stat',
           'sleep', 'hostname', 'tty', 'stty', 'grep', 'wc', 'head', 'tail', 'seq', 'readlink', 'chmod',
           'printf', 'test', 'cut', 'tr', 'dd', 'yes', 'rm', 'ln', 'mount', 'umount', 'uname', 'sort',
           'kill', 'whoami', 'ps', 'xargs', 'od', 'awk']

# The image's /etc/group: builder (1000) is also in wheel (10) and audio (29).
IMAGE_GROUPS = ('root:x:0:\n'
                'wheel:x:10:root,builder\n'
                'audio:x:29:builder\n'
                'builder:x:1000:\n'
                'other:x:1001:\n'
                'nobody:x:65534:\n')
IMAGE_HOSTS = '# the image\'s own /etc/hosts\n10.9.8.7\timage-host\n'
IMAGE_HOSTNAME = 'image-hostname\n'


def make_run_rootfs(path, extra=None):
    """A busybox root file system for runs: the applets above, builder in wheel and audio,
    /notexec (a file that is not executable), the image's own /etc/hosts and /etc/hostname."""
    kt.kh.make_busybox_rootfs(path, applets=APPLETS)
    _write(os.path.join(path, 'etc', 'group'), IMAGE_GROUPS)
    _write(os.path.join(path, 'etc', 'hosts'), IMAGE_HOSTS)
    _write(os.path.join(path, 'etc', 'hostname'), IMAGE_HOSTNAME)
    _write(os.path.join(path, 'notexec'), '#!/bin/sh\necho should not run\n', 0o644)
    if extra:
        extra(path)
    return path


def _write(path, text, mode=0o644):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)


# -- module set-up ------------------------------------------------------------------

_ROOTFS = None


def setup_module(extra_conf=None):
    kt.setup_module(extra_conf)
    _warm_up()


def teardown_module():
    global _ROOTFS
    _ROOTFS = None
    kt.teardown_module()


def _warm_up():
    """One run before any test measures kilnd's descriptors: whatever kilnd opens once and
    keeps (the runtime, polkit's connection) is open by then."""
    env = kt.ENV
    rootfs = default_rootfs()
    name = 'warm-up'
    env.kiln('from', '--name', name, rootfs, check=True)
    env.kiln('run', name, 'true', check=True)
    env.kiln('rm', name, check=True)


def add_conf(text):
    """Appends @text to kiln.conf.extra and restarts kilnd (warmed up), for a test class's setUpClass."""
    with open(os.path.join(kt.ENV.dir, 'kiln.conf.extra'), 'a') as f:
        f.write(text)
    kt.ENV.restart_kilnd()
    _warm_up()  # what kilnd opens once, open before a test counts its descriptors


def remove_conf(text):
    """Takes @text, as add_conf() appended it, and all after it out of kiln.conf.extra; restarts kilnd."""
    extra = os.path.join(kt.ENV.dir, 'kiln.conf.extra')
    with open(extra) as f:
        kept = f.read()
    with open(extra, 'w') as f:
        f.write(kept[:kept.index(text)])
    kt.ENV.restart_kilnd()
    _warm_up()


class ExtraConf:
    """A test class's kiln.conf lines: cls.conf_text() is added before its tests, taken out after."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._conf = cls.conf_text()
        add_conf(cls._conf)

    @classmethod
    def tearDownClass(cls):
        remove_conf(cls._conf)
        super().tearDownClass()


def default_rootfs():
    global _ROOTFS
    if _ROOTFS is None:
        _ROOTFS = make_run_rootfs(kt.ENV.scratch_dir('run-rootfs'))
    return _ROOTFS


def parametrize(namespace, cases):
    """Adds one concrete TestCase per isolation mode to @namespace: CASES_<mode>."""
    for isolation in ISOLATIONS:
        name = f'{cases.__name__}_{isolation}'
        namespace[name] = type(name, (cases,), {'isolation': isolation, '__module__': namespace['__name__']})
    # The mode-less class itself is not a test.
    namespace.pop(cases.__name__, None)


# -- the base class -------------------------------------------------------------------

class Builder:
    def __init__(self, name, path, id_, rootfs):
        self.name = name
        self.path = path
        self.id = id_
        self.rootfs = rootfs

    def __str__(self):
        return self.name


class RunTestCase(kt.KilnTestCase):
    """Base of the run tests: builders, runs through the CLI and the bus, and the checks that
    nothing is left behind after each test."""

    isolation = None  # set by parametrize()
    _counter = 0

    @classmethod
    def setUpClass(cls):
        if cls.isolation is None:
            raise unittest.SkipTest('parametrized over isolation modes: see the _<mode> classes')

    def setUp(self):
        self.children = []
        self.fd_baseline = self.kilnd_fds()

    def tearDown(self):
        for child in self.children:
            if child.poll() is None:
                child.kill()
            try:
                child.communicate(timeout=30)
            except (subprocess.TimeoutExpired, ValueError, OSError):
                pass
        still_running = not self.wait_until(lambda: not self.running_processes(), 30)
        for entry in self.list_builders():
            r = self.remove(entry[4], force=True)
            self.assertTrue(r.ok, f'cleanup: Remove(force) {entry[1]}: {r}')
        self.assertEqual(self.list_builders(), [])
        if still_running:
            self.fail('processes were still running 30 s after the test')
        self.assert_nothing_left()

    # -- kilnd and what it leaves ---------------------------------------------------

    @property
    def run_dir(self):
        return os.path.join(self.env.dir, 'run')

    def kilnd_pid(self):
        with open(os.path.join(self.env.dir, 'kilnd.pid')) as f:
            return int(f.read().strip())

    def kilnd_fds(self):
        pid = self.kilnd_pid()
        fds = {}
        for fd in os.listdir(f'/proc/{pid}/fd'):
            try:
                fds[int(fd)] = os.readlink(f'/proc/{pid}/fd/{fd}')
            except OSError:
                pass
        return fds

    def mounts_under(self, directory):
        """Mount points at or under @directory in our (the host's) mount namespace."""
        found = []
        with open('/proc/self/mountinfo') as f:
            for line in f:
                point = _unescape(line.split()[4])
                if point == directory or point.startswith(directory.rstrip('/') + '/'):
                    found.append(point)
        return found

    def leftovers(self):
        left = {}
        # Not the runtime directory's own tmpfs (kiln-env's, as /run under systemd).
        mounts = [m for m in self.mounts_under(self.env.dir) if m != self.run_dir]
        if mounts:
            left['mounts'] = mounts
        for sub in ('bundles', 'runtime', 'isolate'):
            entries = self.listdir(os.path.join(self.run_dir, sub))
            if entries:
                left[sub] = entries
        return left

    def assert_nothing_left(self):
        if not self.wait_until(lambda: not self.leftovers(), 15):
            self.fail(f'left behind after the test: {self.leftovers()}')
        if not self.wait_until(lambda: len(self.kilnd_fds()) == len(self.fd_baseline), 10):
            now = self.kilnd_fds()
            extra = {fd: t for fd, t in now.items() if self.fd_baseline.get(fd) != t}
            gone = {fd: t for fd, t in self.fd_baseline.items() if now.get(fd) != t}
            self.fail(f'kilnd has {len(now)} descriptors, {len(self.fd_baseline)} before the test; '
                      f'new: {extra}; gone: {gone}')

    def wait_until(self, predicate, timeout, message=None):
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() > deadline:
                if message:
                    self.fail(message)
                return False
            time.sleep(0.05)

    def running_processes(self):
        running = []
        for entry in self.list_builders():
            running += self.props(entry[4]).get('Processes', [])
        return running

    # -- builders ---------------------------------------------------------------------

    def unique_name(self, base='b'):
        RunTestCase._counter += 1
        return f'{base}-{RunTestCase._counter}'

    def builder(self, name=None, rootfs=None, extra=None):
        """A builder from the shared busybox root file system (or @rootfs, or a fresh one
        changed by @extra), created by root with this class's isolation."""
        name = name or self.unique_name()
        if rootfs is None:
            rootfs = default_rootfs() if extra is None else \
                make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=extra)
        code, out, err = self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs)
        self.assertEqual(code, 0, f'kiln from {rootfs}: {err}')
        path = self.get_builder(name).object_path()
        return Builder(name, path, self.props(path)['Id'], rootfs)

    # -- runs through the CLI -----------------------------------------------------------

    def krun(self, *args, input=None, user=None, timeout=120, env=None, cwd=None):
        """kiln run ARGS: (exit status, stdout, stderr)."""
        return self.env.kiln('run', *[str(a) for a in args], input=input, user=user, timeout=timeout,
                             env=env, cwd=cwd)

    def run_ok(self, *args, **kwargs):
        """kiln run ARGS, asserting exit 0; its stdout."""
        code, out, err = self.krun(*args, **kwargs)
        self.assertEqual(code, 0, f'kiln run {" ".join(str(a) for a in args)}: exit {code}\n'
                                  f'stdout: {out!r}\nstderr: {err!r}')
        return out

    def sh(self, b, script, *options, **kwargs):
        """kiln run [OPTIONS] B -- sh -c SCRIPT, asserting exit 0; its stdout."""
        return self.run_ok(*options, b, '--', 'sh', '-c', script, **kwargs)

    def spawn(self, *args, stdin=subprocess.DEVNULL, user=None):
        """kiln run ARGS in the background (killed in tearDown if still running)."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.env.bus_address)
        cmd = [self.env.kiln_cli, 'run'] + [str(a) for a in args]
        if user:
            cmd = ['runuser', '-u', user, '--'] + cmd
        child = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env, text=True)
        self.children.append(child)
        return child

    # -- the bus ------------------------------------------------------------------------

    def captured(self, b, argv, options=None, user=None, timeout=60):
        """RunCaptured through gdbus call: the CallResult."""
        return self.gcall(b.path, kt.BUILDER_IFACE + '.RunCaptured', kt.gv_strv(argv), kt.gv_dict(options),
                          user=user, timeout=timeout)

    def start(self, b, argv, options=None, user=None):
        """Start through gdbus call, asserted to succeed: the Process object's path. detach is on
        unless @options say otherwise: gdbus leaves the bus right after the call, and a caller
        leaving kills what it did not detach."""
        options = dict({'detach': True}, **(options or {}))
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Start', kt.gv_strv(argv), kt.gv_dict(options), user=user)
        self.assertTrue(r.ok, r)
        path = r.object_path()
        self.assertTrue(path and path.startswith(PROCESS_PATH_PREFIX), r)
        return path

    def process_props(self, path):
        data = self.bcall(path, kt.PROPERTIES_IFACE, 'GetAll', 's', PROCESS_IFACE)
        return {k: v['data'] for k, v in data[0].items()}

    def wait_process(self, path, timeout=60):
        """Process.Wait through gdbus: the exit status."""
        r = self.gcall(path, PROCESS_IFACE + '.Wait', timeout=timeout)
        self.assertTrue(r.ok, r)
        m = re.fullmatch(r'\((-?\d+),\)', r.out.strip())
        self.assertIsNotNone(m, r)
        return int(m.group(1))

    def kill_process(self, path, signal_name):
        return self.gcall(path, PROCESS_IFACE + '.Kill', kt.gv_str(signal_name))

    def wait_running(self, path, timeout=20):
        self.wait_until(lambda: self.process_props(path)['State'] == 'running', timeout,
                        f'{path} did not reach State running')
        return self.process_props(path)

    # -- the builder's root file system mounts ---------------------------------------

    def rootfs_mounts(self, b):
        """mountinfo lines (ours) that mount the builder's root file system: overlays whose
        options name the builder's own directory, and every mount of the same superblock."""
        with open('/proc/self/mountinfo') as f:
            lines = f.read().splitlines()
        builder_dir = os.path.join(self.builders_dir, b.id)
        devices = set()
        for line in lines:
            fields = line.split()
            sep = fields.index('-')
            fstype, options = fields[sep + 1], _unescape(fields[-1])
            if fstype == 'overlay' and (builder_dir in options or b.id in _unescape(fields[4])):
                devices.add(fields[2])
        return [line for line in lines if line.split()[2] in devices]


def _unescape(s):
    return re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)), s)


def parse_status(text):
    """/proc/self/status → {field: value}."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(':')
        out[k.strip()] = v.strip()
    return out


def read_available(fd, timeout):
    """Whatever @fd has within @timeout seconds (b'' if nothing)."""
    data = b''
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return data
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk


def pid_alive(pid, marker=None):
    """Whether @pid exists (and is not a zombie), and its cmdline has @marker."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            stat = f.read()
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            cmdline = f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return False
    if stat.rsplit(')', 1)[1].split()[0] == 'Z':
        return False
    return marker is None or marker in cmdline

