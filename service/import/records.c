/* SPDX-License-Identifier: Apache-2.0 */
/* kiln-import's records beside the layers (records.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <stdint.h>

#include <glib.h>

#include "base/kiln-common.h"
#include "layer-digest.h"
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

char *kiln_import_read_record(int layers_fd, const char *dir, const char *name, size_t max)
{
        g_autofree char *path = g_strconcat(dir, "/", name, NULL);
        _cleanup_close_ int fd = openat(layers_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        g_autofree char *buf = NULL;
        ssize_t n;

        if (fd < 0)
                return NULL;
        buf = g_malloc(max + 1);
        n = read(fd, buf, max + 1);
        if (n <= 0 || (size_t)n > max)
                return NULL;
        buf[n] = '\0';
        return g_steal_pointer(&buf);
}

char *kiln_import_fd_fingerprint(int fd, const char *what, const char *extra)
{
        g_autoptr(GChecksum) c = g_checksum_new(G_CHECKSUM_SHA256);
        g_autofree char *id = NULL;
        struct stat st;

        if (fstat(fd, &st) < 0)
                return NULL;
        id = g_strdup_printf("kiln-image-%s-v1\n%ju:%ju:%jd:%jd.%ld:%jd.%ld\n", what, (uintmax_t)st.st_dev,
                             (uintmax_t)st.st_ino, (intmax_t)st.st_size, (intmax_t)st.st_mtim.tv_sec,
                             st.st_mtim.tv_nsec, (intmax_t)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
        g_checksum_update(c, (const guchar *)id, -1);
        g_checksum_update(c, (const guchar *)extra, -1);
        return g_strdup(g_checksum_get_string(c));
}

char *kiln_import_archive_extra(const char *kind, const char *ref, const char *platform)
{
        /* "v2": the platform as given, no longer the one it resolved to (records of v1 just miss). */
        return g_strjoin("\n", "v2", kind, ref ? ref : "", platform ? platform : "", NULL);
}

const char *kiln_import_archive_record_result(const char *record)
{
        if (!record || strlen(record) < KILN_LAYER_DIGEST_LENGTH + 1 ||
            record[KILN_LAYER_DIGEST_LENGTH] != '\n')
                return NULL;
        return record + KILN_LAYER_DIGEST_LENGTH + 1;
}
