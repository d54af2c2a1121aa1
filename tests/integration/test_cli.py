#!/usr/bin/env python3
"""The kiln CLI against a real kilnd: from, containers, inspect, config, rm,
mount and umount, as root and as kiln-alice; exit status 125 and the
service's message on failure; on a terminal, the polkit agent (pkttyagent)
and --no-ask-password."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_harness as kh  # noqa: E402
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module


class Cli(kt.KilnTestCase):

    def tearDown(self):
        self.remove_all_builders()

    def kiln(self, *args, user=None, expect=0):
        code, out, err = self.env.kiln(*args, user=user)
        self.assertEqual(code, expect, f'kiln {" ".join(args)} as {user or "root"}: exit {code}\n'
                                       f'stdout: {out}\nstderr: {err}')
        return out, err

    def inspect(self, builder, user=None):
        out, _ = self.kiln('inspect', builder, user=user)
        return json.loads(out)

    # -- from ------------------------------------------------------------------------

    def test_from_directory_with_name(self):
        rootfs = self.make_rootfs('cli-src')
        out, _ = self.kiln('from', '--name', 'cli-b', rootfs, user=kt.ALICE)
        self.assertEqual(out, 'cli-b\n')
        entries = self.list_builders(user=kt.ALICE)
        self.assertEqual([(e[1], e[2], e[3]) for e in entries], [('cli-b', self.uid(kt.ALICE), rootfs)])

    def test_from_directory_generated_name(self):
        rootfs = self.make_rootfs('cli-gen')
        out, _ = self.kiln('from', rootfs, user=kt.ALICE)
        self.assertEqual(out, 'cli-gen-working-container\n')
        out, _ = self.kiln('from', rootfs)
        self.assertEqual(out, 'cli-gen-working-container-2\n')
        self.assertEqual(self.props(self.get_builder('cli-gen-working-container-2').object_path())['From'], rootfs)

    def test_from_relative_directory(self):
        # The CLI resolves a relative SOURCE against its own working directory.
        rootfs = self.make_rootfs('cli-rel')
        code, out, err = self.env.kiln('from', '--name', 'rel', 'cli-rel', user=kt.ALICE,
                                       cwd=os.path.dirname(rootfs))
        self.assertEqual(code, 0, err)
        self.assertEqual(out, 'rel\n')
        self.assertEqual(self.props(self.get_builder('rel').object_path())['From'], rootfs)

    def test_from_scratch(self):
        out, _ = self.kiln('from', 'scratch')
        self.assertEqual(out, 'working-container\n')
        out, _ = self.kiln('from', 'scratch', user=kt.ALICE)
        self.assertEqual(out, 'working-container-2\n')
        props = self.props(self.get_builder('working-container-2').object_path())
        self.assertEqual((props['From'], props['Owner']), ('scratch', self.uid(kt.ALICE)))

    def test_from_duplicate_name(self):
        self.kiln('from', '--name', 'dup', 'scratch')
        out, err = self.kiln('from', '--name', 'dup', 'scratch', expect=125)
        self.assertEqual(out, '')
        self.assertIn("'dup'", err)
        self.assertEqual(len(self.list_builders()), 1)

    def test_from_unreadable_file_inside(self):
        def secret(path):
            p = os.path.join(path, 'etc', 'shadow')
            with open(p, 'w') as f:
                f.write('secret\n')
            os.chmod(p, 0o600)
        rootfs = self.make_rootfs('cli-secret', extra=secret)
        before = self.snapshot()
        out, err = self.kiln('from', '--name', 'nope', rootfs, user=kt.ALICE, expect=125)
        self.assertEqual(out, '')
        self.assertIn(rootfs, err)
        self.assertEqual(self.snapshot(), before)

    # -- containers ----------------------------------------------------------------------

    def make_three(self):
        self.kiln('from', '--name', 'c-root', 'scratch')
        self.kiln('from', '--name', 'c-alice1', 'scratch', user=kt.ALICE)
        self.kiln('from', '--name', 'c-alice2', 'scratch', user=kt.ALICE)
        return {e[1]: e for e in self.list_builders()}

    def test_containers_own_by_default(self):
        made = self.make_three()
        out, _ = self.kiln('containers', user=kt.ALICE)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['BUILDER', 'ID', 'OWNER', 'FROM', 'NAME'])
        rows = [line.split() for line in lines[1:]]
        self.assertEqual(sorted(r[-1] for r in rows), ['c-alice1', 'c-alice2'])
        for r in rows:
            self.assertEqual(r[0], made[r[-1]][0][:12])
            self.assertEqual(r[1], kt.ALICE)
        out, _ = self.kiln('containers')
        self.assertEqual([line.split()[-1] for line in out.splitlines()[1:]], ['c-root'])

    def test_containers_all(self):
        self.make_three()
        out, _ = self.kiln('containers', '--all')
        self.assertEqual(sorted(line.split()[-1] for line in out.splitlines()[1:]),
                         ['c-alice1', 'c-alice2', 'c-root'])
        # --all is what the caller may see: alice still sees only hers.
        out, _ = self.kiln('containers', '--all', user=kt.ALICE)
        self.assertEqual(sorted(line.split()[-1] for line in out.splitlines()[1:]), ['c-alice1', 'c-alice2'])
        out, _ = self.kiln('containers', '--all', user=kt.BOB)
        self.assertEqual(out.splitlines()[1:], [])

    def test_containers_json(self):
        made = self.make_three()
        out, _ = self.kiln('containers', '--json', '--all')
        listed = json.loads(out)
        self.assertIsInstance(listed, list)
        self.assertEqual(sorted(b['name'] for b in listed), ['c-alice1', 'c-alice2', 'c-root'])
        for b in listed:
            id_, name, owner, source, path = made[b['name']]
            self.assertEqual((b['id'], b['owner'], b['from'], b['path']), (id_, owner, source, path))
        out, _ = self.kiln('containers', '--json', user=kt.ALICE)
        self.assertEqual(sorted(b['name'] for b in json.loads(out)), ['c-alice1', 'c-alice2'])
        out, _ = self.kiln('containers', '--json', user=kt.BOB)
        self.assertEqual(json.loads(out), [])

    def test_containers_quiet(self):
        made = self.make_three()
        out, _ = self.kiln('containers', '--quiet', user=kt.ALICE)
        ids = out.split()
        self.assertEqual(sorted(ids), sorted([made['c-alice1'][0][:12], made['c-alice2'][0][:12]]))
        for short in ids:
            self.assertRegex(short, r'^[0-9a-f]{12}$')
            # A short id names the builder.
            self.assertEqual(self.inspect(short, user=kt.ALICE)['Id'][:12], short)
        out, _ = self.kiln('containers', '-q', '--all')
        self.assertEqual(len(out.split()), 3)

    def test_switches_take_true_and_false(self):
        """Every switch takes --flag, --flag=true and --flag=false, as buildah's do; the last one
        given counts."""
        made = self.make_three()
        out, _ = self.kiln('containers', '--all=false', '--quiet=true', user=kt.ALICE)
        self.assertEqual(sorted(out.split()), sorted([made['c-alice1'][0][:12], made['c-alice2'][0][:12]]))
        out, _ = self.kiln('containers', '--all=true', '--json=false', '-q')
        self.assertEqual(len(out.split()), 3)
        out, _ = self.kiln('containers', '--json=1', '--all=false')
        self.assertEqual([b['name'] for b in json.loads(out)], ['c-root'])
        out, _ = self.kiln('containers', '--quiet', '--quiet=false')
        self.assertEqual(out.splitlines()[0].split(), ['BUILDER', 'ID', 'OWNER', 'FROM', 'NAME'])
        _, err = self.kiln('containers', '--json=yes', expect=125)
        self.assertIn("--json takes true or false, not 'yes'", err)
        # rm --all=false removes only what is named.
        out, _ = self.kiln('rm', '--all=false', '--force=false', 'c-alice1', user=kt.ALICE)
        self.assertEqual(out.strip(), made['c-alice1'][0])
        self.assertEqual(sorted(e[1] for e in self.list_builders()), ['c-alice2', 'c-root'])
        out, _ = self.kiln('rm', '--all=true', user=kt.ALICE)
        self.assertEqual(sorted(e[1] for e in self.list_builders()), ['c-root'])
        _, err = self.kiln('--no-ask-password=maybe', 'containers', expect=125)
        self.assertIn("--no-ask-password takes true or false, not 'maybe'", err)
        self.kiln('--no-ask-password=false', 'containers')

    # -- inspect ---------------------------------------------------------------------------

    def test_inspect(self):
        rootfs = self.make_rootfs('cli-inspect')
        self.kiln('from', '--name', 'insp', rootfs, user=kt.ALICE)
        path = self.get_builder('insp').object_path()
        self.assertOk(self.configure(path, {'labels': {'a': 'b'}, 'env': ['E=1']}))
        shown = self.inspect('insp', user=kt.ALICE)
        self.assertEqual(set(shown), set(kt.BUILDER_PROPERTIES))
        self.assertEqual(shown, self.props(path))
        # By id and by short id too.
        self.assertEqual(self.inspect(shown['Id'], user=kt.ALICE), shown)
        self.assertEqual(self.inspect(shown['Id'][:12], user=kt.ALICE), shown)

    def test_json_is_loaded_only_by_verbs_that_need_it(self):
        # kiln links no JSON library: inspect, containers --json and an exec-form --cmd load
        # kiln-cli-json.so from kiln's run path. A copy of kiln without it does everything else and
        # says what is missing; with the module beside it, JSON works again.
        installed = [line.split('"')[1] for line in open(os.path.join(kh.BUILD_ROOT, 'kiln-build-config.h'))
                     if 'KILN_LIBDIR' in line][0]
        if os.path.exists(os.path.join(installed, 'kiln-cli-json.so')):
            self.skipTest(f'kiln-cli-json.so is installed in {installed}: a copy of kiln would find it')
        lone_dir = self.unique_scratch_dir('lone-kiln')
        lone = os.path.join(lone_dir, 'kiln')
        shutil.copy(self.env.kiln_cli, lone)
        rootfs = self.make_rootfs('cli-lone')
        code, out, err = self.env.run([lone, 'from', '--name', 'lone', rootfs])
        self.assertEqual((code, out), (0, 'lone\n'), err)
        code, _, err = self.env.run([lone, 'config', '--cmd', 'echo shell form', 'lone'])
        self.assertEqual(code, 0, err)
        self.assertEqual(self.props(self.get_builder('lone').object_path())['Cmd'], ['echo', 'shell', 'form'])
        code, out, err = self.env.run([lone, 'containers', '--quiet'])
        self.assertEqual(code, 0, err)
        for args in (['inspect', 'lone'], ['containers', '--json'], ['config', '--cmd', '["echo"]', 'lone']):
            code, out, err = self.env.run([lone] + args)
            self.assertEqual((code, out), (125, ''), f'{args}: {err}')
            self.assertIn('JSON support is missing', err, args)
            self.assertIn('kiln-cli-json.so', err, args)
        os.symlink(os.path.join(os.path.dirname(self.env.kiln_cli), 'kiln-cli-json.so'),
                   os.path.join(lone_dir, 'kiln-cli-json.so'))
        code, out, err = self.env.run([lone, 'config', '--cmd', '["echo", "exec form"]', 'lone'])
        self.assertEqual(code, 0, err)
        code, out, err = self.env.run([lone, 'inspect', 'lone'])
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)['Cmd'], ['echo', 'exec form'])

    def test_tar_is_loaded_only_by_copy_and_add(self):
        # kiln links no libarchive (nor the libxml2, ICU and libstdc++ it brings: milliseconds of
        # loading for every `kiln run`); copy and add load kiln-cli-tar.so. A copy of kiln without it
        # runs commands and says what is missing for a copy; with the module beside it, copy works.
        needed = subprocess.run(['ldd', self.env.kiln_cli], capture_output=True, text=True, check=True).stdout
        self.assertNotIn('libarchive', needed)
        installed = [line.split('"')[1] for line in open(os.path.join(kh.BUILD_ROOT, 'kiln-build-config.h'))
                     if 'KILN_LIBDIR' in line][0]
        if os.path.exists(os.path.join(installed, 'kiln-cli-tar.so')):
            self.skipTest(f'kiln-cli-tar.so is installed in {installed}: a copy of kiln would find it')
        lone_dir = self.unique_scratch_dir('lone-kiln-tar')
        lone = os.path.join(lone_dir, 'kiln')
        shutil.copy(self.env.kiln_cli, lone)
        rootfs = self.make_rootfs('cli-lone-tar')
        source = os.path.join(lone_dir, 'copied')
        with open(source, 'w') as f:
            f.write('copied\n')
        code, out, err = self.env.run([lone, 'from', '--name', 'lone-tar', rootfs])
        self.assertEqual((code, out), (0, 'lone-tar\n'), err)
        for args in (['copy', 'lone-tar', source, '/copied'], ['copy', 'lone-tar:/etc', lone_dir + '/out']):
            code, out, err = self.env.run([lone] + args)
            self.assertEqual((code, out), (125, ''), f'{args}: {err}')
            self.assertIn('Tar support is missing', err, args)
            self.assertIn('kiln-cli-tar.so', err, args)
        os.symlink(os.path.join(os.path.dirname(self.env.kiln_cli), 'kiln-cli-tar.so'),
                   os.path.join(lone_dir, 'kiln-cli-tar.so'))
        code, out, err = self.env.run([lone, 'copy', 'lone-tar', source, '/copied'])
        self.assertEqual(code, 0, err)
        code, out, err = self.env.run([lone, 'copy', 'lone-tar:/copied', lone_dir + '/back'])
        self.assertEqual(code, 0, err)
        with open(os.path.join(lone_dir, 'back')) as f:
            self.assertEqual(f.read(), 'copied\n')

    # -- config ----------------------------------------------------------------------------

    def test_config(self):
        self.kiln('from', '--name', 'cfg', 'scratch', user=kt.ALICE)
        out, err = self.kiln('config', '--env', 'A=1', '--label', 'x=y', '--workingdir', '/w', 'cfg', user=kt.ALICE)
        shown = self.inspect('cfg', user=kt.ALICE)
        self.assertEqual(shown['Env'], ['A=1'])
        self.assertEqual(shown['Labels'], {'x': 'y'})
        self.assertEqual(shown['WorkingDir'], '/w')
        # Merged as buildah does: set another, change one, remove one.
        self.kiln('config', '--env', 'B=2', '--env', 'A=3', '--label', 'x-', 'cfg', user=kt.ALICE)
        shown = self.inspect('cfg', user=kt.ALICE)
        self.assertEqual(sorted(shown['Env']), ['A=3', 'B=2'])
        self.assertEqual(shown['Labels'], {})
        self.assertEqual(shown['WorkingDir'], '/w')

    def test_config_invalid_env(self):
        self.kiln('from', '--name', 'cfg-bad', 'scratch', user=kt.ALICE)
        self.kiln('config', '--env', 'A=1', 'cfg-bad', user=kt.ALICE)
        before = self.inspect('cfg-bad', user=kt.ALICE)
        out, err = self.kiln('config', '--env', 'NOEQ', 'cfg-bad', user=kt.ALICE, expect=125)
        # The service's message: the argument and why.
        self.assertIn('env[', err)
        self.assertIn('NOEQ', err)
        self.assertIn('NAME=VALUE', err)
        self.assertEqual(self.inspect('cfg-bad', user=kt.ALICE), before)

    def test_config_other_users_builder(self):
        self.kiln('from', '--name', 'cfg-alice', 'scratch', user=kt.ALICE)
        before = self.inspect('cfg-alice')
        out, err = self.kiln('config', '--env', 'X=1', 'cfg-alice', user=kt.BOB, expect=125)
        self.assertIn('cfg-alice', err)
        self.assertEqual(self.inspect('cfg-alice'), before)

    # -- rm ------------------------------------------------------------------------------------

    def test_rm(self):
        self.kiln('from', '--name', 'rm1', 'scratch', user=kt.ALICE)
        id_ = self.inspect('rm1', user=kt.ALICE)['Id']
        out, _ = self.kiln('rm', 'rm1', user=kt.ALICE)
        self.assertEqual(out.strip(), id_)
        self.assertEqual(self.list_builders(), [])
        self.assertFalse(os.path.exists(self.builder_dir(id_)))

    def test_rm_by_short_id(self):
        self.kiln('from', '--name', 'rm2', 'scratch')
        id_ = self.inspect('rm2')['Id']
        out, _ = self.kiln('rm', id_[:12])
        self.assertEqual(out.strip(), id_)
        self.assertEqual(self.list_builders(), [])

    def test_rm_all_own_only(self):
        self.make_three()
        out, _ = self.kiln('rm', '--all', user=kt.ALICE)
        self.assertEqual(len(out.split()), 2)
        self.assertEqual([e[1] for e in self.list_builders()], ['c-root'])
        out, _ = self.kiln('rm', '--all')
        self.assertEqual(self.list_builders(), [])
        self.assertEqual(self.listdir(self.builders_dir), [])

    def test_unknown_builder(self):
        for args in (('inspect', 'no-such'), ('rm', 'no-such'), ('config', '--env', 'A=1', 'no-such'),
                     ('mount', 'no-such'), ('umount', 'no-such')):
            with self.subTest(args=args):
                out, err = self.kiln(*args, expect=125)
                self.assertEqual(out, '')
                self.assertIn('no-such', err)

    def test_rm_goes_on_past_failure(self):
        self.kiln('from', '--name', 'rm-ok', 'scratch')
        out, err = self.kiln('rm', 'no-such', 'rm-ok', expect=125)
        self.assertIn('no-such', err)
        self.assertEqual(self.list_builders(), [])

    # -- mount ---------------------------------------------------------------------------------

    def test_mount_and_umount(self):
        rootfs = self.make_rootfs('cli-mount')
        # alice's builder: root may mount anyone's.
        self.kiln('from', '--name', 'mnt', rootfs, user=kt.ALICE)
        out, _ = self.kiln('mount', 'mnt')
        mountpoint = out.strip()
        self.assertTrue(os.path.isabs(mountpoint), out)
        self.assertTrue(os.path.ismount(mountpoint), f'{mountpoint} is not a mount point')
        with open(os.path.join(mountpoint, 'etc', 'os-release')) as f:
            self.assertEqual(f.read(), 'ID=kiln-test\nNAME=cli-mount\n')
        self.assertEqual(os.readlink(os.path.join(mountpoint, 'README')), 'usr/share/doc/README')
        with open(os.path.join(mountpoint, 'README')) as f:
            self.assertEqual(f.read(), 'hello from cli-mount\n')
        # Mounting again gives the same place.
        out, _ = self.kiln('mount', 'mnt')
        self.assertEqual(out.strip(), mountpoint)
        # A write goes to the builder, not to the source.
        with open(os.path.join(mountpoint, 'new-file'), 'w') as f:
            f.write('written\n')
        self.assertFalse(os.path.exists(os.path.join(rootfs, 'new-file')))
        self.kiln('umount', 'mnt')
        self.assertFalse(os.path.ismount(mountpoint), f'{mountpoint} still mounted after umount')
        # What was written is kept in the builder.
        out, _ = self.kiln('mount', 'mnt')
        with open(os.path.join(out.strip(), 'new-file')) as f:
            self.assertEqual(f.read(), 'written\n')
        self.kiln('umount', 'mnt')

    def test_mount_denied_for_alice(self):
        self.kiln('from', '--name', 'mnt-alice', 'scratch', user=kt.ALICE)
        out, err = self.kiln('mount', 'mnt-alice', user=kt.ALICE, expect=125)
        self.assertEqual(out, '')
        self.assertIn('org.kiln.builder1.mount', err)

    def test_rm_unmounts(self):
        self.kiln('from', '--name', 'mnt-rm', 'scratch')
        out, _ = self.kiln('mount', 'mnt-rm')
        mountpoint = out.strip()
        self.assertTrue(os.path.ismount(mountpoint))
        self.kiln('rm', 'mnt-rm')
        self.assertFalse(os.path.ismount(mountpoint), f'{mountpoint} still mounted after rm')


# -- on a terminal: the polkit agent and --no-ask-password ----------------------------

class CliAuthentication(kt.KilnTestCase):
    """kiln-bob may not create builders: the policy's allow_any is auth_admin (the tests
    have no logind session), so polkit asks for root's password when kiln allows it."""

    def tearDown(self):
        self.remove_all_builders()

    def on_terminal(self, *args, user=kt.BOB, linger=False):
        term = kt.TerminalKiln(self.env, user, *args, linger=linger)
        self.addCleanup(term.close)
        return term

    def wait_gone(self, pid, timeout=10):
        deadline = time.monotonic() + timeout
        while kt.is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return not kt.is_running(pid)

    def test_no_ask_password_is_a_global_option(self):
        code, out, err = self.env.kiln('--no-ask-password', 'from', '--name', 'nap', 'scratch', user=kt.ALICE)
        self.assertEqual((code, out), (0, 'nap\n'), err)
        code, out, err = self.env.kiln('--no-ask-password', 'containers', '--quiet', user=kt.ALICE)
        self.assertEqual(code, 0, err)
        self.assertEqual(len(out.split()), 1, out)
        # Also after the verb, as systemctl's global options, with its =true/=false forms; a bad
        # value there is a usage error too.
        for args in (('containers', '--no-ask-password'), ('containers', '--quiet', '--no-ask-password=true'),
                     ('containers', '--no-ask-password=false', '-q'), ('inspect', '--no-ask-password', 'nap')):
            with self.subTest(args=args):
                code, out, err = self.env.kiln(*args, user=kt.ALICE)
                self.assertEqual(code, 0, (out, err))
        code, out, err = self.env.kiln('containers', '--no-ask-password=maybe', user=kt.ALICE)
        self.assertEqual(code, 125, (out, err))
        self.assertIn("--no-ask-password takes true or false, not 'maybe'", err)
        code, out, err = self.env.kiln('--help')
        self.assertIn('--no-ask-password', out)

    def test_no_ask_password_after_the_verb_on_terminal(self):
        # The same effect as before the verb: no agent, no question, InteractiveAuthorizationRequired.
        before = self.snapshot()
        term = self.on_terminal('from', '--no-ask-password', '--name', 'bob-nap-after', 'scratch')
        code, out, err, screen = term.finish()
        self.assertEqual(code, 125, (out, err, screen))
        self.assertIn('Interactive authentication is required for org.kiln.builder1.create', err)
        self.assertIn('without --no-ask-password', err)
        self.assertNotIn('AUTHENTICATING', screen)
        self.assertEqual(self.snapshot(), before)
        # =false after the verb turns it off again: the agent asks.
        if os.access(kt.PKTTYAGENT, os.X_OK):
            term = self.on_terminal('--no-ask-password', 'from', '--no-ask-password=false', '--name', 'bob-nap-off',
                                    'scratch')
            self.assertTrue(term.read_until('Password:'), f'no password prompt: {term.screen!r}')
            self.assertTrue(term.wait_echo_off(), 'the terminal still echoes at the password prompt')
            term.type(b'\x04')
            code, out, err, screen = term.finish()
            self.assertEqual(code, 125, (out, err, screen))
            self.assertIn('Not authorized for org.kiln.builder1.create', err)

    def test_no_ask_password_on_terminal(self):
        # On a terminal kiln would start an agent and polkit would ask; --no-ask-password
        # turns both off, and the service's InteractiveAuthorizationRequired comes back.
        before = self.snapshot()
        term = self.on_terminal('--no-ask-password', 'from', '--name', 'bob-nap', 'scratch')
        code, out, err, screen = term.finish()
        self.assertEqual(code, 125, (out, err, screen))
        self.assertEqual(out, '')
        self.assertIn('Interactive authentication is required for org.kiln.builder1.create', err)
        self.assertIn('without --no-ask-password', err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertNotIn('AUTHENTICATING', screen)
        self.assertEqual(self.snapshot(), before)

    def test_not_on_terminal_says_why(self):
        # Without a terminal kiln does not allow interaction: the same error, a different hint.
        code, out, err = self.env.kiln('from', '--name', 'bob-pipe', 'scratch', user=kt.BOB)
        self.assertEqual(code, 125, (out, err))
        self.assertIn('Interactive authentication is required for org.kiln.builder1.create', err)
        self.assertIn('on a terminal', err)
        self.assertNotIn('--no-ask-password', err)

    @unittest.skipUnless(os.access(kt.PKTTYAGENT, os.X_OK), f'{kt.PKTTYAGENT} is not installed')
    def test_agent_prompts_on_terminal(self):
        before = self.snapshot()
        term = self.on_terminal('from', '--name', 'bob-agent', 'scratch')
        self.assertTrue(term.read_until('Password:'), f'no password prompt on the terminal: {term.screen!r}')
        self.assertIn('AUTHENTICATING FOR org.kiln.builder1.create', term.screen)
        agents = term.agents()
        self.assertEqual(len(agents), 1, kt.processes_below(term.proc.pid))
        # End of input at the prompt: authentication fails, kiln reports it and exits,
        # stopping and reaping its agent on the way out.
        self.assertTrue(term.wait_echo_off(), 'the terminal still echoes at the password prompt')
        term.type(b'\x04')
        code, out, err, screen = term.finish()
        self.assertEqual(code, 125, (out, err, screen))
        self.assertEqual(out, '')
        self.assertIn('Not authorized for org.kiln.builder1.create', err)
        self.assertFalse(os.path.exists(f'/proc/{agents[0]}'), 'pkttyagent left behind (or not reaped)')
        self.assertEqual(self.snapshot(), before)

    @unittest.skipUnless(os.access(kt.PKTTYAGENT, os.X_OK), f'{kt.PKTTYAGENT} is not installed')
    def test_agent_stopped_when_kiln_is_killed(self):
        # Killing the agent mid-conversation can wedge polkitd 122 (about one run in fifteen here):
        # the tests after this one get a fresh one.
        self.addCleanup(self.env.restart_polkitd)
        term = self.on_terminal('from', '--name', 'bob-killed', 'scratch', linger=True)
        self.assertTrue(term.read_until('Password:'), f'no password prompt on the terminal: {term.screen!r}')
        agents = term.agents()
        self.assertEqual(len(agents), 1, kt.processes_below(term.proc.pid))
        kiln = term.kiln_pid()
        # A signal kiln has no handler for: its atexit handler does not run, the agent
        # must go anyway.
        os.kill(kiln, signal.SIGTERM)
        self.assertTrue(self.wait_gone(kiln), 'kiln did not die of SIGTERM')
        self.assertTrue(self.wait_gone(agents[0]), 'pkttyagent outlived kiln')


if __name__ == '__main__':
    kt.main()
