/* SPDX-License-Identifier: Apache-2.0 */
/* service/copy: the names in a Copy's stream, the --chmod mode, and the unpacker on hostile streams
 * written into a scratch root (as the caller of the test: container root mapped to it). */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy/copy.h"
#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "spec/spec.h"

static void test_entry_path(void)
{
        static const struct {
                const char *name, *expected; /* NULL: refused */
        } cases[] = {
                {"a", "a"},
                {"./a/b", "a/b"},
                {"/etc/passwd", "etc/passwd"},
                {"a//b/./c/", "a/b/c"},
                {".", ""},
                {"./", ""},
                {"..", NULL},
                {"a/../b", NULL},
                {"../x", NULL},
                {"a/..", NULL},
                {"", NULL},
                {"...", "..."},
                {"..a/b..", "..a/b.."},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autofree char *rel = kiln_copy_entry_path(cases[i].name, &error);

                g_assert_cmpstr(rel, ==, cases[i].expected);
                if (!cases[i].expected)
                        g_assert_nonnull(strstr(error->message, "source"));
        }
}

static void test_parse_mode(void)
{
        static const struct {
                const char *text;
                gint64 expected; /* -1: refused */
        } cases[] = {
                {"0644", 0644}, {"755", 0755}, {"4755", 04755}, {"07777", 07777},
                {"0", 0},       {"10000", -1}, {"8", -1},       {"", -1},
                {"-1", -1},     {"0x1ff", -1}, {"000644", -1},  {"rwx", -1},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                guint32 mode = 0;
                gboolean ok = kiln_copy_parse_mode("chmod", cases[i].text, &mode, &error);

                g_assert_cmpint(ok, ==, cases[i].expected >= 0);
                if (ok)
                        g_assert_cmpuint(mode, ==, (guint32)cases[i].expected);
                else
                        g_assert_nonnull(strstr(error->message, "chmod"));
        }
}

/* A ustar header block for @name (type @type, @size bytes of content, @link). */
static void put_header(GByteArray *tar, const char *name, char type, gsize size, const char *link)
{
        guint8 block[512] = {0};
        unsigned sum = 0;

        g_strlcpy((char *)block, name, 100);
        g_snprintf((char *)block + 100, 8, "%07o", 0644);
        g_snprintf((char *)block + 108, 8, "%07o", 0);
        g_snprintf((char *)block + 116, 8, "%07o", 0);
        g_snprintf((char *)block + 124, 12, "%011o", (unsigned)size);
        g_snprintf((char *)block + 136, 12, "%011o", 1700000000u);
        memset(block + 148, ' ', 8);
        block[156] = (guint8)type;
        if (link)
                g_strlcpy((char *)block + 157, link, 100);
        memcpy(block + 257, "ustar", 6);
        memcpy(block + 263, "00", 2);
        for (int i = 0; i < 512; i++)
                sum += block[i];
        g_snprintf((char *)block + 148, 8, "%06o", sum);
        g_byte_array_append(tar, block, 512);
}

static void put_file(GByteArray *tar, const char *name, const char *content)
{
        guint8 pad[512] = {0};
        gsize n = strlen(content);

        put_header(tar, name, '0', n, NULL);
        g_byte_array_append(tar, (const guint8 *)content, (guint)n);
        g_byte_array_append(tar, pad, (guint)((512 - n % 512) % 512));
}

static void put_end(GByteArray *tar)
{
        guint8 zero[1024] = {0};

        g_byte_array_append(tar, zero, sizeof(zero));
}

typedef struct {
        char *base;
        int base_fd;
} Scratch;

static void scratch_setup(Scratch *s, G_GNUC_UNUSED gconstpointer data)
{
        s->base = g_dir_make_tmp("kiln-test-copy-XXXXXX", NULL);
        g_assert_nonnull(s->base);
        s->base_fd = open(s->base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_assert_cmpint(s->base_fd, >=, 0);
        g_assert_cmpint(mkdirat(s->base_fd, "outside", 0755), ==, 0);
        g_assert_cmpint(mkdirat(s->base_fd, "root", 0755), ==, 0);
        g_assert_cmpint(mkdirat(s->base_fd, "root/etc", 0755), ==, 0);
        g_assert_cmpint(symlinkat("../outside", s->base_fd, "root/up"), ==, 0);
        g_assert_cmpint(symlinkat("/etc", s->base_fd, "root/to-etc"), ==, 0);
}

static void scratch_teardown(Scratch *s, G_GNUC_UNUSED gconstpointer data)
{
        g_assert_cmpint(kiln_rm_rf_at(AT_FDCWD, s->base, NULL), ==, 0);
        close(s->base_fd);
        g_free(s->base);
}

/* Unpacks @tar into /@dest of the scratch root; the error or NULL. */
static GError *unpack(Scratch *s, GByteArray *tar, const char *dest, guint64 max_bytes, guint64 max_entries)
{
        g_auto(KilnCopyIn) job = {.stream_fd = -1, .root_fd = -1};
        GError *error = NULL;
        int memfd = memfd_create("stream", MFD_CLOEXEC);
        KilnIdMapping uid = {0, getuid(), 1}, gid = {0, getgid(), 1};

        g_assert_cmpint(memfd, >=, 0);
        g_assert_cmpint(write(memfd, tar->data, tar->len), ==, (ssize_t)tar->len);
        g_assert_cmpint(lseek(memfd, 0, SEEK_SET), ==, 0);
        job.stream_fd = memfd;
        job.root_fd = openat(s->base_fd, "root", O_PATH | O_DIRECTORY | O_CLOEXEC);
        job.dest = g_strdup(dest);
        job.uid_map = g_array_new(FALSE, FALSE, sizeof(KilnIdMapping));
        job.gid_map = g_array_new(FALSE, FALSE, sizeof(KilnIdMapping));
        g_array_append_val(job.uid_map, uid);
        g_array_append_val(job.gid_map, gid);
        job.limits = (KilnCopyLimits){max_bytes, max_entries};
        if (kiln_copy_in_run(&job, NULL, &error))
                g_assert_null(error);
        return error;
}

static gboolean exists(Scratch *s, const char *path)
{
        struct stat st;

        return fstatat(s->base_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* openat2 is missing under valgrind 3.19: kiln then refuses every copy (fails closed), and the unpack
 * tests say so instead of failing. */
static gboolean skip_without_openat2(void)
{
        int fd = kiln_openat2(AT_FDCWD, "/", O_PATH, 0, 0);

        if (fd == -ENOSYS) {
                g_test_skip("no openat2 here");
                return TRUE;
        }
        if (fd >= 0)
                close(fd);
        return FALSE;
}

static void test_unpack_tree(Scratch *s, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GByteArray) tar = g_byte_array_new();
        g_autoptr(GError) error = NULL;
        struct stat a, b;
        if (skip_without_openat2())
                return;

        put_header(tar, "d/", '5', 0, NULL);
        put_file(tar, "d/f", "hello\n");
        put_header(tar, "d/l", '2', 0, "/etc/shadow");
        put_header(tar, "d/h", '1', 0, "d/f");
        put_file(tar, "/abs", "absolute\n");
        put_file(tar, "deep/er/g", "made parents\n");
        put_end(tar);
        error = unpack(s, tar, "/to-etc/../dest", G_MAXUINT64, G_MAXUINT64);
        g_assert_no_error(error);
        g_assert_cmpint(fstatat(s->base_fd, "root/dest/d/f", &a, 0), ==, 0);
        g_assert_cmpint(fstatat(s->base_fd, "root/dest/d/h", &b, 0), ==, 0);
        g_assert_cmpuint(a.st_ino, ==, b.st_ino);
        g_assert_cmpuint(a.st_uid, ==, getuid());
        g_assert_true(exists(s, "root/dest/abs"));
        g_assert_true(exists(s, "root/dest/deep/er/g"));
        g_assert_true(exists(s, "root/dest/d/l"));
}

static void test_unpack_hostile(Scratch *s, G_GNUC_UNUSED gconstpointer data)
{
        static const struct {
                const char *what;
                const char *fragment;
        } cases[] = {
                {"dotdot", "'..'"},          {"through-symlink", "up/x"}, {"hardlink-out", "'..'"},
                {"hardlink-symlink", "'h'"}, {"device", "device"},        {"not-tar", "not a tar stream"},
        };
        if (skip_without_openat2())
                return;

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GByteArray) tar = g_byte_array_new();
                g_autoptr(GError) error = NULL;

                if (g_str_equal(cases[i].what, "dotdot")) {
                        put_file(tar, "../../outside/x", "x");
                } else if (g_str_equal(cases[i].what, "through-symlink")) {
                        put_header(tar, "up", '2', 0, "../../outside");
                        put_file(tar, "up/x", "x");
                } else if (g_str_equal(cases[i].what, "hardlink-out")) {
                        put_header(tar, "h", '1', 0, "../etc/passwd");
                } else if (g_str_equal(cases[i].what, "hardlink-symlink")) {
                        put_header(tar, "s", '2', 0, "/etc/hostname");
                        put_header(tar, "h", '1', 0, "s");
                } else if (g_str_equal(cases[i].what, "device")) {
                        put_header(tar, "null", '3', 0, NULL);
                } else {
                        g_byte_array_append(tar, (const guint8 *)"not a tar stream at all", 23);
                }
                put_end(tar);
                error = unpack(s, tar, "/dest", G_MAXUINT64, G_MAXUINT64);
                g_assert_nonnull(error);
                g_assert_true(g_error_matches(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT));
                if (!strstr(error->message, cases[i].fragment))
                        g_error("%s: '%s' does not say '%s'", cases[i].what, error->message,
                                cases[i].fragment);
                g_assert_false(exists(s, "outside/x"));
                g_assert_false(exists(s, "root/dest/null"));
        }
}

static void test_unpack_limits(Scratch *s, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GByteArray) tar = g_byte_array_new();
        g_autoptr(GError) bytes = NULL, entries = NULL;
        if (skip_without_openat2())
                return;

        put_file(tar, "a", "0123456789");
        put_file(tar, "b", "0123456789");
        put_end(tar);
        bytes = unpack(s, tar, "/dest", 15, G_MAXUINT64);
        g_assert_true(g_error_matches(bytes, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED));
        g_assert_nonnull(strstr(bytes->message, "CopyBytes"));
        entries = unpack(s, tar, "/dest2", G_MAXUINT64, 1);
        g_assert_true(g_error_matches(entries, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED));
        g_assert_nonnull(strstr(entries->message, "CopyEntries"));
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/copy/entry-path", test_entry_path);
        g_test_add_func("/copy/parse-mode", test_parse_mode);
        g_test_add("/copy/unpack/tree", Scratch, NULL, scratch_setup, test_unpack_tree, scratch_teardown);
        g_test_add("/copy/unpack/hostile", Scratch, NULL, scratch_setup, test_unpack_hostile,
                   scratch_teardown);
        g_test_add("/copy/unpack/limits", Scratch, NULL, scratch_setup, test_unpack_limits,
                   scratch_teardown);
        return g_test_run();
}
