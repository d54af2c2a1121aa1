/* SPDX-License-Identifier: Apache-2.0 */
/* The layer unpacker: kiln_layer_unpack() (service/import/layer-tar.c) on an image layer, which is
 * the caller's bytes, written as root. Each input is unpacked into a fresh directory ROOT inside a
 * private directory BASE, and both are removed after it.
 *
 * Two forms of input:
 *   - anything not starting with '#': the layer itself (tar, gzip, zstd or garbage);
 *   - "#" then lines "T NAME[\tARG]": an archive of those entries that the target writes with
 *     libarchive's pax writer first (the fuzzer would seldom get past a tar header's checksum by
 *     itself). T: f file (ARG its content), d directory, l symlink to ARG, h hard link to ARG, c
 *     character device, b block device, p fifo, s socket, x file with the xattr ARG ("NAME=VALUE"),
 *     m file of mode ARG (octal) owned by 1000:1000.
 *
 * Checked beyond "no crash, no leak": a refusal is a G_IO_ERROR with one of the three codes the header
 * names and a message; a success has the blob digest of exactly the input; and either way BASE holds
 * nothing but ROOT, whatever the names said. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <gio/gio.h>

#include "fuzz-common.h"
#include "base/fs-util.h"
#include "import/layer-tar.h"

#define MAX_ENTRIES 256

static char *base;

typedef struct Input {
        const uint8_t *data;
        size_t size;
        gboolean done;
} Input;

static ssize_t read_input(void *user, const void **buf)
{
        Input *in = user;

        *buf = in->data;
        if (in->done)
                return 0;
        in->done = TRUE;
        return (ssize_t)in->size;
}

static void remove_base(void)
{
        kiln_rm_rf_at(AT_FDCWD, base, NULL);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        /* In memory where there is a /dev/shm: a disk write per input would be most of the time. */
        const char *tmp = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : g_get_tmp_dir();

        fuzz_setup_logging();
        base = g_build_filename(tmp, "kiln-fuzz-layer-XXXXXX", NULL);
        if (!g_mkdtemp(base))
                abort();
        atexit(remove_base);
        return 0;
}

/* The "#" form: writes a pax archive of the entries the lines name into a new buffer. */
static GByteArray *build_archive(const char *text, size_t len)
{
        g_autofree char *copy = g_strndup(text, len);
        g_auto(GStrv) lines = g_strsplit(copy, "\n", MAX_ENTRIES + 1);
        struct archive *a = archive_write_new();
        GByteArray *out = NULL;
        size_t used = 0, cap = 4 << 20;
        char *buf = g_malloc(cap);

        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_none(a);
        archive_write_set_bytes_in_last_block(a, 1);
        if (archive_write_open_memory(a, buf, cap, &used) != ARCHIVE_OK)
                goto done;
        for (size_t i = 0; lines[i] && i < MAX_ENTRIES; i++) {
                const char *line = lines[i];
                const char *tab;
                g_autofree char *name = NULL;
                const char *arg;
                struct archive_entry *e;
                size_t content = 0;

                if (strlen(line) < 2)
                        continue;
                tab = strchr(line + 2, '\t');
                arg = tab ? tab + 1 : "";
                name = tab ? g_strndup(line + 2, (gsize)(tab - line - 2)) : g_strdup(line + 2);
                e = archive_entry_new();
                archive_entry_set_pathname(e, name);
                archive_entry_set_mtime(e, 1000 + (time_t)i, 0);
                archive_entry_set_perm(e, 0644);
                switch (line[0]) {
                case 'd':
                        archive_entry_set_filetype(e, AE_IFDIR);
                        archive_entry_set_perm(e, 0755);
                        break;
                case 'l':
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, arg);
                        break;
                case 'h':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_hardlink(e, arg);
                        break;
                case 'c':
                case 'b':
                        archive_entry_set_filetype(e, line[0] == 'c' ? AE_IFCHR : AE_IFBLK);
                        archive_entry_set_rdevmajor(e, 1);
                        archive_entry_set_rdevminor(e, 3);
                        break;
                case 'p':
                        archive_entry_set_filetype(e, AE_IFIFO);
                        break;
                case 's':
                        archive_entry_set_filetype(e, AE_IFSOCK);
                        break;
                case 'x': {
                        const char *eq = strchr(arg, '=');
                        g_autofree char *xname = eq ? g_strndup(arg, (gsize)(eq - arg)) : g_strdup(arg);
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_xattr_add_entry(e, xname, eq ? eq + 1 : "", eq ? strlen(eq + 1) : 0);
                        break;
                }
                case 'm':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, (mode_t)strtoul(arg, NULL, 8) & 07777);
                        archive_entry_set_uid(e, 1000);
                        archive_entry_set_gid(e, 1000);
                        break;
                default:
                        archive_entry_set_filetype(e, AE_IFREG);
                        content = strlen(arg);
                        archive_entry_set_size(e, (la_int64_t)content);
                        break;
                }
                if (archive_write_header(a, e) != ARCHIVE_OK) {
                        archive_entry_free(e);
                        continue; /* a name the writer cannot store */
                }
                if (content)
                        archive_write_data(a, arg, content);
                archive_entry_free(e);
        }
        if (archive_write_close(a) == ARCHIVE_OK) {
                out = g_byte_array_sized_new((guint)used);
                g_byte_array_append(out, (const guint8 *)buf, (guint)used);
        }
done:
        archive_write_free(a);
        g_free(buf);
        return out;
}

static void check_base_holds_only_root(void)
{
        g_autoptr(GDir) d = g_dir_open(base, 0, NULL);
        const char *n;

        if (!d)
                abort();
        while ((n = g_dir_read_name(d)))
                if (strcmp(n, "root") != 0)
                        abort(); /* something was written beside the layer's root */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const KilnLayerLimits limits = {.max_bytes = 16 << 20, .max_entries = 4096};
        g_autoptr(GByteArray) built = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *root = g_build_filename(base, "root", NULL);
        KilnLayerResult result;
        Input in = {data, size, FALSE};
        gboolean ok;
        int root_fd;

        if (size > 0 && data[0] == '#') {
                built = build_archive((const char *)data + 1, size - 1);
                if (!built)
                        return 0;
                in.data = built->data;
                in.size = built->len;
        }
        if (mkdir(root, 0755) < 0)
                abort();
        root_fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0)
                abort();
        ok = kiln_layer_unpack(read_input, &in, root_fd, &limits, &result, &error);
        close(root_fd);
        if (ok) {
                g_autofree char *digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, in.data, in.size);
                if (error || strcmp(digest, result.blob_digest) != 0 || strlen(result.diff_id) != 64)
                        abort();
        } else if (!error || error->domain != G_IO_ERROR || !error->message[0] ||
                   (error->code != G_IO_ERROR_INVALID_ARGUMENT && error->code != G_IO_ERROR_NO_SPACE &&
                    error->code != G_IO_ERROR_FAILED)) {
                abort();
        }
        check_base_holds_only_root();
        if (kiln_rm_rf_at(AT_FDCWD, root, NULL) < 0)
                abort();
        return 0;
}
