#!/usr/bin/env python3
"""Caches count in [Limits] StorageBytesPerUser (run parity, type=cache).

A cache is written by the container while a run uses it; kilnd measures it after its last run ends
(on a worker thread) and refuses a user's next run that names a cache while his caches, layers and
images are past the bound: LimitExceeded naming StorageBytesPerUser and mounts[0], nothing ran. A run
without a cache still runs; root is not bound; `kiln prune --cache` frees the room. `kiln info`
counts the caches in storage_bytes.
"""
import json
import os
import time

import kiln_runlib as kr
import kiln_testlib as kt
import test_userns as tu

USER_BYTES = 6 * 1024 * 1024


def setUpModule():
    tu.setup_with(f'\n[Limits]\nStorageBytesPerUser={USER_BYTES}\n')


tearDownModule = tu.tearDownModule


class CacheLimitCases(kr.RunTestCase):

    isolation = 'oci'  # what is measured and bound does not depend on the executor
    alices_builder = tu.UsernsCases_oci.alices_builder
    upper_dir = tu.UsernsCases_oci.upper_dir

    def storage_bytes(self, user=None):
        code, out, err = self.env.kiln('info', '--json', user=user)
        self.assertEqual(code, 0, err)
        return json.loads(out)['storage_bytes']

    def test_caches_count_in_storage_bytes_per_user(self):
        b = self.alices_builder()
        big, small = self.unique_name('big'), self.unique_name('small')
        before = self.storage_bytes(kt.ALICE)
        # Within the bound when it starts: it runs, and writes past it.
        self.sh(b, 'dd if=/dev/zero of=/cache/blob bs=1048576 count=7 2>/dev/null',
                '--mount', f'type=cache,id={big},target=/cache', user=kt.ALICE)
        # Measured off the main loop after the run: wait until info counts it.
        deadline = time.monotonic() + 20
        while self.storage_bytes(kt.ALICE) < before + 7 * 1048576 and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertGreaterEqual(self.storage_bytes(kt.ALICE), before + 7 * 1048576)
        # Any cache now is refused, before anything runs or is made.
        r = self.captured(b, ['touch', '/ran'], {'mounts': [f'type=cache,id={small},target=/c']}, user=kt.ALICE)
        self.assertError(r, kt.E_LIMIT, ['mounts[0]', 'StorageBytesPerUser', str(USER_BYTES)])
        self.assertFalse(os.path.exists(os.path.join(self.upper_dir(b), 'ran')))
        alice = tu.pwd.getpwnam(kt.ALICE)
        self.assertNotIn(small, os.listdir(os.path.join(self.state_dir, 'caches', str(alice.pw_uid))))
        # Without a cache she still runs; root, not bound, runs with his own cache.
        self.sh(b, 'true', user=kt.ALICE)
        self.sh(self.builder(), 'dd if=/dev/zero of=/cache/blob bs=1048576 count=7 2>/dev/null',
                '--mount', f'type=cache,id={big},target=/cache')
        # Pruned, the room is back.
        code, out, err = self.env.kiln('prune', '--cache', big, user=kt.ALICE)
        self.assertEqual((code, out), (0, big + '\n'), err)
        self.assertLess(self.storage_bytes(kt.ALICE), before + 1048576)
        self.sh(b, 'touch /c/ok', '--mount', f'type=cache,id={small},target=/c', user=kt.ALICE)


if __name__ == '__main__':
    kt.main()
