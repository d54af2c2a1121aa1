/* SPDX-License-Identifier: Apache-2.0 */
/* unpack-layer: kiln_layer_unpack() (service/import/layer-tar.h) on the command line, for the tests
 * and for measuring it. Built for the tests only, never installed.
 *
 *   unpack-layer [--max-bytes N] [--max-entries N] [--fd N] DIR
 *
 * Reads the layer from descriptor N (default 0) into the existing empty directory DIR and prints
 * {"blob_digest": ..., "diff_id": ..., "bytes": ..., "entries": ...}. On an error it prints
 * "CODE: MESSAGE" on stderr (CODE the GIOError nick: invalid-argument, no-space, failed) and exits 1;
 * 2 for a bad command line. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "import/layer-tar.h"

#define BUFFER_SIZE (256 * 1024)

typedef struct Source {
        int fd;
        char buffer[BUFFER_SIZE];
} Source;

static ssize_t read_fd(void *data, const void **buf)
{
        Source *s = data;
        ssize_t n;

        do
                n = read(s->fd, s->buffer, sizeof(s->buffer));
        while (n < 0 && errno == EINTR);
        *buf = s->buffer;
        return n;
}

static const char *code_name(const GError *error)
{
        if (error->domain != G_IO_ERROR)
                return "other-domain";
        switch (error->code) {
        case G_IO_ERROR_INVALID_ARGUMENT:
                return "invalid-argument";
        case G_IO_ERROR_NO_SPACE:
                return "no-space";
        case G_IO_ERROR_FAILED:
                return "failed";
        default:
                return "other-code";
        }
}

int main(int argc, char **argv)
{
        static Source source;
        KilnLayerLimits limits = {0};
        KilnLayerResult result;
        g_autoptr(GError) error = NULL;
        const char *dir = NULL;
        int root_fd;

        source.fd = 0;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--max-bytes") == 0 && i + 1 < argc)
                        limits.max_bytes = g_ascii_strtoull(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--max-entries") == 0 && i + 1 < argc)
                        limits.max_entries = g_ascii_strtoull(argv[++i], NULL, 10);
                else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc)
                        source.fd = atoi(argv[++i]);
                else if (!dir && argv[i][0] != '-')
                        dir = argv[i];
                else
                        dir = NULL, i = argc;
        }
        if (!dir) {
                fprintf(stderr, "usage: unpack-layer [--max-bytes N] [--max-entries N] [--fd N] DIR\n");
                return 2;
        }
        root_fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0) {
                fprintf(stderr, "failed: open '%s': %s\n", dir, g_strerror(errno));
                return 1;
        }
        if (!kiln_layer_unpack(read_fd, &source, root_fd, &limits, &result, &error)) {
                fprintf(stderr, "%s: %s\n", code_name(error), error->message);
                close(root_fd);
                return 1;
        }
        close(root_fd);
        printf("{\"blob_digest\": \"%s\", \"diff_id\": \"%s\", \"bytes\": %" PRIu64 ", \"entries\": %" PRIu64
               "}\n",
               result.blob_digest, result.diff_id, result.bytes, result.entries);
        return 0;
}
