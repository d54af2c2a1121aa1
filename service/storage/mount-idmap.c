/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "base/kiln-common.h"
#include "storage/mount-idmap.h"

static char *format_map(const KilnIdMapping *map, gsize n)
{
        GString *s = g_string_new(NULL);

        for (gsize i = 0; i < n; i++)
                g_string_append_printf(s, "%u %u %u\n", map[i].container_id, map[i].host_id, map[i].size);
        return g_string_free(s, FALSE);
}

static gboolean write_map(pid_t pid, const char *file, const KilnIdMapping *map, gsize n, GError **error)
{
        g_autofree char *path = g_strdup_printf("/proc/%d/%s", (int)pid, file);
        g_autofree char *text = format_map(map, n);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);

        /* One write: the kernel takes a map whole or not at all. */
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot write %s: %s", path,
                            g_strerror(errno));
                return FALSE;
        }
        return TRUE;
}

int kiln_userns_fd_new(const KilnIdMapping *uid_map, gsize n_uid, const KilnIdMapping *gid_map, gsize n_gid,
                       GError **error)
{
        g_autofree char *ns_path = NULL;
        int fd = -1, status;
        pid_t pid;

        /* A child born in the new namespace that only waits to be killed: raw clone, so nothing of this
         * multi-threaded process runs in it (it does not return from the syscall into our code). */
        pid = (pid_t)syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
        if (pid < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "Cannot create a user namespace: %s", g_strerror(errno));
                return -1;
        }
        if (pid == 0) {
                for (;;)
                        pause();
        }
        if (write_map(pid, "uid_map", uid_map, n_uid, error) &&
            write_map(pid, "gid_map", gid_map, n_gid, error)) {
                ns_path = g_strdup_printf("/proc/%d/ns/user", (int)pid);
                fd = open(ns_path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "Cannot open %s: %s",
                                    ns_path, g_strerror(errno));
        }
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return fd;
}

int kiln_idmapped_tree(int dir_fd, int userns_fd, const char *what, GError **error)
{
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (guint64)userns_fd};
        _cleanup_close_ int tree = -1;

        tree = open_tree(dir_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
        if (tree < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "open_tree %s: %s", what,
                            g_strerror(errno));
                return -1;
        }
        if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                            "The kernel refuses an ID-mapped mount of %s: %s", what, g_strerror(errno));
                return -1;
        }
        return kiln_steal_fd(&tree);
}
