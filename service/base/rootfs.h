/* SPDX-License-Identifier: Apache-2.0 */
/* The one way into an untrusted root file system. Every path below is resolved by the kernel with
 * openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) relative to @rootfd: an absolute symlink, "..",
 * or a symlink to "/" inside the image ends at the image's own root, never on the host. There is
 * no fallback: on a kernel without openat2 (before 5.6) every call fails. */
#pragma once

#include <sys/types.h>

#include <glib.h>

#include "base/errors.h"

/* PATH used when the process environment has none (the value buildah and docker use). */
#define KILN_DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Opens @path (absolute or relative, both taken from @rootfd) inside the root file system.
 * O_CLOEXEC is always added. Returns the fd, or -errno (-ENOSYS when openat2 is unavailable). */
int kiln_rootfs_open(int rootfd, const char *path, int flags, mode_t mode);

/* Reads the regular file @path inside the root file system, at most @max_size bytes; anything else
 * (a directory, a FIFO, a device, a socket, a larger file) is refused without reading it. *buf is
 * NUL-terminated (the NUL is not counted in *length). Errors are G_IO_ERROR with the errno-derived
 * code (G_IO_ERROR_NOT_FOUND for a missing file), or KILN_ERROR_CODE_LIMIT_EXCEEDED for the size. */
gboolean kiln_rootfs_read_file(int rootfd, const char *path, gsize max_size, char **buf, gsize *length,
                               GError **error);

/* Creates the directory @path and its missing parents inside the root file system. Directories it
 * creates get @mode (exactly: the umask does not apply) and the owner @uid:@gid (host ids; -1 keeps
 * the service's); existing ones are left alone. A dangling symlink on the way is followed and its
 * target created, still inside the root. Errors name @path and the reason. */
gboolean kiln_rootfs_mkdir_p(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid,
                             GError **error);

/* Resolves a command as execvp() would inside the root file system: @argv0 with a '/' is returned
 * unchanged; otherwise each entry of @path_value (NULL: KILN_DEFAULT_PATH; an empty or relative
 * entry is taken from @cwd) is tried and the first regular file with an execute bit wins. The
 * result is the path in the container (the directory entry, not a symlink's target).
 * No candidate: G_IO_ERROR_NOT_FOUND (a shell's 127); only non-executable candidates:
 * G_IO_ERROR_PERMISSION_DENIED (a shell's 126). */
gboolean kiln_rootfs_lookup_command(int rootfd, const char *argv0, const char *path_value, const char *cwd,
                                    char **resolved, GError **error);
