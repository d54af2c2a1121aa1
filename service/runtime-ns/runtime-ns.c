/* SPDX-License-Identifier: Apache-2.0 */
/* The intermediate mount namespace (runtime-ns.h). Privileged steps, each safe because: the process
 * has just left the host's mount namespace (unshare), so nothing it mounts is seen outside it; the
 * host's mounts propagate in but none propagates out (rslave); the paths come from kilnd, are checked
 * to lie strictly below @cover without ".." or "//", and are taken as they are before the tmpfs hides
 * them; the tmpfs is nosuid, nodev, noexec and 64 KiB. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime-ns.h"

int kiln_runtime_ns_makes_container(const char *const *argv)
{
        for (const char *const *a = argv; *a; a++)
                if (strcmp(*a, "create") == 0 || strcmp(*a, "run") == 0)
                        return 1;
        return 0;
}

static int is_below(const char *cover, const char *path)
{
        size_t n = strlen(cover);

        return strncmp(path, cover, n) == 0 && path[n] == '/' && path[n + 1] && !strstr(path, "/..") &&
               !strstr(path, "//");
}

/* mkdir -p of @path's components below @cover (all in the fresh tmpfs, or the kept trees' mount
 * points), each 0755. */
static int make_path(const char *cover, const char *path, const char **failed)
{
        char buf[4096];

        *failed = path;
        if (strlen(path) >= sizeof(buf))
                return errno = ENAMETOOLONG, -1;
        strcpy(buf, path);
        for (char *p = buf + strlen(cover) + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return -1;
                *p = '/';
        }
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                return -1;
        return 0;
}

static int fail(const char **what, const char **path, const char *w, const char *p)
{
        *what = w;
        *path = p;
        return -1;
}

int kiln_runtime_ns_enter(const char *cover, const char *const *keep, int n_keep, const char **what,
                          const char **path)
{
        int trees[KILN_RUNTIME_NS_MAX_KEEP];
        int k, errsv;

        if (cover[0] != '/' || n_keep < 0 || n_keep > KILN_RUNTIME_NS_MAX_KEEP)
                return errno = EINVAL, fail(what, path, "refusing to cover", cover);
        for (k = 0; k < n_keep; k++)
                if (!is_below(cover, keep[k]))
                        return errno = EINVAL, fail(what, path, "refusing to keep", keep[k]);
        umask(0022);
        if (unshare(CLONE_NEWNS) < 0)
                return fail(what, path, "unshare", "CLONE_NEWNS");
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
                return fail(what, path, "mount --make-rslave", "/");

        /* Take the kept trees before the tmpfs hides them. */
        for (k = 0; k < n_keep; k++) {
                trees[k] = open_tree(AT_FDCWD, keep[k], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (trees[k] < 0) {
                        fail(what, path, "open_tree", keep[k]);
                        goto fail;
                }
        }
        if (mount("tmpfs", cover, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k") < 0) {
                fail(what, path, "mount tmpfs on", cover);
                goto fail;
        }
        for (int i = 0; i < n_keep; i++) {
                if (make_path(cover, keep[i], path) < 0) {
                        *what = "mkdir";
                        goto fail;
                }
                if (move_mount(trees[i], "", AT_FDCWD, keep[i], MOVE_MOUNT_F_EMPTY_PATH) < 0) {
                        fail(what, path, "move_mount to", keep[i]);
                        goto fail;
                }
        }
        for (int i = 0; i < n_keep; i++)
                close(trees[i]);
        return 0;
fail:
        errsv = errno;
        while (k-- > 0)
                close(trees[k]);
        errno = errsv;
        return -1;
}
