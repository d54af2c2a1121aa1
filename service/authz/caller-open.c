/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "authz/caller-open.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"

/* glibc's setgroups() changes every thread of the process; the raw system call changes this one. */
static int thread_setgroups(size_t n, const gid_t *groups)
{
        return (int)syscall(SYS_setgroups, n, groups);
}

typedef struct {
        gid_t *groups;
        int n_groups;
} OwnIdentity;

/* Back to kilnd's own identity, or nothing is safe any more. */
static void restore_identity(OwnIdentity *own)
{
        int saved = errno;

        setfsuid(0);
        setfsgid(0);
        if (thread_setgroups((size_t)own->n_groups, own->groups) < 0 || setfsuid((uid_t)-1) != 0 ||
            setfsgid((gid_t)-1) != 0)
                g_error("Cannot return to kilnd's own file-system identity");
        g_free(own->groups);
        errno = saved;
}

/* setfsuid from 0 to the caller also drops the effective DAC-overriding capabilities, on this thread
 * only; opens and access checks then see the caller. */
static gboolean become_caller(const KilnCreds *creds, OwnIdentity *own)
{
        own->n_groups = getgroups(0, NULL);
        own->groups = g_new(gid_t, MAX(own->n_groups, 1));
        if (own->n_groups < 0 || getgroups(own->n_groups, own->groups) != own->n_groups) {
                g_free(own->groups);
                return FALSE;
        }
        if (thread_setgroups(creds->n_groups, creds->groups) < 0) {
                restore_identity(own);
                return FALSE;
        }
        setfsgid(creds->gid);
        setfsuid(creds->uid);
        if ((uid_t)setfsuid((uid_t)-1) != creds->uid || (gid_t)setfsgid((gid_t)-1) != creds->gid) {
                restore_identity(own);
                errno = EPERM;
                return FALSE;
        }
        return TRUE;
}

static gboolean readable(int fd)
{
        return faccessat(fd, "", R_OK, AT_EMPTY_PATH | AT_EACCESS) == 0;
}

/* Symlinks, the last component's included, are followed with the caller's identity: the result is
 * what the caller's own open would reach, never the link itself (no O_NOFOLLOW, so a descriptor of
 * a symlink cannot come out of here). Magic links are refused: /proc/self/fd/N and /proc/self/cwd
 * would be kilnd's, and lead to whatever kilnd holds open (another caller's volume), past the
 * directories that keep this caller out. */
static int open_path(const char *path)
{
        int fd = kiln_openat2(AT_FDCWD, path, O_PATH, 0, RESOLVE_NO_MAGICLINKS);

        if (fd < 0)
                errno = -fd; /* the callers read errno */
        return fd < 0 ? -1 : fd;
}

/* The path opened O_PATH with the caller's identity; with @must_be_readable, only if the caller may read it.
 */
static int open_as_caller(const KilnCreds *creds, const char *path, gboolean must_be_readable)
{
        OwnIdentity own;
        int fd;

        if (!become_caller(creds, &own))
                return -1;
        fd = open_path(path);
        if (fd >= 0 && must_be_readable && !readable(fd)) {
                kiln_close_fdp(&fd);
                fd = -1;
        }
        restore_identity(&own);
        return fd;
}

int kiln_open_as_caller(const KilnCreds *creds, const char *path)
{
        return open_as_caller(creds, path, TRUE);
}

int kiln_lookup_as_caller(const KilnCreds *creds, const char *path)
{
        return open_as_caller(creds, path, FALSE);
}

gboolean kiln_caller_can_read(const KilnCreds *creds, int fd)
{
        OwnIdentity own;
        gboolean ok;

        if (!become_caller(creds, &own))
                return FALSE;
        ok = readable(fd);
        restore_identity(&own);
        return ok;
}
