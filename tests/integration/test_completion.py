#!/usr/bin/env python3
"""The bash completion (completion/kiln.bash) against a real kilnd: builder names come from
kilnd through `kiln containers`, each caller is offered the names of its own builders only, and
asking never needs a password."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_harness as kh  # noqa: E402,F401
import kiln_testlib as kt  # noqa: E402

setUpModule = kt.setup_module
tearDownModule = kt.teardown_module

SOURCE_ROOT = os.environ.get('KILN_SOURCE_ROOT',
                             os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COMPLETION = os.path.join(SOURCE_ROOT, 'completion', 'kiln.bash')
BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'

# Completes the last of the words given after the completion file, as bash does on TAB, and
# prints COMPREPLY one per line. compopt only works while readline completes.
SCRIPT = '''
source "$1"
source "$2"
shift 2
compopt() { :; }
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
_kiln kiln "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\\n' "${COMPREPLY[@]}"
'''


class Completion(kt.KilnTestCase):

    def setUp(self):
        if not os.path.exists(BASH_COMPLETION):
            self.skipTest('bash-completion is not installed')

    def tearDown(self):
        self.remove_all_builders()

    def complete(self, *words, user=None):
        # `kiln` found in PATH, as an interactive shell finds it: the built one.
        path = os.path.dirname(self.env.kiln_cli) + ':' + os.environ.get('PATH', '/usr/bin:/bin')
        code, out, err = self.env.run(['bash', '-c', SCRIPT, 'bash', BASH_COMPLETION, COMPLETION] + list(words),
                                      user=user, env={'PATH': path}, timeout=30)
        self.assertEqual(code, 0, f'completing {words} as {user or "root"}: {err}')
        # Nothing on stderr: a completion that prints errors garbles the command line.
        self.assertEqual(err, '', f'completing {words} as {user or "root"}')
        return sorted(out.split())

    def create(self, name, user=None):
        code, out, err = self.env.kiln('from', '--name', name, self.rootfs, user=user)
        self.assertEqual(code, 0, err)

    def test_builder_names_from_kilnd(self):
        self.rootfs = self.make_rootfs('compl-src')
        self.create('compl-a1', user=kt.ALICE)
        self.create('compl-a2', user=kt.ALICE)
        self.create('compl-root')

        # kiln-alice: her own builders, wherever a verb takes one.
        self.assertEqual(self.complete('kiln', 'rm', 'compl-', user=kt.ALICE), ['compl-a1', 'compl-a2'])
        self.assertEqual(self.complete('kiln', 'rm', 'compl-a1', 'compl-', user=kt.ALICE),
                         ['compl-a1', 'compl-a2'])
        self.assertEqual(self.complete('kiln', 'run', '-t', '-e', 'A=1', 'compl-a', user=kt.ALICE),
                         ['compl-a1', 'compl-a2'])
        self.assertEqual(self.complete('kiln', '--no-ask-password', 'inspect', 'compl-a2', user=kt.ALICE),
                         ['compl-a2'])
        # After BUILDER, run takes a command, not another builder.
        self.assertEqual(self.complete('kiln', 'run', 'compl-a1', 'compl-', user=kt.ALICE), [])

        # root is offered its own, as `kiln containers` shows them; kiln-bob (not in group kiln,
        # no builders) nothing: nobody learns another user's builder names from the completion.
        self.assertEqual(self.complete('kiln', 'mount', 'compl-'), ['compl-root'])
        self.assertEqual(self.complete('kiln', 'rm', 'compl-', user=kt.BOB), [])


if __name__ == '__main__':
    kt.main()
