/* SPDX-License-Identifier: Apache-2.0 */
/* The volume and --mount parsers of run-volumes.c: every spelling of an option that weakens isolation
 * comes out as the same parsed flag, and nothing a caller writes reaches the spec generator unparsed. */
#include "run/run-volumes.h"

static void assert_options(const KilnRunVolume *v, const char *const *expected)
{
        g_assert_nonnull(v->options);
        g_assert_cmpuint(g_strv_length(v->options), ==, g_strv_length((char **)expected));
        for (guint i = 0; expected[i]; i++)
                g_assert_cmpstr(v->options[i], ==, expected[i]);
}

static void assert_refused(KilnRunVolume *v, GError *error, const char *arg, const char *fragment)
{
        g_assert_null(v);
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        /* Every message names the argument it is about. */
        g_assert_nonnull(strstr(error->message, arg));
        if (fragment)
                g_assert_nonnull(strstr(error->message, fragment));
}

static void test_volume_spec(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnRunVolume) plain = kiln_run_volume_parse("volumes[0]", "/src:/dst", &error);
        g_autoptr(KilnRunVolume) full =
                kiln_run_volume_parse("volumes[1]", "/src:/dst:ro,U,z,rslave,nosuid", &error);
        g_autoptr(KilnRunVolume) overlay =
                kiln_run_volume_parse("builder volumes[0]", "/src:/dst:O,nodev", &error);

        g_assert_no_error(error);
        g_assert_cmpstr(plain->arg, ==, "volumes[0]");
        g_assert_cmpint(plain->kind, ==, KILN_RUN_VOLUME_BIND);
        g_assert_cmpstr(plain->source, ==, "/src");
        g_assert_cmpstr(plain->destination, ==, "/dst");
        g_assert_cmpint(plain->fd, ==, -1);
        g_assert_cmpint(plain->flags, ==, 0);
        assert_options(plain, (const char *const[]){NULL});

        g_assert_cmpint(full->flags, ==, KILN_RUN_VOLUME_CHOWN | KILN_RUN_VOLUME_RELABEL);
        assert_options(full, (const char *const[]){"ro", "rslave", "nosuid", NULL});

        g_assert_cmpstr(overlay->arg, ==, "builder volumes[0]");
        g_assert_cmpint(overlay->kind, ==, KILN_RUN_VOLUME_OVERLAY);
        assert_options(overlay, (const char *const[]){"nodev", NULL});
}

static void test_volume_spec_refused(void)
{
        static const char *const bad[] = {
                "/src",
                "relative:/dst",
                "/src:relative",
                "/src:/dst:bogus",
                "/src:/dst:ro,lowerdir=/etc",
                "/a:/b:c:d",
                "/src:/dst:U,",
                "/src:/dst:upperdir=/u,workdir=/w",    /* without O */
                "/src:/dst:O,upperdir=/u",             /* without workdir */
                "/src:/dst:O,upperdir=rel,workdir=/w", /* not absolute */
                NULL,
        };

        for (const char *const *spec = bad; *spec; spec++) {
                g_autoptr(GError) error = NULL;
                KilnRunVolume *v = kiln_run_volume_parse("volumes[3]", *spec, &error);
                assert_refused(v, error, "volumes[3]", NULL);
        }
}

static void test_volume_fd(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnRunVolume) v = kiln_run_volume_parse_fd("volume_fds[0]", "/data", "U,ro", &error);
        KilnRunVolume *bad;

        g_assert_no_error(error);
        g_assert_null(v->source);
        g_assert_cmpint(v->fd, ==, -1);
        g_assert_cmpstr(v->destination, ==, "/data");
        g_assert_cmpint(v->flags, ==, KILN_RUN_VOLUME_CHOWN);
        assert_options(v, (const char *const[]){"ro", NULL});

        bad = kiln_run_volume_parse_fd("volume_fds[2]", "/data", "upperdir=/x", &error);
        assert_refused(bad, error, "volume_fds[2]", "upperdir");
        g_clear_error(&error);
        bad = kiln_run_volume_parse_fd("volume_fds[2]", "data", "", &error);
        assert_refused(bad, error, "volume_fds[2]", NULL);
}

/* `U` however it is spelt in a --mount: alone, first, last, among others. */
static void test_mount_chown_spellings(void)
{
        static const char *const spellings[] = {
                "type=bind,src=/etc,dst=/v,U",
                "U,type=bind,src=/etc,dst=/v",
                "type=bind,U,source=/etc,target=/v,ro",
                "src=/etc,dst=/v,U",
                "type=bind,source=/etc,destination=/v,readonly,U,U",
                NULL,
        };

        for (const char *const *m = spellings; *m; m++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnRunVolume) v = kiln_run_mount_parse("mounts[0]", *m, &error);

                g_assert_no_error(error);
                g_assert_cmpint(v->kind, ==, KILN_RUN_VOLUME_BIND);
                g_assert_true(v->flags & KILN_RUN_VOLUME_CHOWN);
                g_assert_cmpstr(v->source, ==, "/etc");
                g_assert_cmpstr(v->destination, ==, "/v");
                for (char **o = v->options; *o; o++)
                        g_assert_cmpstr(*o, !=, "U");
        }
}

static void test_mount_bind_and_tmpfs(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnRunVolume) bind = kiln_run_mount_parse(
                "mounts[1]", "type=bind,src=/s,dst=/d,readonly,bind-propagation=rshared,O", &error);
        g_autoptr(KilnRunVolume) tmpfs = kiln_run_mount_parse(
                "mounts[2]", "type=tmpfs,destination=/t,tmpfs-size=64m,tmpfs-mode=1777,exec", &error);

        g_assert_no_error(error);
        g_assert_cmpint(bind->kind, ==, KILN_RUN_VOLUME_OVERLAY);
        assert_options(bind, (const char *const[]){"ro", "rshared", NULL});
        g_assert_cmpint(tmpfs->kind, ==, KILN_RUN_VOLUME_TMPFS);
        g_assert_null(tmpfs->source);
        g_assert_cmpstr(tmpfs->destination, ==, "/t");
        assert_options(tmpfs, (const char *const[]){"size=64m", "mode=1777", "exec", NULL});
}

/* As buildah: a bind --mount is read-only unless rw, and rw writes to a throw-away overlay. */
static void test_mount_bind_writes(void)
{
        const struct {
                const char *value;
                KilnRunVolumeKind kind;
                gboolean scratch;
                const char *const *options;
        } cases[] = {
                {"type=bind,src=/s,dst=/d", KILN_RUN_VOLUME_BIND, FALSE, (const char *const[]){"ro", NULL}},
                {"src=/s,dst=/d,z,relabel=private", KILN_RUN_VOLUME_BIND, FALSE,
                 (const char *const[]){"ro", NULL}},
                {"type=bind,src=/s,dst=/d,readonly", KILN_RUN_VOLUME_BIND, FALSE,
                 (const char *const[]){"ro", NULL}},
                {"type=bind,src=/s,dst=/d,rw", KILN_RUN_VOLUME_OVERLAY, TRUE,
                 (const char *const[]){"rw", NULL}},
                {"type=bind,src=/s,dst=/d,O", KILN_RUN_VOLUME_OVERLAY, TRUE, (const char *const[]){NULL}},
                {"type=bind,src=/s,dst=/d,readonly=true", KILN_RUN_VOLUME_BIND, FALSE,
                 (const char *const[]){"ro", NULL}},
                {"type=bind,src=/s,dst=/d,rw=false", KILN_RUN_VOLUME_BIND, FALSE,
                 (const char *const[]){"ro", NULL}},
                {"type=bind,src=/s,dst=/d,ro=false", KILN_RUN_VOLUME_OVERLAY, TRUE,
                 (const char *const[]){"rw", NULL}},
                {"type=bind,src=/s,dst=/d,rw=1", KILN_RUN_VOLUME_OVERLAY, TRUE,
                 (const char *const[]){"rw", NULL}},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnRunVolume) v = kiln_run_mount_parse("mounts[0]", cases[i].value, &error);

                g_assert_no_error(error);
                g_assert_cmpint(v->kind, ==, cases[i].kind);
                g_assert_cmpint(!!(v->flags & KILN_RUN_VOLUME_SCRATCH), ==, cases[i].scratch);
                assert_options(v, cases[i].options);
        }
        /* -v is unchanged: it writes through. */
        {
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnRunVolume) v = kiln_run_volume_parse("volumes[0]", "/s:/d", &error);
                g_assert_no_error(error);
                g_assert_cmpint(v->kind, ==, KILN_RUN_VOLUME_BIND);
                assert_options(v, (const char *const[]){NULL});
        }
}

static void test_mount_refused(void)
{
        static const struct {
                const char *value;
                const char *fragment;
        } bad[] = {
                {"type=bind,src=/s,dst=/d,O,lowerdir=/etc", "lowerdir"},
                {"type=bind,src=/s,dst=/d,O,upperdir=/tmp/u", "upperdir"},
                {"type=bind,src=/s,dst=/d,workdir=/tmp/w", "workdir"},
                {"type=bind,src=/s,dst=/d,bind-propagation=bogus", "bogus"},
                {"type=bind,src=/s,dst=/d,size=1g", "size"},
                {"type=tmpfs,dst=/t,U", "U"},
                {"type=tmpfs,dst=/t,O", "O"},
                {"type=tmpfs,src=/etc,dst=/t", "src"},
                {"type=volume,src=/s,dst=/d", "type"},
                {"type=cache,dst=/d,from=image", "from"},
                {"type=cache,dst=/d,src=/s,lowerdir=/etc", "lowerdir"},
                {"type=cache,id=../x,dst=/d", "id"},
                {"type=cache,dst=/d,sharing=maybe", "sharing"},
                {"type=cache,dst=/d,mode=8", "mode"},
                {"type=cache,dst=/d,source=a/../../b", ".."},
                {"type=cache,id=x", "target"},
                {"type=secret,dst=/d", "id"},
                {"type=secret,id=a/b", "id"},
                {"type=secret,id=x,src=/etc/shadow", "src"},
                {"type=secret,id=x,target=relative", "target"},
                {"type=bind,src=/s", "destination"},
                {"type=bind,dst=/d", "source"},
                {"type=bind,src=relative,dst=/d", "source"},
                {"type=bind,src=/s,dst=/d,", "''"},
                {"type=bind,src=/s,dst=/d,from=image", "from"},
                {"type=bind,src=/s,dst=/d,bind-nonrecursive", "bind-nonrecursive"},
                {"type=bind,src=/s,dst=/d,ro,rw", "'rw'"},
                {"type=bind,src=/s,dst=/d,relabel=bogus", "relabel"},
                {"type=bind,src=/s,dst=/d,uid=0", "uid"},
                {"type=bind,src=/s,dst=/d,ro=maybe", "ro=maybe"},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                KilnRunVolume *v = kiln_run_mount_parse("mounts[4]", bad[i].value, &error);
                assert_refused(v, error, "mounts[4]", bad[i].fragment);
        }
}

/* Run parity: O with a persistent upper, type=cache and type=secret. */
static void test_run_parity_mounts(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(KilnRunVolume) upper =
                kiln_run_volume_parse("volumes[0]", "/s:/d:O,upperdir=/u,workdir=/w,nodev", &error);
        g_autoptr(KilnRunVolume) cache = NULL, unnamed = NULL, secret = NULL;

        g_assert_no_error(error);
        g_assert_cmpint(upper->kind, ==, KILN_RUN_VOLUME_OVERLAY);
        g_assert_cmpstr(upper->upperdir, ==, "/u");
        g_assert_cmpstr(upper->workdir, ==, "/w");
        g_assert_cmpint(upper->upper_fd, ==, -1);
        assert_options(upper, (const char *const[]){"nodev", NULL});

        cache = kiln_run_mount_parse(
                "mounts[0]", "type=cache,id=go,target=/c,sharing=locked,uid=7,gid=8,mode=0700,src=a/b,ro",
                &error);
        g_assert_no_error(error);
        g_assert_cmpint(cache->kind, ==, KILN_RUN_VOLUME_CACHE);
        g_assert_cmpstr(cache->cache_id, ==, "go");
        g_assert_cmpstr(cache->cache_source, ==, "a/b");
        g_assert_null(cache->source); /* never a host path to open */
        g_assert_cmpint(cache->cache_sharing, ==, KILN_RUN_CACHE_LOCKED);
        g_assert_cmpuint(cache->cache_uid, ==, 7);
        g_assert_cmpuint(cache->cache_gid, ==, 8);
        g_assert_cmpuint(cache->cache_mode, ==, 0700);
        assert_options(cache, (const char *const[]){"ro", NULL});

        unnamed = kiln_run_mount_parse("mounts[1]", "type=cache,target=/c", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(strlen(unnamed->cache_id), ==, 64);
        g_assert_cmpuint(unnamed->cache_mode, ==, 0755);
        g_assert_cmpint(unnamed->cache_sharing, ==, KILN_RUN_CACHE_SHARED);

        secret = kiln_run_mount_parse("mounts[2]", "type=secret,id=tok,required,mode=0440", &error);
        g_assert_no_error(error);
        g_assert_cmpint(secret->kind, ==, KILN_RUN_VOLUME_SECRET);
        g_assert_cmpstr(secret->destination, ==, "/run/secrets/tok");
        g_assert_true(secret->secret_required);
        g_assert_cmpuint(secret->cache_mode, ==, 0440);
        assert_options(secret, (const char *const[]){"ro", "nosuid", "nodev", "noexec", NULL});
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/run-volumes/volume-spec", test_volume_spec);
        g_test_add_func("/run-volumes/volume-spec-refused", test_volume_spec_refused);
        g_test_add_func("/run-volumes/volume-fd", test_volume_fd);
        g_test_add_func("/run-volumes/mount-chown-spellings", test_mount_chown_spellings);
        g_test_add_func("/run-volumes/mount-bind-and-tmpfs", test_mount_bind_and_tmpfs);
        g_test_add_func("/run-volumes/mount-bind-writes", test_mount_bind_writes);
        g_test_add_func("/run-volumes/mount-refused", test_mount_refused);
        g_test_add_func("/run-volumes/run-parity-mounts", test_run_parity_mounts);
        return g_test_run();
}
