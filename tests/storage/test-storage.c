/* SPDX-License-Identifier: Apache-2.0 */
/* Storage and kiln-import, for real: owners, devices, overlay mounts, reading as an unprivileged user.
 * Needs root (exit 77 otherwise) and finds kiln-import through $KILN_IMPORT. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "base/fs-util.h"
#include "import/layer-digest.h"
#include "base/kiln-common.h"
#include "storage/mount-idmap.h"
#include "storage/storage.h"
#include "storage/storage-testing.h"

#define NOBODY 65534
#define ID_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static const char *helper_dir;

typedef struct Fixture {
        char *base; /* 0755, so an unprivileged reader can reach the source trees */
        char *state;
        char *run;
        char *layers;
        KilnStorage *storage;
} Fixture;

static void fixture_setup(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GError) error = NULL;

        f->base = g_dir_make_tmp("kiln-storage-XXXXXX", &error);
        g_assert_no_error(error);
        g_assert_cmpint(chmod(f->base, 0755), ==, 0);
        f->state = g_build_filename(f->base, "state", NULL);
        f->run = g_build_filename(f->base, "run", NULL);
        f->layers = g_build_filename(f->state, "layers", NULL);
        f->storage = kiln_storage_new(f->state, f->run, helper_dir, &error);
        g_assert_no_error(error);
        g_assert_nonnull(f->storage);
}

static void fixture_teardown(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *failed = NULL;

        kiln_storage_cleanup_stale(f->storage);
        kiln_storage_free(f->storage);
        g_assert_cmpint(kiln_rm_rf_at(AT_FDCWD, f->base, &failed), ==, 0);
        g_free(f->base);
        g_free(f->state);
        g_free(f->run);
        g_free(f->layers);
}

/* ---- helpers ---- */

static char *path_in(const char *dir, const char *name)
{
        return g_build_filename(dir, name, NULL);
}

static void write_file(const char *path, const char *content)
{
        g_autoptr(GError) error = NULL;

        g_file_set_contents(path, content, -1, &error);
        g_assert_no_error(error);
}

static char *read_file(const char *path)
{
        g_autoptr(GError) error = NULL;
        char *s = NULL;

        g_file_get_contents(path, &s, NULL, &error);
        g_assert_no_error(error);
        return s;
}

static void set_mtime(const char *path, time_t sec, long nsec)
{
        struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
        g_assert_cmpint(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), ==, 0);
}

static void lstat_ok(const char *path, struct stat *st)
{
        if (lstat(path, st) < 0)
                g_error("lstat %s: %s", path, g_strerror(errno));
}

static char *make_src(Fixture *f, const char *name)
{
        char *src = path_in(f->base, name);

        g_assert_cmpint(g_mkdir(src, 0755), ==, 0);
        return src;
}

typedef struct ImportResult {
        GAsyncResult *result;
} ImportResult;

static void on_imported(G_GNUC_UNUSED GObject *source, GAsyncResult *result, gpointer data)
{
        ImportResult *r = data;
        r->result = g_object_ref(result);
}

static char *import_full(Fixture *f, const char *path, int fd, uid_t uid, gid_t gid, gid_t *groups,
                         size_t n_groups, gboolean cancel, GError **error)
{
        KilnCreds creds = {uid, gid, groups, n_groups};
        g_autoptr(GCancellable) cancellable = g_cancellable_new();
        ImportResult r = {0};
        char *digest;

        kiln_storage_import_async(f->storage, path, fd, &creds, cancellable, on_imported, &r);
        if (cancel)
                g_cancellable_cancel(cancellable);
        while (!r.result)
                g_main_context_iteration(NULL, TRUE);
        digest = kiln_storage_import_finish(f->storage, r.result, error);
        g_object_unref(r.result);
        return digest;
}

static char *import_as(Fixture *f, const char *path, uid_t uid, GError **error)
{
        return import_full(f, path, -1, uid, uid, NULL, 0, FALSE, error);
}

static char *import_ok(Fixture *f, const char *path)
{
        g_autoptr(GError) error = NULL;
        char *digest = import_as(f, path, 0, &error);

        g_assert_no_error(error);
        g_assert_true(kiln_hex64_is_valid(digest));
        g_assert_true(kiln_storage_layer_exists(f->storage, digest));
        return digest;
}

/* Entries in STATE/layers: layers, and separately whether any .tmp- is left. */
static guint count_layers(Fixture *f, gboolean *have_tmp)
{
        g_autoptr(GDir) d = g_dir_open(f->layers, 0, NULL);
        const char *name;
        guint n = 0;

        *have_tmp = FALSE;
        g_assert_nonnull(d);
        while ((name = g_dir_read_name(d))) {
                if (g_str_has_prefix(name, ".tmp-"))
                        *have_tmp = TRUE;
                else if (!g_str_equal(name, ".fingerprints") && !g_str_equal(name, ".sizes"))
                        n++;
        }
        return n;
}

static char *layer_path(Fixture *f, const char *digest, const char *name)
{
        return g_build_filename(f->layers, digest, name, NULL);
}

static gboolean mountinfo_has(const char *mount_point, const char *option)
{
        g_autofree char *contents = NULL;
        g_auto(GStrv) lines = NULL;

        g_assert_true(g_file_get_contents("/proc/self/mountinfo", &contents, NULL, NULL));
        lines = g_strsplit(contents, "\n", -1);
        for (char **l = lines; *l; l++) {
                g_auto(GStrv) fields = g_strsplit(*l, " ", 7);
                if (g_strv_length(fields) < 7 || strcmp(fields[4], mount_point) != 0)
                        continue;
                if (!option)
                        return TRUE;
                g_auto(GStrv) opts = g_strsplit(fields[5], ",", -1);
                return g_strv_contains((const char *const *)opts, option);
        }
        return FALSE;
}

/* ---- import: what a layer keeps ---- */

static void test_import_metadata(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *owned = path_in(src, "owned");
        g_autofree char *suid = path_in(src, "suid");
        g_autofree char *dir = path_in(src, "dir");
        g_autofree char *dir_file = path_in(dir, "inner");
        g_autofree char *sticky = path_in(src, "tmp");
        g_autofree char *hl1 = path_in(src, "hl1");
        g_autofree char *hl2 = path_in(dir, "hl2");
        g_autofree char *abs_link = path_in(src, "abs");
        g_autofree char *rel_link = path_in(dir, "rel");
        g_autofree char *etc_link = path_in(src, "etc");
        g_autofree char *dev = path_in(src, "null");
        g_autofree char *fifo = path_in(src, "fifo");
        g_autofree char *empty = path_in(src, "empty");
        g_autofree char *digest = NULL;
        struct stat st, st2;
        char buf[64];
        ssize_t n;

        write_file(owned, "owned by 1234:5678\n");
        g_assert_cmpint(lchown(owned, 1234, 5678), ==, 0);
        g_assert_cmpint(chmod(owned, 0640), ==, 0);
        g_assert_cmpint(lsetxattr(owned, "user.kiln", "value", 5, 0), ==, 0);
        g_assert_cmpint(lsetxattr(owned, "trusted.kiln", "root-only", 9, 0), ==, 0);
        set_mtime(owned, 1000000000, 123456789);

        write_file(suid, "#!/bin/sh\n");
        g_assert_cmpint(chmod(suid, 04755), ==, 0);

        g_assert_cmpint(g_mkdir(dir, 0755), ==, 0);
        write_file(dir_file, "inner\n");
        write_file(hl1, "linked\n");
        g_assert_cmpint(link(hl1, hl2), ==, 0);
        g_assert_cmpint(symlink("../../outside/../etc/shadow", rel_link), ==, 0);
        g_assert_cmpint(lchown(rel_link, 7, 8), ==, 0);
        set_mtime(rel_link, 1200000000, 5);
        g_assert_cmpint(lsetxattr(dir, "user.dir", "d", 1, 0), ==, 0);
        g_assert_cmpint(lchown(dir, 42, 43), ==, 0);
        g_assert_cmpint(chmod(dir, 02750), ==, 0);
        set_mtime(dir, 1100000000, 42);

        g_assert_cmpint(g_mkdir(sticky, 0755), ==, 0);
        g_assert_cmpint(chmod(sticky, 01777), ==, 0);

        g_assert_cmpint(symlink("/etc", abs_link), ==, 0);
        g_assert_cmpint(symlink("/etc/", etc_link), ==, 0);
        g_assert_cmpint(mknod(dev, S_IFCHR | 0666, makedev(1, 3)), ==, 0);
        g_assert_cmpint(chmod(dev, 0666), ==, 0);
        g_assert_cmpint(mkfifo(fifo, 0640), ==, 0);
        write_file(empty, "");

        g_assert_cmpint(chmod(src, 0751), ==, 0);
        g_assert_cmpint(lchown(src, 11, 12), ==, 0);
        set_mtime(src, 900000000, 0);

        digest = import_ok(f, src);

        {
                g_autofree char *p = layer_path(f, digest, NULL);
                lstat_ok(p, &st);
                g_assert_cmpint(st.st_mode, ==, S_IFDIR | 0751);
                g_assert_cmpint(st.st_uid, ==, 11);
                g_assert_cmpint(st.st_gid, ==, 12);
                g_assert_cmpint(st.st_mtim.tv_sec, ==, 900000000);
        }
        {
                g_autofree char *p = layer_path(f, digest, "owned");
                g_autofree char *c = read_file(p);
                lstat_ok(p, &st);
                g_assert_cmpstr(c, ==, "owned by 1234:5678\n");
                g_assert_cmpint(st.st_mode, ==, S_IFREG | 0640);
                g_assert_cmpint(st.st_uid, ==, 1234);
                g_assert_cmpint(st.st_gid, ==, 5678);
                g_assert_cmpint(st.st_mtim.tv_sec, ==, 1000000000);
                g_assert_cmpint(st.st_mtim.tv_nsec, ==, 123456789);
                n = lgetxattr(p, "user.kiln", buf, sizeof(buf));
                g_assert_cmpint(n, ==, 5);
                g_assert_cmpmem(buf, 5, "value", 5);
                /* trusted.* never comes from a caller's tree */
                g_assert_cmpint(lgetxattr(p, "trusted.kiln", buf, sizeof(buf)), ==, -1);
                g_assert_cmpint(errno, ==, ENODATA);
        }
        {
                g_autofree char *p = layer_path(f, digest, "suid");
                lstat_ok(p, &st);
                g_assert_cmpint(st.st_mode, ==, S_IFREG | 04755);
                g_assert_cmpint(st.st_uid, ==, 0);
                g_assert_cmpint(st.st_gid, ==, 0);
        }
        {
                g_autofree char *p = layer_path(f, digest, "dir");
                lstat_ok(p, &st);
                g_assert_cmpint(st.st_mode, ==, S_IFDIR | 02750);
                g_assert_cmpint(st.st_uid, ==, 42);
                g_assert_cmpint(st.st_gid, ==, 43);
                /* set after its entries were made */
                g_assert_cmpint(st.st_mtim.tv_sec, ==, 1100000000);
                g_assert_cmpint(st.st_mtim.tv_nsec, ==, 42);
                n = lgetxattr(p, "user.dir", buf, sizeof(buf));
                g_assert_cmpint(n, ==, 1);
        }
        {
                g_autofree char *p = layer_path(f, digest, "tmp");
                lstat_ok(p, &st);
                g_assert_cmpint(st.st_mode, ==, S_IFDIR | 01777);
        }
        {
                g_autofree char *p1 = layer_path(f, digest, "hl1");
                g_autofree char *p2 = layer_path(f, digest, "dir/hl2");
                lstat_ok(p1, &st);
                lstat_ok(p2, &st2);
                g_assert_cmpint(st.st_ino, ==, st2.st_ino);
                g_assert_cmpint(st.st_dev, ==, st2.st_dev);
                g_assert_cmpint(st.st_nlink, ==, 2);
        }
        {
                const struct {
                        const char *name, *target;
                } links[] = {
                        {"abs", "/etc"},
                        {"etc", "/etc/"},
                        {"dir/rel", "../../outside/../etc/shadow"},
                };
                for (size_t i = 0; i < G_N_ELEMENTS(links); i++) {
                        g_autofree char *p = layer_path(f, digest, links[i].name);
                        g_autofree char *t = g_file_read_link(p, NULL);
                        lstat_ok(p, &st);
                        g_assert_true(S_ISLNK(st.st_mode));
                        g_assert_cmpstr(t, ==, links[i].target);
                }
                g_autofree char *p = layer_path(f, digest, "dir/rel");
                lstat_ok(p, &st);
                g_assert_cmpint(st.st_uid, ==, 7);
                g_assert_cmpint(st.st_gid, ==, 8);
                g_assert_cmpint(st.st_mtim.tv_sec, ==, 1200000000);
                g_assert_cmpint(st.st_mtim.tv_nsec, ==, 5);
        }
        {
                g_autofree char *p = layer_path(f, digest, "null");
                lstat_ok(p, &st);
                g_assert_true(S_ISCHR(st.st_mode));
                g_assert_cmpint(st.st_mode & 07777, ==, 0666);
                g_assert_cmpint(major(st.st_rdev), ==, 1);
                g_assert_cmpint(minor(st.st_rdev), ==, 3);
        }
        {
                g_autofree char *p = layer_path(f, digest, "fifo");
                lstat_ok(p, &st);
                g_assert_true(S_ISFIFO(st.st_mode));
                g_assert_cmpint(st.st_mode & 07777, ==, 0640);
        }
        {
                g_autofree char *p = layer_path(f, digest, "empty");
                lstat_ok(p, &st);
                g_assert_true(S_ISREG(st.st_mode));
                g_assert_cmpint(st.st_size, ==, 0);
        }
}

/* Sparse files stay sparse and cost nothing to hash; a hole and written zeros are the same content. */
static void test_import_sparse(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *s1 = make_src(f, "sparse");
        g_autofree char *s2 = make_src(f, "dense");
        g_autofree char *p1 = path_in(s1, "file");
        g_autofree char *p2 = path_in(s2, "file");
        g_autofree char *d1 = NULL, *d2 = NULL, *lp = NULL;
        g_autofree char *zeros = g_malloc0(3 * 65536 + 17);
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open(p1, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        g_assert_cmpint(ftruncate(fd, (off_t)64 << 30), ==, 0); /* 64 GiB apparent */
        g_assert_cmpint(pwrite(fd, "x", 1, (off_t)1 << 30), ==, 1);
        close(fd);
        fd = -1;

        d1 = import_ok(f, s1);
        lp = layer_path(f, d1, "file");
        lstat_ok(lp, &st);
        g_assert_cmpint(st.st_size, ==, (off_t)64 << 30);
        g_assert_cmpint(st.st_blocks, <, 1024);

        /* the same bytes, written out */
        g_assert_cmpint(unlink(p1), ==, 0);
        fd = open(p1, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        g_assert_cmpint(ftruncate(fd, 3 * 65536 + 17), ==, 0);
        close(fd);
        fd = open(p2, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        g_assert_cmpint(write(fd, zeros, 3 * 65536 + 17), ==, 3 * 65536 + 17);
        close(fd);
        fd = -1;
        set_mtime(p1, 5, 0);
        set_mtime(p2, 5, 0);
        set_mtime(s1, 5, 0);
        set_mtime(s2, 5, 0);
        d1 = (g_free(d1), import_ok(f, s1));
        d2 = import_ok(f, s2);
        g_assert_cmpstr(d1, ==, d2);
}

static void test_import_same_digest(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *file = path_in(src, "file");
        g_autofree char *sub = path_in(src, "sub");
        g_autofree char *d1 = NULL, *d2 = NULL, *d3 = NULL, *d4 = NULL, *d5 = NULL;
        gboolean have_tmp;

        write_file(file, "one\n");
        g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
        for (int i = 0; i < 100; i++) {
                g_autofree char *name = g_strdup_printf("%s/f%03d", sub, i);
                write_file(name, name);
        }

        d1 = import_ok(f, src);
        d2 = import_ok(f, src);
        g_assert_cmpstr(d1, ==, d2);
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 1);
        g_assert_false(have_tmp);

        /* the same tree as another (unprivileged) user: the same layer */
        {
                g_autoptr(GError) error = NULL;
                g_autofree char *dn = import_as(f, src, NOBODY, &error);
                g_assert_no_error(error);
                g_assert_cmpstr(dn, ==, d1);
        }

        /* content */
        write_file(file, "two\n");
        d3 = import_ok(f, src);
        g_assert_cmpstr(d3, !=, d1);

        /* only the time */
        set_mtime(file, 12345, 0);
        d4 = import_ok(f, src);
        g_assert_cmpstr(d4, !=, d3);

        /* only an xattr */
        g_assert_cmpint(lsetxattr(file, "user.x", "1", 1, 0), ==, 0);
        d5 = import_ok(f, src);
        g_assert_cmpstr(d5, !=, d4);

        /* content changed with the same size and the old mtime put back: the fingerprint shortcut
         * must not answer the old layer (the ctime moved) */
        write_file(file, "six\n");
        set_mtime(file, 12345, 0);
        {
                g_autofree char *d6 = import_ok(f, src);
                g_assert_cmpstr(d6, !=, d5);
        }

        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 5);
        g_assert_false(have_tmp);
}

/* ---- import: read as the caller ---- */

static void test_import_permission_denied(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *sub = path_in(src, "sub");
        g_autofree char *secret = path_in(sub, "secret");
        g_autofree char *readable = path_in(src, "readable");
        g_autoptr(GError) error = NULL;
        g_autofree char *digest = NULL;
        gboolean have_tmp;
        guint before;

        write_file(readable, "anyone\n");
        g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
        write_file(secret, "root only\n");
        g_assert_cmpint(chmod(secret, 0600), ==, 0);
        /* entries after the secret one, so the failure comes mid-stream */
        for (int i = 0; i < 50; i++) {
                g_autofree char *name = g_strdup_printf("%s/t%02d", sub, i);
                write_file(name, "x");
        }

        before = count_layers(f, &have_tmp);
        digest = import_as(f, src, NOBODY, &error);
        g_assert_null(digest);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
        g_assert_nonnull(strstr(error->message, "sub/secret"));
        g_assert_nonnull(strstr(error->message, "Permission denied"));
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, before);
        g_assert_false(have_tmp);

        /* root may read it */
        g_clear_error(&error);
        g_free(import_ok(f, src));
}

static void test_import_groups(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *file = path_in(src, "group-readable");
        g_autoptr(GError) error = NULL;
        g_autofree char *digest = NULL;
        gid_t groups[] = {4242};

        write_file(file, "group\n");
        g_assert_cmpint(lchown(file, 0, 4242), ==, 0);
        g_assert_cmpint(chmod(file, 0640), ==, 0);

        digest = import_full(f, src, -1, NOBODY, NOBODY, NULL, 0, FALSE, &error);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
        g_assert_null(digest);
        g_clear_error(&error);

        /* as a supplementary group */
        digest = import_full(f, src, -1, NOBODY, NOBODY, groups, 1, FALSE, &error);
        g_assert_no_error(error);
        g_assert_nonnull(digest);
        g_free(digest);

        /* as the primary group */
        digest = import_full(f, src, -1, NOBODY, 4242, NULL, 0, FALSE, &error);
        g_assert_no_error(error);
        g_assert_nonnull(digest);
}

static void test_import_private_root(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *priv = make_src(f, "private");
        g_autoptr(GError) error = NULL;
        g_autofree char *digest = NULL;
        struct stat st;
        gboolean have_tmp;

        g_assert_cmpint(chmod(priv, 0700), ==, 0);
        digest = import_as(f, priv, NOBODY, &error);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
        g_assert_nonnull(strstr(error->message, priv));
        g_assert_null(digest);
        g_clear_error(&error);

        /* /root, where it is what it usually is */
        if (stat("/root", &st) == 0 && !(st.st_mode & S_IXOTH) && st.st_uid == 0) {
                digest = import_as(f, "/root", NOBODY, &error);
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
                g_assert_nonnull(strstr(error->message, "'/root'"));
                g_assert_null(digest);
                g_clear_error(&error);
        }

        /* the same through a descriptor the caller could open (O_PATH) but not read */
        {
                int fd = open(priv, O_PATH | O_DIRECTORY | O_CLOEXEC);
                g_assert_cmpint(chmod(priv, 0311), ==, 0); /* searchable, not readable */
                digest = import_full(f, NULL, fd, NOBODY, NOBODY, NULL, 0, FALSE, &error);
                g_assert_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
                g_assert_null(digest);
                g_clear_error(&error);
        }
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 0);
        g_assert_false(have_tmp);
}

/* A symlink to /etc at the source root and below is copied as a symlink: never followed (as nobody,
 * following it would have hit /etc/shadow). */
static void test_import_symlink_not_followed(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *etc = path_in(src, "etc");
        g_autofree char *sub = path_in(src, "sub");
        g_autofree char *sub_etc = path_in(sub, "etc");
        g_autofree char *shadow = path_in(src, "shadow");
        g_autofree char *digest = NULL;
        g_autoptr(GError) error = NULL;
        gboolean have_tmp;

        g_assert_cmpint(symlink("/etc", etc), ==, 0);
        g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
        g_assert_cmpint(symlink("/etc", sub_etc), ==, 0);
        g_assert_cmpint(symlink("/etc/shadow", shadow), ==, 0);

        digest = import_as(f, src, NOBODY, &error);
        g_assert_no_error(error);
        for (const char *const *n = (const char *const[]){"etc", "sub/etc", "shadow", NULL}; *n; n++) {
                g_autofree char *p = layer_path(f, digest, *n);
                struct stat st;
                lstat_ok(p, &st);
                g_assert_true(S_ISLNK(st.st_mode));
        }
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 1);

        /* The source given as a symlink itself: resolved as the caller, so it is the caller's to
         * follow; the tree under it is still never followed. */
        {
                g_autofree char *link = path_in(f->base, "src-link");
                g_autofree char *d2 = NULL;
                g_assert_cmpint(symlink(src, link), ==, 0);
                d2 = import_as(f, link, NOBODY, &error);
                g_assert_no_error(error);
                g_assert_cmpstr(d2, ==, digest);
        }
}

static void test_import_fd(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *file = path_in(src, "file");
        g_autofree char *d1 = NULL, *d2 = NULL, *d3 = NULL;
        g_autoptr(GError) error = NULL;

        write_file(file, "through a descriptor\n");
        d1 = import_ok(f, src);
        d2 = import_full(f, NULL, open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC), NOBODY, NOBODY, NULL, 0,
                         FALSE, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(d1, ==, d2);
        d3 = import_full(f, NULL, open(src, O_PATH | O_DIRECTORY | O_CLOEXEC), NOBODY, NOBODY, NULL, 0,
                         FALSE, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(d1, ==, d3);

        /* a descriptor that is not a directory */
        g_free(import_full(f, NULL, open(file, O_RDONLY | O_CLOEXEC), NOBODY, NOBODY, NULL, 0, FALSE,
                           &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
}

static void test_import_errors(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *missing = path_in(src, "missing");
        g_autofree char *file = path_in(src, "file");
        g_autoptr(GError) error = NULL;
        gboolean have_tmp;

        write_file(file, "x");
        g_assert_null(import_as(f, missing, NOBODY, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_assert_nonnull(strstr(error->message, missing));
        g_clear_error(&error);

        g_assert_null(import_as(f, file, NOBODY, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_DIRECTORY);
        g_clear_error(&error);

        /* kernel pseudo file systems are never read by root on someone's behalf */
        g_assert_null(import_as(f, "/proc", 0, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error(&error);
        g_assert_null(import_as(f, "/sys/kernel", 0, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_clear_error(&error);

        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 0);
        g_assert_false(have_tmp);
}

static void test_import_too_deep(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        _cleanup_close_ int fd = open(src, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_autoptr(GError) error = NULL;
        gboolean have_tmp;

        for (int i = 0; i < 300; i++) {
                int sub;
                g_assert_cmpint(mkdirat(fd, "d", 0755), ==, 0);
                sub = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                g_assert_cmpint(sub, >=, 0);
                close(fd);
                fd = sub;
        }
        g_assert_null(import_as(f, src, 0, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_assert_nonnull(strstr(error->message, "deeper"));
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 0);
        g_assert_false(have_tmp);
}

static void test_import_cancel(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autoptr(GError) error = NULL;
        gboolean have_tmp;

        for (int i = 0; i < 200; i++) {
                g_autofree char *name = g_strdup_printf("%s/f%03d", src, i);
                write_file(name, name);
        }
        g_assert_null(import_full(f, src, -1, 0, 0, NULL, 0, TRUE, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        /* the helper was waited for and cleaned up */
        count_layers(f, &have_tmp);
        g_assert_false(have_tmp);
}

/* ---- scratch ---- */

static void test_scratch(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *scratch = kiln_storage_scratch_layer(f->storage, &error);
        g_autofree char *again = NULL, *imported = NULL, *empty = make_src(f, "empty");
        g_autofree char *p = NULL;
        struct stat st;
        gboolean have_tmp;

        g_assert_no_error(error);
        g_assert_true(kiln_storage_layer_exists(f->storage, scratch));
        again = kiln_storage_scratch_layer(f->storage, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(scratch, ==, again);

        p = layer_path(f, scratch, NULL);
        lstat_ok(p, &st);
        g_assert_cmpint(st.st_mode, ==, S_IFDIR | 0755);
        g_assert_cmpint(st.st_mtim.tv_sec, ==, 0);

        /* it is what kiln-import makes of such an empty directory */
        g_assert_cmpint(lchown(empty, 0, 0), ==, 0);
        set_mtime(empty, 0, 0);
        imported = import_ok(f, empty);
        g_assert_cmpstr(imported, ==, scratch);
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, 1);
        g_assert_false(have_tmp);
}

/* ---- builders and overlays ---- */

static void test_mount_roundtrip(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *hello = path_in(src, "hello");
        g_autofree char *digest = NULL, *mnt = NULL, *again = NULL, *bdir = NULL;
        g_autoptr(GError) error = NULL;
        struct stat st;

        write_file(hello, "from the layer\n");
        digest = import_ok(f, src);

        g_assert_true(kiln_storage_create_builder(f->storage, ID_A, &error));
        g_assert_no_error(error);
        g_assert_false(kiln_storage_create_builder(f->storage, ID_A, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS);
        g_clear_error(&error);
        bdir = kiln_storage_builder_dir(f->storage, ID_A);
        g_assert_true(g_file_test(bdir, G_FILE_TEST_IS_DIR));

        g_assert_false(kiln_storage_is_mounted(f->storage, ID_A));
        g_assert_cmpuint(kiln_storage_mount_device(f->storage, ID_A), ==, 0);
        mnt = kiln_storage_mount(f->storage, ID_A, (const char *const[]){digest, NULL}, -1, &error);
        g_assert_no_error(error);
        g_assert_nonnull(mnt);
        g_assert_true(kiln_storage_is_mounted(f->storage, ID_A));
        g_assert_true(mountinfo_has(mnt, "nosuid"));
        g_assert_true(mountinfo_has(mnt, "nodev"));
        {
                g_autofree char *point = kiln_storage_mount_point(f->storage, ID_A);
                struct stat over;

                g_assert_cmpstr(point, ==, mnt);
                g_assert_cmpint(stat(mnt, &over), ==, 0);
                g_assert_cmpuint(kiln_storage_mount_device(f->storage, ID_A), ==, over.st_dev);
                g_assert_null(kiln_storage_mount_point(f->storage, "../" ID_A));
        }

        again = kiln_storage_mount(f->storage, ID_A, (const char *const[]){digest, NULL}, -1, &error);
        g_assert_no_error(error);
        g_assert_cmpstr(again, ==, mnt);

        {
                g_autofree char *p = path_in(mnt, "hello");
                g_autofree char *c = read_file(p);
                g_autofree char *newf = path_in(mnt, "new");
                g_autofree char *upper_new = g_build_filename(bdir, "upper", "new", NULL);
                g_autofree char *upper_hello = g_build_filename(bdir, "upper", "hello", NULL);
                g_autofree char *layer_new = layer_path(f, digest, "new");
                g_autofree char *layer_hello = layer_path(f, digest, "hello");
                g_autofree char *lc = NULL, *uc = NULL;

                g_assert_cmpstr(c, ==, "from the layer\n");
                write_file(newf, "written through the mount\n");
                write_file(p, "changed in the builder\n");

                g_assert_true(g_file_test(upper_new, G_FILE_TEST_IS_REGULAR));
                g_assert_false(g_file_test(layer_new, G_FILE_TEST_EXISTS));
                lc = read_file(layer_hello);
                uc = read_file(upper_hello);
                g_assert_cmpstr(lc, ==, "from the layer\n");
                g_assert_cmpstr(uc, ==, "changed in the builder\n");
        }

        g_assert_true(kiln_storage_unmount(f->storage, ID_A, &error));
        g_assert_no_error(error);
        g_assert_false(kiln_storage_is_mounted(f->storage, ID_A));
        g_assert_cmpuint(kiln_storage_mount_device(f->storage, ID_A), ==, 0);
        g_assert_cmpint(lstat(mnt, &st), ==, -1);
        g_assert_cmpint(errno, ==, ENOENT);
        /* an empty mount point (as after an umount by hand) has nothing mounted either */
        g_assert_cmpint(mkdir(mnt, 0700), ==, 0);
        g_assert_cmpuint(kiln_storage_mount_device(f->storage, ID_A), ==, 0);
        g_assert_cmpint(rmdir(mnt), ==, 0);
        /* unmounting twice is fine */
        g_assert_true(kiln_storage_unmount(f->storage, ID_A, &error));
        g_assert_no_error(error);

        /* the builder's changes survive a remount */
        g_free(mnt);
        mnt = kiln_storage_mount(f->storage, ID_A, (const char *const[]){digest, NULL}, -1, &error);
        g_assert_no_error(error);
        {
                g_autofree char *p = path_in(mnt, "new");
                g_autofree char *c = read_file(p);
                g_assert_cmpstr(c, ==, "written through the mount\n");
        }
        g_assert_true(kiln_storage_remove_builder(f->storage, ID_A, &error));
        g_assert_no_error(error);
        g_assert_false(kiln_storage_is_mounted(f->storage, ID_A));
        g_assert_false(g_file_test(bdir, G_FILE_TEST_EXISTS));
        g_assert_true(kiln_storage_layer_exists(f->storage, digest));

        /* a missing layer or builder */
        g_assert_null(kiln_storage_mount(f->storage, ID_A, (const char *const[]){digest, NULL}, -1, &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
        g_clear_error(&error);
}

/* The merged root shows upper/'s own metadata; it takes the layer root's on the first mount. */
/* A user namespace's view of the layer: on-disk 0 is the mapped root, other ids shift with the
 * subordinate range; the upper dir takes the mapped owner of the layer's root. @data: by path
 * (overlayfs before Linux 6.13) rather than by descriptor. */
static void test_mount_idmapped(Fixture *f, gconstpointer data)
{
        const KilnIdMapping map[] = {{0, 4000, 1}, {1, 200000, 65536}};
        g_autofree char *src = make_src(f, "src");
        g_autofree char *file = path_in(src, "owned");
        g_autofree char *digest = NULL, *mnt = NULL, *upper = NULL, *bdir = NULL;
        g_autoptr(GError) error = NULL;
        _cleanup_close_ int userns = -1;
        struct stat st;

        write_file(file, "x\n");
        g_assert_cmpint(lchown(file, 1000, 1000), ==, 0);
        g_assert_cmpint(lchown(src, 0, 0), ==, 0);
        digest = import_ok(f, src);
        if (data)
                kiln_storage_prefer_layer_paths(f->storage);
        userns = kiln_userns_fd_new(map, G_N_ELEMENTS(map), map, G_N_ELEMENTS(map), &error);
        g_assert_no_error(error);
        g_assert_true(kiln_storage_create_builder(f->storage, ID_A, &error));
        mnt = kiln_storage_mount(f->storage, ID_A, (const char *const[]){digest, NULL}, userns, &error);
        g_assert_no_error(error);
        g_assert_nonnull(mnt);
        {
                g_autofree char *p = path_in(mnt, "owned");
                g_assert_cmpint(stat(p, &st), ==, 0);
                g_assert_cmpuint(st.st_uid, ==, 200000 + 999);
                g_assert_cmpuint(st.st_gid, ==, 200000 + 999);
                g_assert_cmpint(stat(mnt, &st), ==, 0);
                g_assert_cmpuint(st.st_uid, ==, 4000);
        }
        /* The layer itself is untouched; the upper dir's root belongs to the mapped root. */
        g_assert_cmpint(stat(file, &st), ==, 0);
        g_assert_cmpuint(st.st_uid, ==, 1000);
        bdir = kiln_storage_builder_dir(f->storage, ID_A);
        upper = path_in(bdir, "upper");
        g_assert_cmpint(stat(upper, &st), ==, 0);
        g_assert_cmpuint(st.st_uid, ==, 4000);
        /* Only the overlay is left mounted there (the attached layer, if any, is gone again). */
        g_assert_true(kiln_storage_unmount(f->storage, ID_A, &error));
        g_assert_no_error(error);
        g_assert_false(kiln_storage_is_mounted(f->storage, ID_A));
        g_assert_true(kiln_storage_remove_builder(f->storage, ID_A, &error));
}

static void test_mount_root_metadata(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *src = make_src(f, "src");
        g_autofree char *digest = NULL, *mnt = NULL;
        g_autoptr(GError) error = NULL;
        struct stat st;

        g_assert_cmpint(lchown(src, 1000, 1001), ==, 0);
        g_assert_cmpint(chmod(src, 0750), ==, 0);
        digest = import_ok(f, src);
        g_assert_true(kiln_storage_create_builder(f->storage, ID_B, &error));
        mnt = kiln_storage_mount(f->storage, ID_B, (const char *const[]){digest, NULL}, -1, &error);
        g_assert_no_error(error);
        lstat_ok(mnt, &st);
        g_assert_cmpint(st.st_uid, ==, 1000);
        g_assert_cmpint(st.st_gid, ==, 1001);
        g_assert_cmpint(st.st_mode & 07777, ==, 0750);
        g_assert_true(kiln_storage_remove_builder(f->storage, ID_B, &error));
        g_assert_no_error(error);
}

static void test_remove_builder_symlinks(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *outside = make_src(f, "outside");
        g_autofree char *precious = path_in(outside, "precious");
        g_autofree char *bdir = NULL, *upper = NULL, *sub = NULL, *l1 = NULL, *l2 = NULL, *l3 = NULL;
        g_autoptr(GError) error = NULL;

        write_file(precious, "do not delete\n");
        g_assert_true(kiln_storage_create_builder(f->storage, ID_A, &error));
        bdir = kiln_storage_builder_dir(f->storage, ID_A);
        upper = path_in(bdir, "upper");
        sub = path_in(upper, "sub");
        l1 = path_in(upper, "escape");
        l2 = path_in(sub, "escape-file");
        l3 = path_in(sub, "root");
        g_assert_cmpint(g_mkdir(sub, 0755), ==, 0);
        g_assert_cmpint(symlink(outside, l1), ==, 0);
        g_assert_cmpint(symlink(precious, l2), ==, 0);
        g_assert_cmpint(symlink("/", l3), ==, 0);
        /* a container may leave directories it made unreadable */
        g_assert_cmpint(chmod(sub, 0), ==, 0);

        g_assert_true(kiln_storage_remove_builder(f->storage, ID_A, &error));
        g_assert_no_error(error);
        g_assert_false(g_file_test(bdir, G_FILE_TEST_EXISTS));
        g_assert_true(g_file_test(precious, G_FILE_TEST_IS_REGULAR));
        g_assert_true(g_file_test(outside, G_FILE_TEST_IS_DIR));

        /* removing what is gone is fine */
        g_assert_true(kiln_storage_remove_builder(f->storage, ID_A, &error));
        g_assert_no_error(error);
}

static void test_cleanup_stale(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *scratch = kiln_storage_scratch_layer(f->storage, &error);
        g_autofree char *mnt = NULL, *tmp = path_in(f->layers, ".tmp-crashed");
        g_autofree char *tmp_file = path_in(tmp, "file");
        g_autofree char *tmp_link = path_in(tmp, "link");
        struct stat st;
        gboolean have_tmp;

        g_assert_no_error(error);
        g_assert_true(kiln_storage_create_builder(f->storage, ID_A, &error));
        mnt = kiln_storage_mount(f->storage, ID_A, (const char *const[]){scratch, NULL}, -1, &error);
        g_assert_no_error(error);
        g_assert_cmpint(g_mkdir(tmp, 0700), ==, 0);
        write_file(tmp_file, "partial import");
        g_assert_cmpint(symlink(f->base, tmp_link), ==, 0);

        /* "restart": the state is found on disk, not in memory */
        kiln_storage_free(f->storage);
        f->storage = kiln_storage_new(f->state, f->run, helper_dir, &error);
        g_assert_no_error(error);
        g_assert_true(kiln_storage_is_mounted(f->storage, ID_A));

        kiln_storage_cleanup_stale(f->storage);
        g_assert_false(kiln_storage_is_mounted(f->storage, ID_A));
        g_assert_false(mountinfo_has(mnt, NULL));
        g_assert_cmpint(lstat(mnt, &st), ==, -1);
        count_layers(f, &have_tmp);
        g_assert_false(have_tmp);
        g_assert_true(g_file_test(f->base, G_FILE_TEST_IS_DIR));
        g_assert_true(kiln_storage_layer_exists(f->storage, scratch));

        /* and the builder mounts again */
        g_free(mnt);
        mnt = kiln_storage_mount(f->storage, ID_A, (const char *const[]){scratch, NULL}, -1, &error);
        g_assert_no_error(error);
        g_assert_true(kiln_storage_remove_builder(f->storage, ID_A, &error));
        g_assert_no_error(error);
}

/* A tmp tree someone holds locked (kiln-import while it writes) survives the start-up clean-up; the
 * same tree unlocked does not. */
static void test_cleanup_skips_locked(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autofree char *live = path_in(f->layers, ".tmp-live");
        g_autofree char *live_file = path_in(live, "file");
        int fd;

        g_assert_cmpint(g_mkdir(live, 0700), ==, 0);
        write_file(live_file, "being written");
        fd = open(live, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpint(flock(fd, LOCK_EX | LOCK_NB), ==, 0);

        kiln_storage_cleanup_stale(f->storage);
        g_assert_true(g_file_test(live_file, G_FILE_TEST_IS_REGULAR));

        close(fd);
        kiln_storage_cleanup_stale(f->storage);
        g_assert_false(g_file_test(live, G_FILE_TEST_EXISTS));
}

/* --max-bytes through the storage API: the import stops, answers NO_SPACE naming the setting, and
 * leaves nothing in STATE/layers. */
static void test_import_limit(Fixture *f, G_GNUC_UNUSED gconstpointer data)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *src = make_src(f, "big");
        g_autofree char *file = path_in(src, "file");
        g_autofree char *small = make_src(f, "small");
        g_autofree char *small_file = path_in(small, "file");
        g_autofree char *digest = NULL;
        gboolean have_tmp;
        guint before;

        write_file(file, "0123456789abcdef0123456789abcdef!");      /* 33 bytes */
        write_file(small_file, "0123456789abcdef0123456789abcdef"); /* 32 bytes */
        kiln_storage_set_limits(f->storage, 32, G_MAXUINT64);
        before = count_layers(f, &have_tmp);
        digest = import_full(f, src, -1, 0, 0, NULL, 0, FALSE, &error);
        g_assert_null(digest);
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
        g_assert_nonnull(strstr(error->message, "ImportBytes=32"));
        g_assert_cmpuint(count_layers(f, &have_tmp), ==, before);
        g_assert_false(have_tmp);
        g_clear_error(&error);
        /* exactly at the bound is fine */
        digest = import_full(f, small, -1, 0, 0, NULL, 0, FALSE, &error);
        g_assert_no_error(error);
        g_assert_nonnull(digest);
}

static void add(const char *name, void (*fn)(Fixture *, gconstpointer))
{
        g_test_add(name, Fixture, NULL, fixture_setup, fn, fixture_teardown);
}

int main(int argc, char **argv)
{
        g_autofree char *dir = NULL;
        const char *helper = g_getenv("KILN_IMPORT");

        g_test_init(&argc, &argv, NULL);
        if (geteuid() != 0) {
                g_printerr("test-storage: needs root, skipping\n");
                return 77;
        }
        if (!helper || !g_file_test(helper, G_FILE_TEST_IS_EXECUTABLE)) {
                g_printerr("test-storage: set KILN_IMPORT to the built kiln-import\n");
                return 1;
        }
        dir = g_path_get_dirname(helper);
        helper_dir = dir;

        add("/storage/import/metadata", test_import_metadata);
        add("/storage/import/sparse", test_import_sparse);
        add("/storage/import/same-digest", test_import_same_digest);
        add("/storage/import/permission-denied", test_import_permission_denied);
        add("/storage/import/groups", test_import_groups);
        add("/storage/import/private-root", test_import_private_root);
        add("/storage/import/symlink-not-followed", test_import_symlink_not_followed);
        add("/storage/import/fd", test_import_fd);
        add("/storage/import/errors", test_import_errors);
        add("/storage/import/too-deep", test_import_too_deep);
        add("/storage/import/cancel", test_import_cancel);
        add("/storage/scratch", test_scratch);
        add("/storage/mount/roundtrip", test_mount_roundtrip);
        add("/storage/mount/root-metadata", test_mount_root_metadata);
        add("/storage/mount/idmapped", test_mount_idmapped);
        g_test_add("/storage/mount/idmapped-by-path", Fixture, "by path", fixture_setup, test_mount_idmapped,
                   fixture_teardown);
        add("/storage/remove-builder/symlinks", test_remove_builder_symlinks);
        add("/storage/cleanup-stale", test_cleanup_stale);
        add("/storage/cleanup-skips-locked", test_cleanup_skips_locked);
        add("/storage/import/limit", test_import_limit);
        return g_test_run();
}
