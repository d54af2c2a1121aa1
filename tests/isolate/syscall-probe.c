/* SPDX-License-Identifier: Apache-2.0 */
/* A syscall probe for the isolation tests, built static and copied into the test root file system:
 * it tries a few calls a container should not be able to make and prints one line per call,
 * "NAME ok" or "NAME ERRNO-NAME". The same config.json must give the same lines under kiln-isolate
 * and under runc. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long r)
{
        if (r < 0)
                printf("%s %s\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "?");
        else
                printf("%s ok\n", name);
}

int main(void)
{
        union bpf_attr attr;
        long r;

        r = syscall(SYS_fsopen, "tmpfs", 0);
        report("fsopen", r);
        if (r >= 0)
                close((int)r);

        memset(&attr, 0, sizeof(attr));
        attr.map_type = BPF_MAP_TYPE_ARRAY;
        attr.key_size = 4;
        attr.value_size = 4;
        attr.max_entries = 1;
        r = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
        report("bpf", r);
        if (r >= 0)
                close((int)r);

        /* KEYCTL_GET_KEYRING_ID (0) of the session keyring (-3), creating it if needed. */
        r = syscall(SYS_keyctl, 0, -3, 1);
        report("keyctl", r);

        r = unshare(CLONE_NEWUSER);
        report("unshare-user", r);

        mkdir("/tmp/probe-mnt", 0700);
        r = mount("none", "/tmp/probe-mnt", "tmpfs", 0, NULL);
        report("mount", r);
        if (r == 0)
                umount("/tmp/probe-mnt");
        rmdir("/tmp/probe-mnt");

        fflush(stdout);
        return 0;
}
