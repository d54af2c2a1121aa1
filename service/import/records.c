/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's records beside the layers (records.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <glib.h>

#include "base/kiln-common.h"
#include "records.h"

void kiln_import_write_record(int layers_fd, const char *dir, const char *name, const char *text)
{
        g_autofree char *tmp = g_strconcat(dir, "/.tmp-", name, NULL);
        g_autofree char *path = g_strconcat(dir, "/", name, NULL);
        size_t len = strlen(text);
        _cleanup_close_ int fd = -1;

        if (mkdirat(layers_fd, dir, 0700) < 0 && errno != EEXIST)
                return;
        fd = openat(layers_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        if (write(fd, text, len) != (ssize_t)len || fsync(fd) < 0 ||
            renameat(layers_fd, tmp, layers_fd, path) < 0)
                (void)unlinkat(layers_fd, tmp, 0);
}
