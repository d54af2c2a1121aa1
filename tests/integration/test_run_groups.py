#!/usr/bin/env python3
"""Supplementary groups of a run: the group_add option (kiln run --group-add) and builder setting
(kiln config --group-add), as buildah's --group-add; both executors.

- Names are looked up in the image's /etc/group, gids taken as they are: the Groups line of
  /proc/self/status inside holds them after the user's own (root: 0 and wheel, 10), for root and for
  kiln-alice in her user namespace; the builder's come with every run, the run's are added.
- A name the image does not know, a malformed entry, or (in kiln-alice's namespace) a gid outside
  her mapping: InvalidArgument naming group_add[0], and the command never ran (no file in the upper dir).
- keep-groups: for uid 0 its own supplementary groups; for kiln-alice InvalidArgument naming
  group_add[0] ("uid 0"), also from a builder setting ("builder group_add[0]").
"""
import os

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

setUpModule = tu.setUpModule
tearDownModule = tu.tearDownModule

GROUPS = "grep '^Groups:' /proc/self/status"


def groups(text):
    return sorted(int(g) for g in text.split(':', 1)[1].split())


class RunGroupsCases(kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder
    upper_dir = tu.UsernsCases_oci.upper_dir

    def assert_group_add(self, b, user=None):
        self.assertEqual(groups(self.sh(b, GROUPS, user=user)), [0, 10])
        out = self.sh(b, GROUPS, '--group-add', 'audio', '--group-add', '4242,other', user=user)
        self.assertEqual(groups(out), [0, 10, 29, 1001, 4242])
        out = self.run_ok('--group-add', 'audio', b, 'id', '-G', user=user)
        self.assertEqual(sorted(int(g) for g in out.split()), [0, 10, 29])

    def test_group_add(self):
        self.assert_group_add(self.builder())

    def test_group_add_for_alice(self):
        self.assert_group_add(self.alices_builder(), user=kt.ALICE)

    def test_builder_setting(self):
        b = self.alices_builder()
        self.env.kiln('config', '--group-add', 'audio', '--group-add', '4243', b.name, user=kt.ALICE, check=True)
        self.assertEqual(self.props(b.path)['GroupAdd'], ['audio', '4243'])
        self.assertEqual(groups(self.sh(b, GROUPS, user=kt.ALICE)), [0, 10, 29, 4243])
        out = self.sh(b, GROUPS, '--group-add', 'other', user=kt.ALICE)
        self.assertEqual(groups(out), [0, 10, 29, 1001, 4243])
        self.env.kiln('config', '--group-add', 'audio-', b.name, user=kt.ALICE, check=True)
        self.assertEqual(self.props(b.path)['GroupAdd'], ['4243'])

    def assert_refused(self, b, value, fragments, user=None, arg='group_add[0]'):
        r = self.captured(b, ['touch', '/ran'], {'group_add': [value]}, user=user)
        self.assertError(r, kt.E_INVALID, [arg] + fragments)
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))

    def test_bad_groups_are_refused(self):
        b = self.builder()
        self.assert_refused(b, 'nosuchgroup', ["'nosuchgroup'", '/etc/group'])
        for value in ('a:b', '', '-x', 'a,b', 'x' * 300, '4294967295'):
            with self.subTest(value=value):
                self.assert_refused(b, value, [])
        code, out, err = self.krun('--group-add', 'nosuchgroup', b, 'echo', 'ran')
        self.assertNotEqual(code, 0)
        self.assertEqual(out, '')
        self.assertIn('group_add[0]', err)

    def test_unmapped_gid_is_refused_for_alice(self):
        b = self.alices_builder()
        self.assert_refused(b, str(tu.SUBID_COUNT + 10), ['not mapped'], user=kt.ALICE)

    def test_keep_groups_for_root(self):
        b = self.builder()
        mine = set(os.getgroups()) | {0, 10}
        out = self.sh(b, GROUPS, '--group-add', 'keep-groups')
        self.assertEqual(set(groups(out)), mine)

    def test_keep_groups_is_refused_for_alice(self):
        b = self.alices_builder()
        self.assert_refused(b, 'keep-groups', ['uid 0'], user=kt.ALICE)
        code, out, err = self.env.kiln('config', '--group-add', 'keep-groups', b.name, user=kt.ALICE)
        self.assertEqual(code, 0, err)
        r = self.captured(b, ['touch', '/ran'], user=kt.ALICE)
        self.assertError(r, kt.E_INVALID, ['builder group_add[0]', 'uid 0'])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))


kr.parametrize(globals(), RunGroupsCases)

if __name__ == '__main__':
    kt.main()
