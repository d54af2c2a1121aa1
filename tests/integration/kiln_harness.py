"""Harness for kiln's integration tests (python3 stdlib only).

    import kiln_harness as kh

    kh.require_root()                       # exit 77 (skip) when not root
    with kh.Env() as env:                   # users, private bus, polkitd, kilnd
        code, out, err = env.kiln('containers', user=kh.ALICE)
        env.restart_kilnd()

Env drives tools/kiln-env, the one implementation of the environment: a
dbus-daemon on DIR/bus.sock, the host's polkitd seeing kiln's policy and
tests/integration/polkit-rules in a mount namespace of its own, and kilnd
from the build tree with its state in DIR. DIR is a fresh temporary
directory; it is removed after a passing test and kept (path printed) after
a failing one.

Meson sets KILN_BUILD_ROOT and KILN_SOURCE_ROOT. Set KILN_KEEP_ENV=1 to keep
DIR even when the test passes.
"""
import atexit
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile

SKIP = 77

SOURCE_ROOT = os.environ.get('KILN_SOURCE_ROOT') or \
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_ROOT = os.environ.get('KILN_BUILD_ROOT') or os.path.join(SOURCE_ROOT, 'build')
KILN_ENV = os.path.join(SOURCE_ROOT, 'tools', 'kiln-env')

# Test users made by "kiln-env users". ALICE is in the group "kiln", which
# the test rules let create and run; BOB is not, and gets the policy defaults.
GROUP = 'kiln'
ALICE = 'kiln-alice'
BOB = 'kiln-bob'

KILN_BUS_NAME = 'org.kiln.Builder1'
POLKIT_BUS_NAME = 'org.freedesktop.PolicyKit1'

# What sanitizers write when they find something (kilnd runs on in the
# background, so its log is the only place a report shows up).
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:')


def require_root():
    """Exits with the skip status unless running as root."""
    if os.geteuid() != 0:
        print('SKIP: integration tests need root (they start a bus, polkitd and kilnd)')
        sys.exit(SKIP)


class Env:
    """A private system bus with polkitd and kilnd, from setup() to stop()."""

    def __init__(self):
        self.source_root = SOURCE_ROOT
        self.build_root = BUILD_ROOT
        self.kiln_cli = os.path.join(BUILD_ROOT, 'cli', 'kiln')
        self.kilnd = os.path.join(BUILD_ROOT, 'service', 'kilnd')
        self.dir = None
        self.bus_address = None
        # A test that records failures instead of raising sets this to keep
        # DIR for inspection.
        self.keep = False
        self._previous_address = None

    # -- life cycle ---------------------------------------------------------

    def setup(self, extra_conf=None, state_tmpfs_size=None):
        """@extra_conf: kiln.conf text on top of kiln-env's (kiln.conf.extra).
        @state_tmpfs_size: put DIR/state on a tmpfs of that size ("64M"), so
        that a test can fill kilnd's state file system (kiln-env stop --rm
        unmounts it with the rest)."""
        require_root()
        subprocess.run([KILN_ENV, 'users'], check=True)
        self.dir = tempfile.mkdtemp(prefix='kiln-env.')
        if extra_conf:
            _write(os.path.join(self.dir, 'kiln.conf.extra'), extra_conf)
        if state_tmpfs_size:
            state = os.path.join(self.dir, 'state')
            os.mkdir(state, 0o700)
            subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={state_tmpfs_size},mode=0700,nosuid,nodev',
                            'kiln-env-state', state], check=True)
        # meson kills a test that times out with SIGTERM; turn that into an
        # exception so that stop() still runs and nothing is left behind.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        atexit.register(self.stop, remove=False)
        result = subprocess.run([KILN_ENV, 'start', self.dir, self.build_root],
                                stdout=subprocess.PIPE, text=True)
        if result.returncode != 0:
            raise RuntimeError(f'kiln-env start failed (exit {result.returncode}); '
                               f'logs in {self.dir}')
        self.bus_address = _parse_export(result.stdout)
        self._previous_address = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = self.bus_address
        return self

    def restart_polkitd(self):
        """A fresh polkitd on the same bus (see kiln-env restart-polkitd)."""
        subprocess.run([KILN_ENV, 'restart-polkitd', self.dir], stdout=subprocess.DEVNULL, check=True)

    def restart_kilnd(self):
        """SIGTERM kilnd, wait for it to exit, start it again on the same state."""
        subprocess.run([KILN_ENV, 'restart-kilnd', self.dir, self.build_root],
                       stdout=subprocess.DEVNULL, check=True)

    def stop(self, remove=True):
        """Stops kilnd, polkitd and the bus; removes DIR if @remove (and not
        KILN_KEEP_ENV). Raises AssertionError if kilnd's log has a
        sanitizer report. Safe to call more than once."""
        if self.dir is None:
            return
        directory, self.dir = self.dir, None
        if self.keep or os.environ.get('KILN_KEEP_ENV'):
            remove = False
        subprocess.run([KILN_ENV, 'stop', directory])
        # Only now: LeakSanitizer reports when kilnd exits.
        findings = self._sanitizer_findings(directory)
        if findings:
            remove = False
        if remove:
            subprocess.run([KILN_ENV, 'stop', directory, '--rm'])
        if self._previous_address is None:
            os.environ.pop('DBUS_SYSTEM_BUS_ADDRESS', None)
        else:
            os.environ['DBUS_SYSTEM_BUS_ADDRESS'] = self._previous_address
        if not remove:
            print(f'kiln-env directory kept for inspection: {directory}', file=sys.stderr)
        if findings:
            raise AssertionError('sanitizer report in kilnd.log:\n' + findings)

    def __enter__(self):
        return self.setup()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.dir is not None:
            self.dump_logs()
        self.stop(remove=exc_type is None)
        return False

    # -- paths and logs -----------------------------------------------------

    @property
    def kilnd_log(self):
        return os.path.join(self.dir, 'kilnd.log')

    def scratch_dir(self, name):
        """A new directory in DIR that the test users can read (DIR is 0755)."""
        path = os.path.join(self.dir, 'scratch', name)
        os.makedirs(path, mode=0o755)
        os.chmod(os.path.dirname(path), 0o755)
        return path

    def dump_logs(self, lines=40):
        """Prints the end of each daemon's log to stderr (meson shows it on failure)."""
        for name in ('kilnd.log', 'polkitd.log', 'dbus.log'):
            path = os.path.join(self.dir, name)
            if os.path.exists(path):
                with open(path, errors='replace') as f:
                    tail = f.readlines()[-lines:]
                print(f'--- {path} (last {lines} lines)', file=sys.stderr)
                sys.stderr.write(''.join(tail))

    @staticmethod
    def _sanitizer_findings(directory):
        path = os.path.join(directory, 'kilnd.log')
        if not os.path.exists(path):
            return ''
        with open(path, errors='replace') as f:
            lines = f.readlines()
        for i, line in enumerate(lines):
            if any(marker in line for marker in SANITIZER_MARKERS):
                return ''.join(lines[i:i + 60])
        return ''

    # -- running things -----------------------------------------------------

    def run(self, cmd, user=None, check=False, input=None, timeout=120, cwd=None, env=None):
        """Runs @cmd (a list) as root or as @user, on the private bus.

        Returns (exit code, stdout, stderr) as text. With @check a non-zero
        exit raises AssertionError carrying both outputs. A user's command
        runs from its home directory unless @cwd is given, since the test's
        own directory may be closed to it."""
        full_env = dict(os.environ)
        full_env['DBUS_SYSTEM_BUS_ADDRESS'] = self.bus_address
        if env:
            full_env.update(env)
        if user is not None:
            # runuser keeps the environment (but sets HOME, USER, LOGNAME,
            # SHELL), so the bus address comes along; supplementary groups
            # are the user's own from /etc/group.
            cmd = ['runuser', '-u', user, '--'] + list(cmd)
            if cwd is None:
                cwd = _home_of(user)
        result = subprocess.run(cmd, input=input, capture_output=True, text=True,
                                timeout=timeout, cwd=cwd, env=full_env)
        if check and result.returncode != 0:
            raise AssertionError(f'{cmd} exited with {result.returncode}\n'
                                 f'stdout:\n{result.stdout}\nstderr:\n{result.stderr}')
        return result.returncode, result.stdout, result.stderr

    def _trust_marker(self, user):
        return os.path.join(self.dir, 'polkit', 'rules', f'trusted-{user}')

    def set_trusted(self, user, trusted):
        """Grants or takes back org.kiln.builder1.run-privileged for @user in this environment only
        (tests/integration/polkit-rules: a marker next to the rules, read at every check)."""
        marker = self._trust_marker(user)
        if trusted:
            with open(marker, 'w'):
                pass
            os.chmod(marker, 0o644)
        elif os.path.exists(marker):
            os.unlink(marker)

    def is_trusted(self, user):
        return os.path.exists(self._trust_marker(user))

    def kiln(self, *args, **kwargs):
        """Runs the built kiln CLI: env.kiln('from', '--name', 'x', path, user=ALICE)."""
        return self.run([self.kiln_cli] + list(args), **kwargs)

    def name_has_owner(self, name):
        """True if @name is owned on the private bus."""
        code, out, _ = self.run(['busctl', f'--address={self.bus_address}', 'call',
                                 'org.freedesktop.DBus', '/org/freedesktop/DBus',
                                 'org.freedesktop.DBus', 'NameHasOwner', 's', name])
        return code == 0 and out.strip() == 'b true'


def make_busybox_rootfs(path, applets=None, owner=None):
    """Makes a minimal root file system in @path (created if missing).

    /bin/busybox from busybox-static, /bin/<applet> symlinks to it, /etc/passwd
    and /etc/group with root (0), builder (1000) and nobody (65534), and the
    usual empty directories. Files are owned by root (/home/builder by 1000)
    and world-readable except /root (0700).

    With @owner (a user name) every file belongs to that user instead, as in
    a tree the user unpacked itself: that is what a user hands to kiln when
    the service opens the path with the caller's credentials. Returns @path."""
    busybox = shutil.which('busybox') or '/bin/busybox'
    if not os.path.exists(busybox):
        raise RuntimeError('busybox not found (apt-get install busybox-static)')
    if applets is None:
        applets = ['sh', 'ls', 'cat', 'echo', 'id', 'true', 'false', 'env', 'pwd',
                   'mkdir', 'touch', 'stat', 'sleep']
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    for d in ('bin', 'etc', 'dev', 'proc', 'sys', 'run', 'tmp', 'root', 'home',
              'home/builder', 'usr', 'usr/bin', 'var'):
        os.makedirs(os.path.join(path, d), mode=0o755, exist_ok=True)
    os.chmod(os.path.join(path, 'tmp'), 0o1777)
    os.chmod(os.path.join(path, 'root'), 0o700)
    os.chown(os.path.join(path, 'home', 'builder'), 1000, 1000)

    shutil.copy2(busybox, os.path.join(path, 'bin', 'busybox'))
    os.chmod(os.path.join(path, 'bin', 'busybox'), 0o755)
    for applet in applets:
        link = os.path.join(path, 'bin', applet)
        if not os.path.lexists(link):
            os.symlink('busybox', link)

    _write(os.path.join(path, 'etc', 'passwd'),
           'root:x:0:0:root:/root:/bin/sh\n'
           'builder:x:1000:1000:builder:/home/builder:/bin/sh\n'
           'nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n')
    _write(os.path.join(path, 'etc', 'group'),
           'root:x:0:\n'
           'builder:x:1000:\n'
           'nobody:x:65534:\n')
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for top, dirs, files in os.walk(path):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.lchown(name, entry.pw_uid, entry.pw_gid)
    return path


def _write(path, text, mode=0o644):
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)


def _home_of(user):
    return pwd.getpwnam(user).pw_dir


def _parse_export(stdout):
    """The address from kiln-env's "export DBUS_SYSTEM_BUS_ADDRESS=..." line."""
    prefix = 'export DBUS_SYSTEM_BUS_ADDRESS='
    for line in stdout.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise RuntimeError(f'kiln-env start printed no bus address: {stdout!r}')


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
