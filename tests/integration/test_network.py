#!/usr/bin/env python3
"""Networks for builds (network=pasta, network=slirp4netns) and the DNS and hosts settings.

- A small HTTP server on the host's loopback is reached from inside: through pasta's gateway
  (mapped to the host's loopback; /etc/hosts names it host.containers.internal) and through
  slirp4netns's 10.0.2.2 (with allow_host_loopback=true), as root and as kiln-alice (in a user
  namespace), under isolation oci and chroot. The server sees the body requested.
- The helper runs as the builder's owner (kiln-alice's uid, not root), is a child of kilnd while
  the run runs, is killed before the run's answer (dying: SIGKILL pending, exiting or a zombie) and
  gone soon after (no process, no namespace file, no mount), after a run that ends by itself and
  after a client killed mid-run; it does not outlive a kilnd killed with SIGKILL.
- --dns, --dns-search, --dns-option and --add-host are in /etc/resolv.conf and /etc/hosts; the
  builder's settings (kiln from / kiln config) apply, a run's win.
- A missing helper ([Network] Pasta= an empty directory's file) fails with RuntimeFailed naming
  the package (passt); a helper that cannot start (/dev/net/tun 0600, as on this kind of hardened
  host) fails with RuntimeFailed naming it and its package, and leaves nothing.
- A bad --dns or --add-host is refused with InvalidArgument naming the argument.
- polkit: kiln-alice may run --network pasta and slirp4netns with only org.kiln.builder1.run;
  --network host still needs run-privileged.

/dev/net/tun is 0600 on this machine (stock Debian's udev makes it 0666): the module sets it to
0666 for its runs and puts the mode back at the end, holding a lock (/run/kiln-test-tun.lock) meanwhile
so that a test run beside it waits rather than changes the mode under it.
"""
import fcntl
import http.server
import os
import pwd
import shutil
import signal
import socket
import stat
import threading
import time

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

TUN = '/dev/net/tun'
_TUN_MODE = None
_SERVER = None
TOKEN = 'kiln-network-test-token-5821'


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f'{TOKEN} {self.path}\n'.encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# /dev/net/tun's mode is the machine's: a test run beside this one (another build tree) would read
# the 0666 set here as the host's mode, or put 0600 back under this one. Held for the module.
TUN_LOCK = '/run/kiln-test-tun.lock'
_TUN_LOCK_FD = None


def setUpModule():
    global _TUN_MODE, _SERVER, _TUN_LOCK_FD
    _TUN_LOCK_FD = os.open(TUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(_TUN_LOCK_FD, fcntl.LOCK_EX)
    _TUN_MODE = stat.S_IMODE(os.stat(TUN).st_mode)
    os.chmod(TUN, 0o666)
    _SERVER = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    threading.Thread(target=_SERVER.serve_forever, daemon=True).start()
    tu.setUpModule()


def tearDownModule():
    try:
        tu.tearDownModule()
    finally:
        _SERVER.shutdown()
        os.chmod(TUN, _TUN_MODE)
        os.close(_TUN_LOCK_FD)


def port():
    return _SERVER.server_address[1]


def host_gateway():
    """The host's default IPv4 gateway: pasta gives the container the same, mapped to the host's
    loopback."""
    with open('/proc/net/route') as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == '00000000' and int(fields[3], 16) & 2:
                return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, 'little'))
    raise AssertionError('no default route on the host')


def wget_rootfs(path):
    tu.shared_rootfs(path)
    os.symlink('busybox', os.path.join(path, 'bin', 'wget'))


def helpers_of(pid):
    """pasta and slirp4netns processes that are children of @pid (kilnd): (pid, name, uid)."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                text = f.read()
            with open(f'/proc/{entry}/status') as f:
                status = f.read()
        except OSError:
            continue
        name = text[text.index('(') + 1:text.rindex(')')]
        ppid = int(text[text.rindex(')') + 2:].split()[1])
        # Debian's pasta is passt under another name, run as passt.avx2 where the CPU has AVX2.
        if ppid == pid and (name.startswith('passt') or name.startswith('pasta') or name == 'slirp4netns'):
            uid = int(next(l for l in status.splitlines() if l.startswith('Uid:')).split()[1])
            found.append((int(entry), 'slirp4netns' if name == 'slirp4netns' else 'pasta', uid))
    return found


PF_EXITING = 0x4
SIGKILL_BIT = 1 << (9 - 1)


def dying(pid):
    """Whether @pid is gone, a zombie, exiting (PF_EXITING in its flags) or has SIGKILL pending: a process
    that will run no instruction of its own again. kilnd kills a run's helper before it answers but leaves
    its reaping (and the kernel's teardown of its tap device) to after the answer."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        with open(f'/proc/{pid}/status') as f:
            status = dict(l.split(':', 1) for l in f.read().splitlines() if ':' in l)
    except (FileNotFoundError, ProcessLookupError):
        return True
    if fields[0] in ('Z', 'X', 'x') or int(fields[6]) & PF_EXITING:
        return True
    return any(int(status.get(k, '0').strip(), 16) & SIGKILL_BIT for k in ('SigPnd', 'ShdPnd'))


def all_dying(pids):
    """Every one of @pids dying, looked at a few times: between the kernel taking SIGKILL off the pending set
    and marking the task as exiting there is a moment where neither shows; a live helper shows neither on
    every look."""
    for _ in range(3):
        if all(dying(p) for p in pids):
            return True
        time.sleep(0.001)
    return False


def kill_client(child):
    """SIGKILL to the kiln client under runuser (killing runuser alone leaves its child running)."""
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    text = f.read()
            except OSError:
                continue
            if int(text[text.rindex(')') + 2:].split()[1]) == child.pid:
                os.kill(int(entry), 9)
    child.kill()


def any_helper_anywhere():
    """Every pasta or slirp4netns process whose arguments name /proc/self/fd/ (as kilnd starts them) that
    is a child of this environment's kilnd or an orphan (parent 1)."""
    kilnd = int(open(os.path.join(kt.ENV.dir, 'kilnd.pid')).read())
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/cmdline', 'rb') as f:
                argv = f.read().split(b'\0')
            with open(f'/proc/{entry}/stat') as f:
                text = f.read()
        except OSError:
            continue
        if int(text[text.rindex(')') + 2:].split()[1]) not in (kilnd, 1):
            continue
        if argv and os.path.basename(argv[0]).split(b'.')[0] in (b'pasta', b'passt', b'slirp4netns') and \
                any(a.startswith(b'/proc/self/fd/') or a.startswith(b'--userns-path=/proc/self/fd/')
                    for a in argv):
            found.append(int(entry))
    return found


class NetworkCases(kr.RunTestCase):

    def setUp(self):
        super().setUp()
        self.alice = pwd.getpwnam(kt.ALICE)

    def tearDown(self):
        super().tearDown()
        self.assertTrue(self.wait_until(lambda: not any_helper_anywhere(), 10),
                        f'network helpers left: {any_helper_anywhere()}')

    def wget_builder(self, user=None):
        name = self.unique_name('net' if user is None else 'alice')
        rootfs = kr.make_run_rootfs(self.unique_scratch_dir('rootfs'), extra=wget_rootfs)
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, rootfs, user=user, check=True)
        path = self.get_builder(name, user=user).object_path()
        return kr.Builder(name, path, self.props(path)['Id'], rootfs)

    def fetch(self, b, network, address, user=None):
        return self.sh(b, f'wget -q -O - http://{address}:{port()}/from-{network}', '--network', network,
                       user=user)

    # -- reaching the host's loopback ------------------------------------------------

    def test_pasta_reaches_host_loopback_as_root(self):
        b = self.wget_builder()
        out = self.fetch(b, 'pasta', host_gateway())
        self.assertEqual(out, f'{TOKEN} /from-pasta\n')
        hosts = self.sh(b, 'cat /etc/hosts', '--network', 'pasta')
        self.assertIn(f'{host_gateway()}\thost.containers.internal', hosts.splitlines())

    def test_pasta_reaches_host_loopback_as_alice(self):
        b = self.wget_builder(user=kt.ALICE)
        out = self.fetch(b, 'pasta', host_gateway(), user=kt.ALICE)
        self.assertEqual(out, f'{TOKEN} /from-pasta\n')

    def test_slirp4netns_reaches_host_loopback_as_root(self):
        b = self.wget_builder()
        out = self.fetch(b, 'slirp4netns:allow_host_loopback=true', '10.0.2.2')
        self.assertEqual(out, f'{TOKEN} /from-slirp4netns:allow_host_loopback=true\n')

    def test_slirp4netns_reaches_host_loopback_as_alice(self):
        b = self.wget_builder(user=kt.ALICE)
        out = self.fetch(b, 'slirp4netns:allow_host_loopback=true', '10.0.2.2', user=kt.ALICE)
        self.assertIn(TOKEN, out)
        # Without the option the host's loopback stays out of reach (slirp4netns's own default).
        code, out, err = self.krun('--network', 'slirp4netns', b, 'wget', '-q', '-T', '3', '-O', '-',
                                   f'http://10.0.2.2:{port()}/no', user=kt.ALICE)
        self.assertNotEqual(code, 0, out)
        self.assertNotIn(TOKEN, out)

    def test_private_network_does_not_reach_the_host(self):
        b = self.wget_builder()
        code, out, err = self.krun(b, 'wget', '-q', '-T', '3', '-O', '-', f'http://{host_gateway()}:{port()}/')
        self.assertNotEqual(code, 0, out)
        self.assertNotIn(TOKEN, out)

    # -- the helper: who it runs as, and that it ends with the run ---------------------

    def test_helper_runs_as_the_owner_and_ends_with_the_run(self):
        b = self.wget_builder(user=kt.ALICE)
        for network in ('pasta', 'slirp4netns'):
            with self.subTest(network=network):
                child = self.spawn('--network', network, b, 'sleep', '60', user=kt.ALICE)
                self.assertTrue(self.wait_until(lambda: helpers_of(self.kilnd_pid()), 20),
                                f'no helper under kilnd (client: {child.poll()})')
                helpers = helpers_of(self.kilnd_pid())
                self.assertEqual([(n, u) for _, n, u in helpers], [(network, self.alice.pw_uid)])
                # The namespaces are bound in the run's bundle while it runs.
                bundles = self.listdir(os.path.join(self.run_dir, 'bundles'))
                self.assertEqual(len(bundles), 1, bundles)
                self.assertTrue(any(m.endswith('/netns-net') for m in self.mounts_under(self.env.dir)))
                # A killed client: the run is killed, its helper too, nothing stays.
                kill_client(child)
                child.communicate(timeout=30)
                self.assertTrue(self.wait_until(lambda: not helpers_of(self.kilnd_pid()), 20),
                                f'helper still there: {helpers_of(self.kilnd_pid())}')
                self.assertTrue(self.wait_until(lambda: not self.leftovers(), 20), self.leftovers())
        # After a run that ends by itself: kilnd answers only once the helper is killed (it is reaped after
        # the answer: its exit, the kernel removing its tap device, is not on the run's path), and it is
        # gone soon after.
        for network in ('pasta', 'slirp4netns'):
            with self.subTest(network=network, end='by itself'):
                self.run_ok('--network', network, b, 'true', user=kt.ALICE)
                left = [p for p, _, _ in helpers_of(self.kilnd_pid())] + any_helper_anywhere()
                self.assertTrue(all_dying(left), f'helpers alive after the answer: {left}')
                self.assertTrue(self.wait_until(lambda: not helpers_of(self.kilnd_pid()), 10),
                                f'helper not reaped: {helpers_of(self.kilnd_pid())}')
                self.assertEqual(any_helper_anywhere(), [])

    def test_helper_does_not_outlive_a_crashed_kilnd(self):
        b = self.wget_builder(user=kt.ALICE)
        child = self.spawn('--network', 'pasta', b, 'sleep', '60', user=kt.ALICE)
        if not self.wait_until(lambda: helpers_of(self.kilnd_pid()) or child.poll() is not None, 20) or \
                child.poll() is not None:
            self.fail(f'no helper under kilnd (client: {child.poll()}: {child.communicate(timeout=30)[1]})')
        (helper, _, _), = helpers_of(self.kilnd_pid())
        kilnd = self.kilnd_pid()
        try:
            os.kill(kilnd, signal.SIGKILL)
            self.assertTrue(self.wait_until(lambda: dying(kilnd), 10))
        finally:
            self.env.restart_kilnd()
            kr._warm_up()
            self.fd_baseline = self.kilnd_fds()
        # pasta's switch to the owner clears the parent-death signal kilnd gives it, so it may well
        # outlive kilnd (it does, often): the next kilnd kills it at start-up, from the pid and start time
        # recorded in the bundle, before it cleans the bundles up.
        self.assertTrue(self.wait_until(lambda: dying(helper), 10), f'helper {helper} outlived kilnd')
        self.assertTrue(self.wait_until(lambda: not any_helper_anywhere(), 10), any_helper_anywhere())
        child.communicate(timeout=30)

    # -- DNS and hosts ---------------------------------------------------------------------

    def test_dns_and_hosts_options_are_in_the_files(self):
        b = self.builder()
        out = self.sh(b, 'cat /etc/resolv.conf; echo ---; cat /etc/hosts', '--dns', '192.0.2.53',
                      '--dns', '2001:db8::53', '--dns-search', 'example.org', '--dns-option', 'ndots:3',
                      '--add-host', 'cache.example:198.51.100.7', '--add-host', 'v6.example:2001:db8::7')
        resolv, hosts = out.split('---\n')
        lines = resolv.splitlines()
        self.assertIn('nameserver 192.0.2.53', lines)
        self.assertIn('nameserver 2001:db8::53', lines)
        self.assertEqual([l for l in lines if l.startswith('nameserver')],
                         ['nameserver 192.0.2.53', 'nameserver 2001:db8::53'])
        self.assertIn('search example.org', lines)
        self.assertIn('options ndots:3', lines)
        self.assertIn('198.51.100.7\tcache.example', hosts.splitlines())
        self.assertIn('2001:db8::7\tv6.example', hosts.splitlines())
        # --no-hosts: the image's own /etc/hosts.
        out = self.sh(b, 'cat /etc/hosts', '--no-hosts', '--add-host', 'cache.example:198.51.100.7')
        self.assertEqual(out, kr.IMAGE_HOSTS)

    def test_builder_settings_apply_and_a_run_overrides_them(self):
        name = self.unique_name('cfg')
        self.env.kiln('from', '--name', name, '--isolation', self.isolation, '--dns', '192.0.2.1',
                      '--add-host', 'from.example:192.0.2.2', kr.default_rootfs(), check=True)
        path = self.get_builder(name).object_path()
        props = self.props(path)
        self.assertEqual(props['Dns'], ['192.0.2.1'])
        self.assertEqual(props['AddHost'], ['from.example:192.0.2.2'])
        self.env.kiln('config', '--dns-search', 'cfg.example', '--network', 'none', name, check=True)
        props = self.props(path)
        self.assertEqual((props['Network'], props['DnsSearch']), ('none', ['cfg.example']))
        out = self.run_ok('--network', 'private', name, 'cat', '/etc/resolv.conf', '/etc/hosts')
        self.assertIn('nameserver 192.0.2.1', out.splitlines())
        self.assertIn('search cfg.example', out.splitlines())
        self.assertIn('192.0.2.2\tfrom.example', out.splitlines())
        out = self.run_ok('--network', 'private', '--dns', '192.0.2.9', name, 'cat', '/etc/resolv.conf')
        self.assertIn('nameserver 192.0.2.9', out.splitlines())
        self.assertNotIn('nameserver 192.0.2.1', out.splitlines())
        # The builder says network none: no /etc/resolv.conf is bound (what is there is the empty mount
        # point an earlier run left in the builder's layer).
        out = self.run_ok(name, 'cat', '/etc/resolv.conf')
        self.assertNotIn('nameserver', out)
        self.env.kiln('config', '--no-hosts', name, check=True)
        self.assertTrue(self.props(path)['NoHosts'])
        self.assertEqual(self.run_ok(name, 'cat', '/etc/hosts'), kr.IMAGE_HOSTS)

    def test_bad_values_are_refused_naming_the_argument(self):
        b = self.builder()
        for options, arg in (({'dns': ['not-an-ip']}, 'dns'),
                             ({'dns': ['192.0.2.300']}, 'dns'),
                             ({'add_host': ['nocolon']}, 'add_host'),
                             ({'add_host': ['bad name:192.0.2.1']}, 'add_host'),
                             ({'add_host': ['name:999.1.1.1']}, 'add_host'),
                             ({'dns_search': ['a b']}, 'dns_search'),
                             ({'dns_option': ['ndots:1\nnameserver 1.1.1.1']}, 'dns_option'),
                             ({'network': 'pasta', 'network_options': ['--map-host-loopback']},
                              'network_options'),
                             ({'network': 'slirp4netns', 'network_options': ['api_socket=/tmp/x']},
                              'network_options'),
                             ({'network': 'bogus'}, 'network')):
            with self.subTest(options=options):
                r = self.captured(b, ['true'], options)
                self.assertError(r, kt.E_INVALID, [f'Invalid {arg}'])
        code, out, err = self.krun('--dns', 'nameserver', b, 'true')
        self.assertNotEqual(code, 0)
        self.assertIn("Invalid dns[0]: 'nameserver' is not an IP address", err)
        code, out, err = self.krun('--add-host', 'x.example', b, 'true')
        self.assertIn('Invalid add_host', err)
        # Configure refuses the same values, and changes nothing.
        r = self.gcall(b.path, kt.BUILDER_IFACE + '.Configure', kt.gv_dict({'dns': ['x']}))
        self.assertError(r, kt.E_INVALID, ['Invalid dns'])
        self.assertEqual(self.props(b.path)['Dns'], [])

    # -- failures --------------------------------------------------------------------------

    def test_helper_that_cannot_start_fails_clearly(self):
        b = self.wget_builder(user=kt.ALICE)
        os.chmod(TUN, 0o600)
        try:
            for network, package in (('pasta', 'passt'), ('slirp4netns', 'slirp4netns')):
                with self.subTest(network=network):
                    r = self.captured(b, ['true'], {'network': network}, user=kt.ALICE)
                    self.assertError(r, kr.E_RUNTIME_FAILED,
                                     [f"Network '{network}'", f'package {package}'])
                    self.assertEqual(helpers_of(self.kilnd_pid()), [])
                    self.assertTrue(self.wait_until(lambda: not self.leftovers(), 10), self.leftovers())
        finally:
            os.chmod(TUN, 0o666)

    def test_polkit_pasta_needs_only_run_host_needs_run_privileged(self):
        b = self.wget_builder(user=kt.ALICE)
        for network in ('pasta', 'slirp4netns'):
            r = self.captured(b, ['true'], {'network': network}, user=kt.ALICE)
            self.assertTrue(r.ok, r)
        r = self.captured_untrusted(b, {'network': 'host'})
        self.assertError(r, kt.E_INTERACTIVE, ['run-privileged', 'network=host'])
        # A builder configured with host cannot smuggle it into a run that names no network.
        self.env.kiln('config', '--network', 'host', b.name, user=kt.ALICE, check=True)
        r = self.captured_untrusted(b, {})
        self.assertError(r, kt.E_INTERACTIVE, ['run-privileged', 'network=host'])

    def captured_untrusted(self, b, options):
        """RunCaptured as kiln-alice without run-privileged (the test rules grant it per environment)."""
        self.env.set_trusted(kt.ALICE, False)
        return self.captured(b, ['true'], options, user=kt.ALICE)


kr.parametrize(globals(), NetworkCases)


class MissingHelperCases(kr.ExtraConf, kr.RunTestCase):
    """kiln.conf names helpers that are not there: the run fails naming the package."""
    isolation = 'oci'

    @classmethod
    def conf_text(cls):
        empty = kt.ENV.scratch_dir('no-helpers')
        return f'[Network]\nPasta={empty}/pasta\nSlirp4netns={empty}/slirp4netns\n'

    def test_missing_helper_names_the_package(self):
        b = self.builder()
        for network, package in (('pasta', 'passt'), ('slirp4netns', 'slirp4netns')):
            with self.subTest(network=network):
                r = self.captured(b, ['true'], {'network': network})
                self.assertError(r, kr.E_RUNTIME_FAILED, [f"Network '{network}'", f'package {package}'])
                code, out, err = self.krun('--network', network, b, 'true')
                self.assertNotEqual(code, 0)
                self.assertIn(f'package {package}', err)
        self.assertEqual(self.props(b.path)['Processes'], [])


if __name__ == '__main__':
    kt.main()
