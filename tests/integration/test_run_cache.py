#!/usr/bin/env python3
"""--mount type=cache: caches of the caller's, kept by kilnd in STATE/caches/UID/ID, as buildah's and
BuildKit's RUN --mount=type=cache; both executors, root and kiln-alice (user namespace).

- What a run writes into its cache the next run sees, in another builder too, after the first builder
  is gone; on the host it is in STATE/caches/UID/ID, owned by the run's user as mapped (kiln-alice's
  uid for her container root), under root-only 0700 directories.
- Never shared across users: kiln-alice's cache of an id is not root's.
- uid=, gid=, mode= give a new cache its owner and mode inside; ro makes it read-only (EROFS);
  source= is a directory inside the cache.
- sharing=locked: while a run uses the cache, another is refused with Busy naming mounts[0];
  sharing=private: it gets an empty cache of its own, thrown away.
- A bad key, id, sharing or mode, and from=, are InvalidArgument naming mounts[0], and nothing ran.
- kiln prune --cache [ID]: removes the caller's caches (kiln-alice's never touch root's), keeps one a
  run uses (exit 125, named on stderr).
"""
import os
import stat

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

setUpModule = tu.setUpModule
tearDownModule = tu.tearDownModule


class RunCacheCases(kr.RunTestCase):

    alices_builder = tu.UsernsCases_oci.alices_builder
    upper_dir = tu.UsernsCases_oci.upper_dir

    def cache_dir(self, uid, cache_id):
        return os.path.join(self.state_dir, 'caches', str(uid), cache_id)

    def mount(self, cache_id, *extra, target='/cache'):
        return ','.join([f'type=cache,id={cache_id},target={target}'] + list(extra))

    def assert_cache_survives(self, new_builder, user=None, uid=0):
        cid = self.unique_name('c')
        b = new_builder()
        self.sh(b, 'echo first > /cache/f; stat -c %u:%g /cache', '--mount', self.mount(cid), user=user)
        self.remove(b.path, force=True)
        b2 = new_builder()
        out = self.sh(b2, 'cat /cache/f; stat -c %u:%g /cache/f', '--mount', self.mount(cid), user=user)
        self.assertEqual(out.split(), ['first', '0:0'])
        host = self.cache_dir(uid, cid)
        st = os.stat(os.path.join(host, 'f'))
        self.assertEqual(st.st_uid, uid)
        for d in (os.path.dirname(os.path.dirname(host)), os.path.dirname(host)):
            st = os.stat(d)
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o700), d)
        return cid

    def test_cache_survives_runs_and_builders(self):
        self.assert_cache_survives(self.builder)

    def test_cache_survives_for_alice_and_is_hers(self):
        alice = tu.pwd.getpwnam(kt.ALICE)
        cid = self.assert_cache_survives(self.alices_builder, user=kt.ALICE, uid=alice.pw_uid)
        st = os.stat(self.cache_dir(alice.pw_uid, cid))
        self.assertEqual((st.st_uid, st.st_gid), (alice.pw_uid, alice.pw_gid))
        # Root's cache of the same id is another one.
        out = self.sh(self.builder(), 'ls /cache', '--mount', self.mount(cid))
        self.assertEqual(out, '')

    def test_owner_mode_ro_and_source(self):
        b, cid = self.alices_builder(), self.unique_name('c')
        out = self.sh(b, 'stat -c %u:%g:%a /cache; touch /cache/x', '--mount',
                      self.mount(cid, 'uid=1000', 'gid=1000', 'mode=0750'), user=kt.ALICE)
        self.assertEqual(out.split(), ['1000:1000:750'])
        alice = tu.pwd.getpwnam(kt.ALICE)
        st = os.stat(self.cache_dir(alice.pw_uid, cid))
        self.assertEqual((st.st_uid, st.st_gid), (tu.ALICE_SUBUID + 999, tu.ALICE_SUBGID + 999))
        code, out, err = self.krun('--mount', self.mount(cid, 'ro'), b, '--', 'sh', '-c',
                                   'ls /cache; touch /cache/y', user=kt.ALICE)
        self.assertNotEqual(code, 0)
        self.assertEqual(out, 'x\n')
        self.assertIn('Read-only file system', err)
        self.sh(b, 'touch /sub/z', '--mount', self.mount(cid, 'source=a/b', target='/sub'), user=kt.ALICE)
        self.assertTrue(os.path.exists(os.path.join(self.cache_dir(alice.pw_uid, cid), 'a', 'b', 'z')))

    def test_sharing(self):
        b, cid = self.builder(), self.unique_name('c')
        self.sh(b, 'echo kept > /cache/f', '--mount', self.mount(cid))
        path = self.start(b, ['sleep', '600'], {'mounts': [self.mount(cid, 'sharing=locked')]})
        self.wait_running(path)
        for sharing in ('locked', 'shared'):
            r = self.captured(b, ['touch', '/ran'], {'mounts': [self.mount(cid, f'sharing={sharing}')]})
            self.assertError(r, kt.E_BUSY, ['mounts[0]', cid])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))
        out = self.sh(b, 'ls /cache; echo lost > /cache/g', '--mount', self.mount(cid, 'sharing=private'))
        self.assertEqual(out, '')
        code, out, err = self.env.kiln('prune', '--cache', cid)
        self.assertEqual((code, out), (125, ''), err)
        self.assertIn(cid, err)
        self.kill_process(path, 'KILL')
        self.wait_process(path)
        out = self.sh(b, 'ls /cache', '--mount', self.mount(cid, 'sharing=locked'))
        self.assertEqual(out, 'f\n')

    def test_bad_cache_mounts_are_refused(self):
        b = self.builder()
        for value, fragment in (('type=cache,target=/c,from=busybox', 'from'),
                                ('type=cache,target=/c,id=../x', 'id'),
                                ('type=cache,target=/c,id=a/b', 'id'),
                                ('type=cache,target=/c,sharing=sometimes', 'sharing'),
                                ('type=cache,target=/c,mode=0999', 'mode'),
                                ('type=cache,target=/c,uid=-1', 'uid'),
                                ('type=cache,target=/c,source=../x', '..'),
                                ('type=cache,target=/c,bogus=1', 'bogus'),
                                ('type=cache,id=x', 'target')):
            with self.subTest(value=value):
                r = self.captured(b, ['touch', '/ran'], {'mounts': [value]})
                self.assertError(r, kt.E_INVALID, ['mounts[0]', fragment])
                self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))

    def test_prune(self):
        alice = tu.pwd.getpwnam(kt.ALICE)
        mine, hers = self.unique_name('c'), self.unique_name('c')
        self.sh(self.builder(), 'touch /cache/f', '--mount', self.mount(mine))
        ab = self.alices_builder()
        self.sh(ab, 'touch /cache/f', '--mount', self.mount(hers), user=kt.ALICE)
        self.sh(ab, 'touch /cache/f', '--mount', self.mount(mine), user=kt.ALICE)
        self.sh(ab, 'touch /u/f', '--mount', 'type=cache,target=/u', user=kt.ALICE)  # id: the target's hash
        code, out, err = self.env.kiln('prune', '--cache', hers, user=kt.ALICE)
        self.assertEqual((code, out), (0, hers + '\n'), err)
        self.assertFalse(os.path.exists(self.cache_dir(alice.pw_uid, hers)))
        code, out, err = self.env.kiln('prune', '--cache', user=kt.ALICE)
        self.assertEqual(code, 0, err)
        self.assertEqual(os.listdir(os.path.dirname(self.cache_dir(alice.pw_uid, 'x'))), [])
        self.assertIn(mine, out)
        # Root's cache of the same id is still there.
        self.assertTrue(os.path.exists(os.path.join(self.cache_dir(0, mine), 'f')))
        r = self.gcall(kt.MANAGER_PATH, kt.MANAGER_IFACE + '.RemoveCaches', kt.gv_strv(['../x']), user=kt.ALICE)
        self.assertError(r, kt.E_INVALID, ['ids'])
        code, out, err = self.env.kiln('prune', '--cache', mine)
        self.assertEqual((code, out), (0, mine + '\n'), err)


kr.parametrize(globals(), RunCacheCases)

if __name__ == '__main__':
    kt.main()
