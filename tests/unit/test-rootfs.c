/* SPDX-License-Identifier: Apache-2.0 */
/* Paths inside an untrusted root file system stay inside it: symlinks to "/", to "/etc/shadow",
 * ".." chains and dangling links all end in the image. No root needed: temporary trees. */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gio/gio.h>

#include "base/fs-util.h"
#include "base/kiln-common.h"
#include "base/rootfs.h"

typedef struct {
        char *root;    /* the "image" */
        char *outside; /* a directory next to it, that nothing may touch */
        int rootfd;
} Fixture;

static void put(const char *root, const char *path, const char *content, mode_t mode)
{
        g_autofree char *full = g_build_filename(root, path, NULL);
        g_autofree char *dir = g_path_get_dirname(full);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_true(g_file_set_contents(full, content, -1, NULL));
        g_assert_cmpint(chmod(full, mode), ==, 0);
}

static void link_at(const char *root, const char *path, const char *target)
{
        g_autofree char *full = g_build_filename(root, path, NULL);
        g_autofree char *dir = g_path_get_dirname(full);

        g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
        g_assert_cmpint(symlink(target, full), ==, 0);
}

/* "../" enough times to climb out of any temporary directory, then @path (absolute). */
static char *escape(const char *path)
{
        return g_strconcat("../../../../../../../../../../../../..", path, NULL);
}

/* openat2 (Linux 5.6) is missing under valgrind 3.19 and on old kernels: kiln then refuses to
 * work (test_fail_closed), and the tests of what it does with openat2 are skipped. */
static gboolean have_openat2(void)
{
        _cleanup_close_ int fd = kiln_rootfs_open(AT_FDCWD, "/", O_PATH, 0);

        return fd != -ENOSYS;
}

static void fixture_set_up(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        f->root = g_dir_make_tmp("kiln-rootfs-XXXXXX", NULL);
        f->outside = g_dir_make_tmp("kiln-outside-XXXXXX", NULL);
        g_assert_nonnull(f->root);
        g_assert_nonnull(f->outside);
        f->rootfd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        g_assert_cmpint(f->rootfd, >=, 0);
}

static void remove_tree(const char *path)
{
        g_autoptr(GFile) file = g_file_new_for_path(path);
        g_autoptr(GFileEnumerator) e = g_file_enumerate_children(
                file, G_FILE_ATTRIBUTE_STANDARD_NAME, G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, NULL, NULL);
        GFileInfo *info;

        while (e && (info = g_file_enumerator_next_file(e, NULL, NULL))) {
                g_autofree char *child = g_build_filename(path, g_file_info_get_name(info), NULL);
                if (g_file_info_get_file_type(info) == G_FILE_TYPE_DIRECTORY)
                        remove_tree(child);
                else
                        g_unlink(child);
                g_object_unref(info);
        }
        g_rmdir(path);
}

static void fixture_tear_down(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        close(f->rootfd);
        remove_tree(f->root);
        remove_tree(f->outside);
        g_free(f->root);
        g_free(f->outside);
}

static char *read_in(Fixture *f, const char *path, gsize max, GError **error)
{
        char *buf = NULL;
        gsize len = 0;

        if (!kiln_rootfs_read_file(f->rootfd, path, max, &buf, &len, error))
                return NULL;
        g_assert_cmpuint(strlen(buf), ==, len);
        return buf;
}

static void test_read_symlinks(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *dotdot = escape("/etc/hostname");
        g_autofree char *via_proc = NULL;
        g_autofree char *s = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int slash = -1;

        if (!have_openat2()) {
                g_test_skip("openat2 is not available here");
                return;
        }

        /* etc/passwd -> /etc/shadow: the image's shadow, never the host's */
        put(f->root, "etc/shadow", "image shadow\n", 0644);
        link_at(f->root, "etc/passwd", "/etc/shadow");
        s = read_in(f, "/etc/passwd", 4096, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(s, ==, "image shadow\n");
        g_clear_pointer(&s, g_free);

        /* ".." past the top stops at the image's root: the host's /etc/hostname is not there */
        link_at(f->root, "etc/hosts", dotdot);
        s = read_in(f, "/etc/hosts", 4096, &error);
        g_assert_null(s);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_assert_nonnull(strstr(error->message, "/etc/hosts"));
        g_clear_error(&error);

        /* the same as a path given by the caller */
        s = read_in(f, "/../../../../../../../etc/shadow", 4096, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(s, ==, "image shadow\n");
        g_clear_pointer(&s, g_free);

        /* magic links (/proc/self/root) are refused even where they would resolve: here the
         * "root" is the host's /, where the path exists */
        via_proc = g_strdup_printf("/proc/self/root%s/etc/shadow", f->root);
        slash = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        g_assert_cmpint(kiln_rootfs_open(slash, via_proc, O_RDONLY, 0), ==, -ELOOP);
}

static void test_read_etc_is_root(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *s = NULL;
        g_autoptr(GError) error = NULL;

        if (!have_openat2()) {
                g_test_skip("openat2 is not available here");
                return;
        }

        /* etc -> /: /etc/passwd is the image's /passwd */
        link_at(f->root, "etc", "/");
        put(f->root, "passwd", "top:x:0:0::/:/bin/sh\n", 0644);
        s = read_in(f, "/etc/passwd", 4096, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(s, ==, "top:x:0:0::/:/bin/sh\n");
}

static void test_read_refusals(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *fifo = g_build_filename(f->root, "etc/fifo", NULL);
        g_autofree char *big = g_strnfill(100, 'x');
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL;
        g_autofree char *s = NULL;

        if (!have_openat2()) {
                g_test_skip("openat2 is not available here");
                return;
        }

        put(f->root, "etc/big", big, 0644);
        put(f->root, "etc/fits", "12345", 0644);
        g_assert_cmpint(mkfifo(fifo, 0644), ==, 0);

        /* a FIFO would block a reader forever: refused without opening it for reading */
        g_assert_null(read_in(f, "/etc/fifo", 4096, &e1));
        g_assert_error(e1, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        g_assert_nonnull(strstr(e1->message, "/etc/fifo"));
        g_assert_null(read_in(f, "/etc", 4096, &e2));
        g_assert_error(e2, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        g_assert_null(read_in(f, "/etc/big", 50, &e3));
        g_assert_error(e3, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED);
        g_assert_nonnull(strstr(e3->message, "/etc/big"));
        s = read_in(f, "/etc/fits", 5, &e4);
        g_assert_no_error(e4);
        g_assert_cmpstr(s, ==, "12345");
}

static void assert_dir(const char *root, const char *path, mode_t mode)
{
        g_autofree char *full = g_build_filename(root, path, NULL);
        struct stat st;

        g_assert_cmpint(lstat(full, &st), ==, 0);
        g_assert_true(S_ISDIR(st.st_mode));
        g_assert_cmpuint(st.st_mode & 07777, ==, mode);
        g_assert_cmpuint(st.st_uid, ==, getuid());
}

static void test_mkdir_inside(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *work_target = NULL;
        g_autofree char *outside_x = g_build_filename(f->outside, "x", NULL);
        g_autofree char *inside_x = g_build_filename(f->outside, "x/sub", NULL);
        g_autoptr(GError) error = NULL;
        mode_t old_umask;

        if (!have_openat2()) {
                g_test_skip("openat2 is not available here");
                return;
        }
        old_umask = umask(077);

        /* work -> ../../../<outside>/x, dangling: created in the image, not next to it */
        work_target = escape(outside_x);
        link_at(f->root, "work", work_target);
        g_assert_true(kiln_rootfs_mkdir_p(f->rootfd, "/work/sub", 0755, getuid(), getgid(), &error));
        g_assert_no_error(error);
        g_assert_false(g_file_test(outside_x, G_FILE_TEST_EXISTS));
        assert_dir(f->root, inside_x, 0755); /* exact mode, whatever the umask */

        /* an absolute dangling link, and a link to the root itself */
        link_at(f->root, "abs", "/made/by/link");
        link_at(f->root, "top", "/");
        g_assert_true(kiln_rootfs_mkdir_p(f->rootfd, "/abs/y", 0750, (uid_t)-1, (gid_t)-1, &error));
        g_assert_no_error(error);
        assert_dir(f->root, "made/by/link/y", 0750);
        g_assert_true(
                kiln_rootfs_mkdir_p(f->rootfd, "/top/top/../top/z/", 0700, getuid(), getgid(), &error));
        g_assert_no_error(error);
        assert_dir(f->root, "z", 0700);

        /* existing directories are left as they are, and again is fine */
        g_assert_true(kiln_rootfs_mkdir_p(f->rootfd, "/work/sub", 0700, getuid(), getgid(), &error));
        assert_dir(f->root, inside_x, 0755);
        umask(old_umask);
}

static void test_mkdir_errors(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GError) e1 = NULL, e2 = NULL;

        if (!have_openat2()) {
                g_test_skip("openat2 is not available here");
                return;
        }

        put(f->root, "bin/sh", "#!", 0755);
        link_at(f->root, "loop", "loop");
        g_assert_false(kiln_rootfs_mkdir_p(f->rootfd, "/bin/sh/x", 0755, -1, -1, &e1));
        g_assert_error(e1, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
        g_assert_nonnull(strstr(e1->message, "/bin/sh"));
        g_assert_false(kiln_rootfs_mkdir_p(f->rootfd, "/loop/x", 0755, -1, -1, &e2));
        g_assert_nonnull(strstr(e2->message, "/loop"));
}

static void test_lookup(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *out = NULL;
        g_autofree char *escape_env = escape("/usr/bin/env");
        g_autofree char *sbin_dir = g_build_filename(f->root, "sbin/dir", NULL);
        g_autoptr(GError) error = NULL;

        if (!have_openat2()) {
                g_test_skip("openat2 is not available here");
                return;
        }

        put(f->root, "bin/sh", "#!", 0755);
        put(f->root, "usr/bin/data", "not a program", 0644);
        link_at(f->root, "usr/local/bin/tool", "/bin/sh");
        link_at(f->root, "usr/sbin/envlink", escape_env);
        g_assert_cmpint(g_mkdir_with_parents(sbin_dir, 0755), ==, 0);

        g_assert_true(kiln_rootfs_lookup_command(f->rootfd, "sh", NULL, "/", &out, &error));
        g_assert_cmpstr(out, ==, "/bin/sh");
        g_clear_pointer(&out, g_free);
        /* a symlink inside the image: the directory entry is the answer */
        g_assert_true(kiln_rootfs_lookup_command(f->rootfd, "tool", NULL, "/", &out, &error));
        g_assert_cmpstr(out, ==, "/usr/local/bin/tool");
        g_clear_pointer(&out, g_free);
        /* relative and empty entries are taken from the working directory */
        g_assert_true(kiln_rootfs_lookup_command(f->rootfd, "sh", "nothing::bin", "/", &out, &error));
        g_assert_cmpstr(out, ==, "/bin/sh");
        g_clear_pointer(&out, g_free);
        /* a PATH entry climbing out stays inside */
        g_assert_true(
                kiln_rootfs_lookup_command(f->rootfd, "sh", "/../../../../../../bin", "/", &out, &error));
        g_assert_cmpstr(out, ==, "/../../../../../../bin/sh");
        g_clear_pointer(&out, g_free);
        /* with a slash: as given */
        g_assert_true(kiln_rootfs_lookup_command(f->rootfd, "./run.sh", NULL, "/", &out, &error));
        g_assert_cmpstr(out, ==, "./run.sh");
        g_clear_pointer(&out, g_free);

        /* the host has /usr/bin/env; the image does not, and a link to it leads nowhere */
        g_assert_false(kiln_rootfs_lookup_command(f->rootfd, "env", NULL, "/", &out, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_assert_nonnull(strstr(error->message, "'env'"));
        g_clear_error(&error);
        g_assert_false(kiln_rootfs_lookup_command(f->rootfd, "envlink", NULL, "/", &out, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_clear_error(&error);
        /* directories are not commands; a file without an exec bit is "not executable" (126) */
        g_assert_false(kiln_rootfs_lookup_command(f->rootfd, "dir", NULL, "/", &out, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_clear_error(&error);
        g_assert_false(kiln_rootfs_lookup_command(f->rootfd, "data", NULL, "/", &out, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
        g_clear_error(&error);
        g_assert_false(kiln_rootfs_lookup_command(f->rootfd, "", NULL, "/", &out, &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
}

static void test_fail_closed(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL;
        char *buf = NULL;
        char *out = NULL;
        gsize len;

        if (have_openat2()) {
                g_test_skip("openat2 is available: nothing to refuse");
                return;
        }
        put(f->root, "etc/passwd", "root:x:0:0::/:/bin/sh\n", 0644);
        put(f->root, "bin/sh", "#!", 0755);
        g_assert_false(kiln_rootfs_read_file(f->rootfd, "/etc/passwd", 4096, &buf, &len, &e1));
        g_assert_error(e1, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
        g_assert_false(kiln_rootfs_mkdir_p(f->rootfd, "/work", 0755, -1, -1, &e2));
        g_assert_error(e2, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
        g_assert_false(kiln_rootfs_lookup_command(f->rootfd, "sh", NULL, "/", &out, &e3));
        g_assert_null(out);
}

/* kiln_tree_bytes_at (caches in StorageBytesPerUser): regular files' bytes, nested directories, never
 * what a symlink points at (a file outside, a directory outside), links and empty files count 0. */
static void test_tree_bytes(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *big = g_strnfill(10000, 'x');
        g_autofree char *to_file = g_build_filename(f->outside, "big", NULL);
        g_autofree char *to_dir = g_build_filename(f->outside, "dir", NULL);
        guint64 bytes = 1;

        if (!have_openat2()) {
                g_test_skip("no openat2");
                return;
        }
        put(f->outside, "big", big, 0644);
        put(f->outside, "dir/big", big, 0644);
        put(f->root, "a", "12345", 0644);
        put(f->root, "d/e/f/g", "123", 0600);
        put(f->root, "d/empty", "", 0644);
        link_at(f->root, "d/to-file", to_file);
        link_at(f->root, "d/to-dir", to_dir);
        link_at(f->root, "d/up", "..");
        g_assert_cmpint(kiln_tree_bytes_at(f->rootfd, &bytes), ==, 0);
        g_assert_cmpuint(bytes, ==, 8);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_set_up, fn, fixture_tear_down)
        ADD("/rootfs/read/symlinks", test_read_symlinks);
        ADD("/rootfs/read/etc-is-root", test_read_etc_is_root);
        ADD("/rootfs/read/refusals", test_read_refusals);
        ADD("/rootfs/mkdir/inside", test_mkdir_inside);
        ADD("/rootfs/mkdir/errors", test_mkdir_errors);
        ADD("/rootfs/lookup", test_lookup);
        ADD("/rootfs/fail-closed", test_fail_closed);
        ADD("/rootfs/tree-bytes", test_tree_bytes);
#undef ADD
        return g_test_run();
}
