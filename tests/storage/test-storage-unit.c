/* SPDX-License-Identifier: Apache-2.0 */
/* Storage tests that need no privileges: validation at the storage boundary, the digest format, and
 * removal of hostile trees. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "base/fs-util.h"
#include "import/layer-digest.h"
#include "base/kiln-common.h"
#include "storage/storage.h"

#define GOOD_ID "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char *make_base(void)
{
        g_autoptr(GError) error = NULL;
        char *base = g_dir_make_tmp("kiln-storage-unit-XXXXXX", &error);

        g_assert_no_error(error);
        return base;
}

static void remove_base(const char *base)
{
        g_assert_cmpint(kiln_rm_rf_at(AT_FDCWD, base, NULL), ==, 0);
}

static void write_file(const char *path, const char *content)
{
        g_autoptr(GError) error = NULL;

        g_file_set_contents(path, content, -1, &error);
        g_assert_no_error(error);
}

static void test_hex64(void)
{
        g_assert_true(kiln_hex64_is_valid(GOOD_ID));
        g_assert_false(kiln_hex64_is_valid(NULL));
        g_assert_false(kiln_hex64_is_valid(""));
        g_assert_false(kiln_hex64_is_valid(".."));
        g_assert_false(
                kiln_hex64_is_valid("0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"));
        g_assert_false(kiln_hex64_is_valid(GOOD_ID "0"));
        g_assert_false(
                kiln_hex64_is_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"));
        g_assert_false(
                kiln_hex64_is_valid("../3456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
        g_assert_false(
                kiln_hex64_is_valid("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde/"));
}

static void test_names(void)
{
        g_assert_true(kiln_name_is_valid("a", 1));
        g_assert_true(kiln_name_is_valid("...", 3));
        g_assert_false(kiln_name_is_valid("", 0));
        g_assert_false(kiln_name_is_valid(".", 1));
        g_assert_false(kiln_name_is_valid("..", 2));
        g_assert_false(kiln_name_is_valid("a/b", 3));
        g_assert_false(kiln_name_is_valid("a\0b", 3));

        char long_name[300];
        memset(long_name, 'x', sizeof(long_name));
        g_assert_true(kiln_name_is_valid(long_name, 255));
        g_assert_false(kiln_name_is_valid(long_name, 256));
}

static void test_escape(void)
{
        g_autofree char *a = kiln_escape_for_message("etc/shadow", 10);
        g_autofree char *b = kiln_escape_for_message("a\nb\\c\xff", 6);
        g_autofree char *c = kiln_escape_for_message("caf\xc3\xa9", 5);

        g_assert_cmpstr(a, ==, "etc/shadow");
        g_assert_cmpstr(b, ==, "a\\x0ab\\x5cc\\xff");
        g_assert_cmpstr(c, ==, "caf\xc3\xa9");
        g_assert_true(g_utf8_validate(b, -1, NULL));
}

/* The digest of the empty layer is part of the on-disk format: builders made from scratch refer to it
 * (checked independently: sha256 of "kiln-layer-v1\n" E "" M 040755 0 0 0 0 0 X 1, see layer-digest.h).
 * If this changes, layers stop being shared with those made before. */
static void test_empty_digest(void)
{
        g_autofree char *d = kiln_layer_empty_digest();
        g_autofree char *again = kiln_layer_empty_digest();

        g_assert_true(kiln_hex64_is_valid(d));
        g_assert_cmpstr(d, ==, again);
        g_assert_cmpstr(d, ==, "89e4bbff24fbe3e58ca751aedc0f6d83566e3336a4388f2df095f93b11ec012f");
}

/* The canonical stream distinguishes what a naive concatenation would not. */
static void test_digest_unambiguous(void)
{
        g_autoptr(GChecksum) a = g_checksum_new(G_CHECKSUM_SHA256);
        g_autoptr(GChecksum) b = g_checksum_new(G_CHECKSUM_SHA256);
        KilnXattr xa = {(char *)"user.ab", (void *)"c", 1};
        KilnXattr xb = {(char *)"user.a", (void *)"bc", 2};

        kiln_layer_hash_meta(a, "x", 0100644, 0, 0, 0, 0, &xa, 1);
        kiln_layer_hash_meta(b, "x", 0100644, 0, 0, 0, 0, &xb, 1);
        g_assert_cmpstr(g_checksum_get_string(a), !=, g_checksum_get_string(b));
}

static void test_rm_rf_symlinks(void)
{
        g_autofree char *base = make_base();
        g_autofree char *outside = g_build_filename(base, "outside", NULL);
        g_autofree char *keep = g_build_filename(outside, "keep", NULL);
        g_autofree char *tree = g_build_filename(base, "tree", NULL);
        g_autofree char *sub = g_build_filename(tree, "sub", NULL);
        g_autofree char *l1 = g_build_filename(tree, "to-outside", NULL);
        g_autofree char *l2 = g_build_filename(sub, "to-outside-file", NULL);
        g_autofree char *f = g_build_filename(sub, "file", NULL);
        _cleanup_close_ int fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        g_assert_cmpint(g_mkdir(outside, 0755), ==, 0);
        write_file(keep, "keep me");
        g_assert_cmpint(g_mkdir_with_parents(sub, 0755), ==, 0);
        write_file(f, "x");
        g_assert_cmpint(symlink(outside, l1), ==, 0);
        g_assert_cmpint(symlink(keep, l2), ==, 0);

        g_assert_cmpint(kiln_rm_rf_at(fd, "tree", NULL), ==, 0);
        g_assert_false(g_file_test(tree, G_FILE_TEST_EXISTS));
        g_assert_true(g_file_test(keep, G_FILE_TEST_IS_REGULAR));

        /* A symlink as the top itself is removed, not followed. */
        g_assert_cmpint(symlink(outside, tree), ==, 0);
        g_assert_cmpint(kiln_rm_rf_at(fd, "tree", NULL), ==, 0);
        g_assert_false(g_file_test(tree, G_FILE_TEST_IS_SYMLINK));
        g_assert_true(g_file_test(keep, G_FILE_TEST_IS_REGULAR));

        /* Missing is fine. */
        g_assert_cmpint(kiln_rm_rf_at(fd, "tree", NULL), ==, 0);
        remove_base(base);
}

/* Deeper than the descriptor stack: subtrees are moved up and removed from there. */
static void test_rm_rf_deep(void)
{
        g_autofree char *base = make_base();
        _cleanup_close_ int basefd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_close_ int fd = -1;
        const int depth = KILN_RM_MAX_FDS * 5 + 3;

        g_assert_cmpint(mkdirat(basefd, "deep", 0755), ==, 0);
        fd = openat(basefd, "deep", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i < depth; i++) {
                int sub;
                _cleanup_close_ int f = openat(fd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

                g_assert_cmpint(f, >=, 0);
                g_assert_cmpint(symlinkat("/", fd, "root-link"), ==, 0);
                g_assert_cmpint(mkdirat(fd, "d", 0755), ==, 0);
                sub = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                g_assert_cmpint(sub, >=, 0);
                close(fd);
                fd = sub;
        }
        g_assert_cmpint(kiln_rm_rf_at(basefd, "deep", NULL), ==, 0);
        g_assert_cmpint(faccessat(basefd, "deep", F_OK, AT_SYMLINK_NOFOLLOW), ==, -1);
        remove_base(base);
}

static void test_storage_validation(void)
{
        g_autofree char *base = make_base();
        g_autofree char *state = g_build_filename(base, "state", NULL);
        g_autofree char *run = g_build_filename(base, "run", NULL);
        g_autofree char *layers = g_build_filename(state, "layers", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnStorage) s = kiln_storage_new(state, run, "/nonexistent", &error);
        g_autofree char *dir = NULL;
        const char *bad[] = {"..", "", "../../../../etc", "0123", GOOD_ID "/..", NULL};
        struct stat st;

        g_assert_no_error(error);
        g_assert_nonnull(s);

        g_assert_cmpint(stat(layers, &st), ==, 0);
        g_assert_cmpint(st.st_mode & 07777, ==, 0700);

        for (const char **b = bad; *b; b++) {
                g_autofree char *m = NULL;

                g_assert_null(kiln_storage_builder_dir(s, *b));
                g_assert_false(kiln_storage_layer_exists(s, *b));
                g_assert_false(kiln_storage_is_mounted(s, *b));

                g_assert_false(kiln_storage_create_builder(s, *b, &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
                g_clear_error(&error);

                g_assert_false(kiln_storage_remove_builder(s, *b, &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
                g_clear_error(&error);

                m = kiln_storage_mount(s, GOOD_ID, (const char *const[]){*b, NULL}, -1, &error);
                g_assert_null(m);
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
                g_clear_error(&error);

                g_assert_false(kiln_storage_unmount(s, *b, &error));
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
                g_clear_error(&error);
        }

        dir = kiln_storage_builder_dir(s, GOOD_ID);
        g_assert_true(g_str_has_prefix(dir, state));
        g_assert_true(kiln_storage_create_builder(s, GOOD_ID, &error));
        g_assert_no_error(error);
        g_assert_false(kiln_storage_create_builder(s, GOOD_ID, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS);
        g_clear_error(&error);
        g_assert_true(kiln_storage_remove_builder(s, GOOD_ID, &error));
        g_assert_no_error(error);
        g_assert_false(g_file_test(dir, G_FILE_TEST_EXISTS));

        remove_base(base);
}

static void on_imported(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        GAsyncResult **out = data;
        *out = g_object_ref(result);
}

static void test_import_arguments(void)
{
        g_autofree char *base = make_base();
        g_autofree char *state = g_build_filename(base, "state", NULL);
        g_autofree char *run = g_build_filename(base, "run", NULL);
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnStorage) s = kiln_storage_new(state, run, "/nonexistent", &error);
        KilnCreds creds = {getuid(), getgid(), NULL, 0};
        const char *cases[] = {"relative/path", NULL};

        g_assert_no_error(error);
        for (const char **c = cases;; c++) {
                g_autoptr(GAsyncResult) result = NULL;
                g_autofree char *digest = NULL;

                /* a relative path, then neither a path nor a descriptor */
                kiln_storage_import_async(s, *c, -1, &creds, NULL, on_imported, &result);
                while (!result)
                        g_main_context_iteration(NULL, TRUE);
                digest = kiln_storage_import_finish(s, result, &error);
                g_assert_null(digest);
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
                g_clear_error(&error);
                if (!*c)
                        break;
        }
        remove_base(base);
}

#define LAYER_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define LAYER_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define LAYER_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static GArray *uses_of(const KilnLayerUse *u, size_t n)
{
        GArray *a = g_array_new(FALSE, FALSE, sizeof(KilnLayerUse));
        g_array_append_vals(a, u, (guint)n);
        return a;
}

static GPtrArray *strv_array(const char *const *v)
{
        GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
        for (; *v; v++)
                g_ptr_array_add(a, g_strdup(*v));
        return a;
}

/* A layer goes when no builder names it; a shared one stays while any does; nothing that is not a
 * layer name (imports in progress, records) is ever a candidate. */
static void test_layers_unused(void)
{
        const char *const listing[] = {LAYER_A,  LAYER_B,         LAYER_C, ".tmp-0123",
                                       ".sizes", ".fingerprints", "AAAA",  NULL};
        const KilnLayerUse two_share_a[] = {{1000, LAYER_A}, {1001, LAYER_A}};
        g_autoptr(GPtrArray) names = strv_array(listing);
        g_autoptr(GArray) uses = uses_of(two_share_a, 2);
        g_autoptr(GArray) one = uses_of(two_share_a, 1);
        g_autoptr(GArray) none = uses_of(NULL, 0);
        g_autoptr(GHashTable) kept = g_hash_table_new(g_str_hash, g_str_equal);
        g_autoptr(GPtrArray) u1 = kiln_layers_unused(names, uses, NULL);
        g_autoptr(GPtrArray) u2 = kiln_layers_unused(names, one, NULL);
        g_autoptr(GPtrArray) u3 = kiln_layers_unused(names, none, NULL);
        g_autoptr(GPtrArray) u4 = NULL;

        g_assert_cmpuint(u1->len, ==, 2);
        g_assert_cmpstr(u1->pdata[0], ==, LAYER_B);
        g_assert_cmpstr(u1->pdata[1], ==, LAYER_C);
        /* one of the two builders removed: A stays */
        g_assert_cmpuint(u2->len, ==, 2);
        g_assert_cmpstr(u2->pdata[0], ==, LAYER_B);
        /* both removed: every layer, and only layers */
        g_assert_cmpuint(u3->len, ==, 3);
        g_assert_cmpstr(u3->pdata[0], ==, LAYER_A);
        /* a layer of a builder kilnd could not load is kept */
        g_hash_table_add(kept, (gpointer)LAYER_C);
        u4 = kiln_layers_unused(names, none, kept);
        g_assert_cmpuint(u4->len, ==, 2);
        g_assert_cmpstr(u4->pdata[1], ==, LAYER_B);
}

static guint64 fake_size(const char *digest, G_GNUC_UNUSED gpointer data)
{
        return digest[0] == 'a' ? 100 : digest[0] == 'b' ? 20 : G_MAXUINT64;
}

/* A user's bytes: each distinct layer his builders use, once; other users' builders do not count. */
static void test_layer_uses_bytes(void)
{
        const KilnLayerUse u[] = {{1000, LAYER_A}, {1000, LAYER_A}, {1000, LAYER_B}, {1001, LAYER_C}};
        g_autoptr(GArray) uses = uses_of(u, G_N_ELEMENTS(u));

        g_assert_cmpuint(kiln_layer_uses_bytes(uses, 1000, fake_size, NULL), ==, 120);
        g_assert_cmpuint(kiln_layer_uses_bytes(uses, 1002, fake_size, NULL), ==, 0);
        /* saturates rather than wrapping */
        g_array_append_val(uses, ((KilnLayerUse){1000, LAYER_C}));
        g_assert_cmpuint(kiln_layer_uses_bytes(uses, 1000, fake_size, NULL), ==, G_MAXUINT64);
        g_assert_cmpuint(kiln_layer_uses_bytes(NULL, 1000, fake_size, NULL), ==, 0);
}

/* What start-up unmounts below a directory: only below it (not the directory, not a sibling with the
 * same prefix), deepest first, a stacked mount once per layer, later mounts first. */
static void test_mounts_below(void)
{
        const char *const points[] = {"/",
                                      "/run/kiln",
                                      "/run/kiln/bundles",
                                      "/run/kiln/bundles/c1/volume-0",
                                      "/run/kiln/bundles-other/x",
                                      "/run/kiln/bundles/c1/volume-0/sub",
                                      "/run/kiln/bundles/c2/volume-0",
                                      "/run/kiln/bundles/c1/volume-0",
                                      NULL};
        g_autoptr(GPtrArray) all = strv_array(points);
        g_autoptr(GPtrArray) below = kiln_mounts_below(all, "/run/kiln/bundles");

        g_assert_cmpuint(below->len, ==, 4);
        g_assert_cmpstr(below->pdata[0], ==, "/run/kiln/bundles/c1/volume-0/sub");
        g_assert_cmpstr(below->pdata[1], ==, "/run/kiln/bundles/c1/volume-0");
        g_assert_cmpstr(below->pdata[2], ==, "/run/kiln/bundles/c2/volume-0");
        g_assert_cmpstr(below->pdata[3], ==, "/run/kiln/bundles/c1/volume-0");
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/storage-unit/layers-unused", test_layers_unused);
        g_test_add_func("/storage-unit/layer-uses-bytes", test_layer_uses_bytes);
        g_test_add_func("/storage-unit/mounts-below", test_mounts_below);
        g_test_add_func("/storage-unit/hex64", test_hex64);
        g_test_add_func("/storage-unit/names", test_names);
        g_test_add_func("/storage-unit/escape", test_escape);
        g_test_add_func("/storage-unit/empty-digest", test_empty_digest);
        g_test_add_func("/storage-unit/digest-unambiguous", test_digest_unambiguous);
        g_test_add_func("/storage-unit/rm-rf/symlinks", test_rm_rf_symlinks);
        g_test_add_func("/storage-unit/rm-rf/deep", test_rm_rf_deep);
        g_test_add_func("/storage-unit/validation", test_storage_validation);
        g_test_add_func("/storage-unit/import-arguments", test_import_arguments);
        return g_test_run();
}
