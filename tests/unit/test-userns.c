/* SPDX-License-Identifier: Apache-2.0 */
/* userns=auto: subid parsing, map checks, and the pool's allotments against temporary files. */
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "storage/userns.h"

/* A uid and gid no test host has an account for: subid entries then match by uid only. */
#define OWNER 4000123
#define OWNER_GID 4000124

static const char subuid[] = "# comment\n"
                             "\n"
                             "   \n"
                             "alice:100000:65536\n"
                             "1000:200000:10\n"
                             "bob:300000:65536\n"
                             "alice:400000:5\n"
                             "malformed\n"
                             "alice:1:2:3\n"
                             "alice:x:5\n"
                             ":5:5\n"
                             "alice:-1:5\n"
                             "alice:500000:0\n"
                             "alice:4294967290:10\n"
                             "alice:4294967000:295\n"
                             "alice:600000:7\r\n"
                             "alice:700000:99999999999"; /* too large, no final newline */

static void assert_range(GArray *ranges, guint i, guint32 start, guint32 count)
{
        g_assert_cmpuint(i, <, ranges->len);
        g_assert_cmpuint(g_array_index(ranges, KilnIdRange, i).start, ==, start);
        g_assert_cmpuint(g_array_index(ranges, KilnIdRange, i).count, ==, count);
}

static void test_parse(void)
{
        g_autoptr(GArray) by_name = kiln_subid_ranges_for(subuid, sizeof(subuid) - 1, "alice", 1000);
        g_autoptr(GArray) by_uid = kiln_subid_ranges_for(subuid, sizeof(subuid) - 1, NULL, 1000);
        g_autoptr(GArray) nobody = kiln_subid_ranges_for(subuid, sizeof(subuid) - 1, "carol", 5);
        g_autoptr(GArray) all = kiln_subid_ranges_all(subuid, sizeof(subuid) - 1);
        g_autoptr(GArray) empty = kiln_subid_ranges_all(NULL, 0);

        /* in file order; count 0 and ranges reaching 4294967295 are skipped, one ending just below kept */
        g_assert_cmpuint(by_name->len, ==, 5);
        assert_range(by_name, 0, 100000, 65536);
        assert_range(by_name, 1, 200000, 10);
        assert_range(by_name, 2, 400000, 5);
        assert_range(by_name, 3, 4294967000, 295);
        assert_range(by_name, 4, 600000, 7);

        g_assert_cmpuint(by_uid->len, ==, 1);
        assert_range(by_uid, 0, 200000, 10);
        g_assert_cmpuint(nobody->len, ==, 0);

        /* every account; the range past the last id is cut, not dropped */
        g_assert_cmpuint(all->len, ==, 7);
        assert_range(all, 2, 300000, 65536);
        assert_range(all, 4, 4294967290, 5);
        g_assert_cmpuint(empty->len, ==, 0);
}

static const KilnIdRange subids[] = {{100000, 65536}};

static void assert_check_fails(const KilnIdMapping *map, gsize n, guint32 owner, const char *why)
{
        g_autoptr(GError) error = NULL;

        g_assert_false(kiln_idmap_check("uid map", map, n, owner, subids, G_N_ELEMENTS(subids), &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        g_assert_true(g_str_has_prefix(error->message, "Invalid uid map: "));
        if (!strstr(error->message, why))
                g_error("'%s' does not say '%s'", error->message, why);
}

static void test_check_accepts(void)
{
        const KilnIdMapping user[] = {{0, 1000, 1}, {1, 100000, 65536}};
        const KilnIdMapping root[] = {{0, 0, 1}, {1, 100000, 65536}};
        const KilnIdMapping part[] = {{0, 1000, 1}, {1, 100010, 10}, {11, 100000, 10}};
        g_autoptr(GError) error = NULL;

        g_assert_true(kiln_idmap_check("uid map", user, G_N_ELEMENTS(user), 1000, subids, 1, &error));
        g_assert_true(kiln_idmap_check("uid map", root, G_N_ELEMENTS(root), 0, subids, 1, &error));
        g_assert_true(kiln_idmap_check("uid map", part, G_N_ELEMENTS(part), 1000, subids, 1, &error));
        g_assert_no_error(error);
}

static void test_check_refuses(void)
{
        const KilnIdMapping host_root[] = {{0, 0, 1}};
        const KilnIdMapping outside[] = {{0, 1000, 1}, {1, 100000, 65537}};
        const KilnIdMapping owner_and_more[] = {{0, 1000, 2}};
        const KilnIdMapping container_overlap[] = {{0, 1000, 1}, {0, 100000, 10}};
        const KilnIdMapping host_overlap[] = {{0, 1000, 1}, {1, 100000, 10}, {11, 100005, 10}};
        const KilnIdMapping container_overflow[] = {{4294967290u, 100000, 10}};
        const KilnIdMapping host_overflow[] = {{1, 4294967290u, 10}};
        const KilnIdMapping size_zero[] = {{0, 1000, 0}};
        KilnIdMapping many[KILN_IDMAP_MAX_LINES + 1];

        assert_check_fails(host_root, 1, 1000, "line 1 (0 0 1): maps host id 0");
        assert_check_fails(outside, 2, 1000, "line 2 (1 100000 65537): host ids are neither");
        assert_check_fails(owner_and_more, 1, 1000, "host ids are neither");
        assert_check_fails(container_overlap, 2, 1000, "line 2 (0 100000 10): container ids overlap line 1");
        assert_check_fails(host_overlap, 3, 1000, "line 3 (11 100005 10): host ids overlap line 2");
        assert_check_fails(container_overflow, 1, 1000, "container ids reach past 4294967294");
        assert_check_fails(host_overflow, 1, 1000, "host ids reach past 4294967294");
        assert_check_fails(size_zero, 1, 1000, "line 1 (0 1000 0): maps no ids");
        assert_check_fails(size_zero, 0, 1000, "no lines");

        for (guint i = 0; i < G_N_ELEMENTS(many); i++)
                many[i] = (KilnIdMapping){i, 100000 + i, 1};
        assert_check_fails(many, G_N_ELEMENTS(many), 1000, "341 lines, the kernel takes at most 340");
        g_assert_true(kiln_idmap_check("uid map", many, KILN_IDMAP_MAX_LINES, 1000, subids, 1, NULL));
}

static void test_to_host(void)
{
        const KilnIdMapping map[] = {{0, 1000, 1}, {1, 100000, 65536}};
        guint32 host = 0;

        g_assert_true(kiln_idmap_to_host(map, 2, 0, &host));
        g_assert_cmpuint(host, ==, 1000);
        g_assert_true(kiln_idmap_to_host(map, 2, 1, &host));
        g_assert_cmpuint(host, ==, 100000);
        g_assert_true(kiln_idmap_to_host(map, 2, 65536, &host));
        g_assert_cmpuint(host, ==, 165535);
        g_assert_false(kiln_idmap_to_host(map, 2, 65537, &host));
        g_assert_false(kiln_idmap_to_host(map, 0, 0, &host));
}

static void test_pool_pick(void)
{
        const KilnIdRange first[] = {{0, 1}};
        const KilnIdRange spanning[] = {{35, 1}, {5, 20}, {60, 1}};
        const KilnIdRange from_below[] = {{0, 105}};
        const KilnIdRange everything[] = {{100, 10}, {110, 10}, {120, 10}, {130, 10}};
        guint32 start = 0;

        g_assert_true(kiln_id_pool_pick(100, 40, 10, NULL, 0, &start));
        g_assert_cmpuint(start, ==, 100);
        g_assert_true(kiln_id_pool_pick(0, 40, 10, first, 1, &start));
        g_assert_cmpuint(start, ==, 10);
        /* [5, 25) takes slots 0-2, 35 slot 3: the first free one is 40 */
        g_assert_true(kiln_id_pool_pick(0, 100, 10, spanning, 3, &start));
        g_assert_cmpuint(start, ==, 40);
        g_assert_true(kiln_id_pool_pick(100, 40, 10, from_below, 1, &start));
        g_assert_cmpuint(start, ==, 110);
        g_assert_false(kiln_id_pool_pick(100, 40, 10, everything, 4, &start));
        /* the last partial slot is not a slot */
        g_assert_false(kiln_id_pool_pick(100, 45, 10, everything, 4, &start));
        g_assert_false(kiln_id_pool_pick(100, 0, 10, NULL, 0, &start));
}

/* ---- kiln_userns_mappings() against temporary files ---- */

typedef struct Fixture {
        char *dir;
        char *subuid;
        char *subgid;
        char *allotments;
        KilnConfig *config;
} Fixture;

static void fixture_set_up(Fixture *f, gconstpointer data)
{
        (void)data;
        f->dir = g_dir_make_tmp("kiln-userns-XXXXXX", NULL);
        g_assert_nonnull(f->dir);
        f->subuid = g_build_filename(f->dir, "subuid", NULL);
        f->subgid = g_build_filename(f->dir, "subgid", NULL);
        f->allotments = g_build_filename(f->dir, "allotments", NULL);
        f->config = kiln_config_new_defaults();
        g_free(f->config->subuid_file);
        f->config->subuid_file = g_strdup(f->subuid);
        g_free(f->config->subgid_file);
        f->config->subgid_file = g_strdup(f->subgid);
}

static void fixture_tear_down(Fixture *f, gconstpointer data)
{
        (void)data;
        g_unlink(f->subuid);
        g_unlink(f->subgid);
        g_unlink(f->allotments);
        g_rmdir(f->dir);
        g_free(f->dir);
        g_free(f->subuid);
        g_free(f->subgid);
        g_free(f->allotments);
        kiln_config_free(f->config);
}

static void write_file(const char *path, const char *contents)
{
        g_assert_true(g_file_set_contents(path, contents, -1, NULL));
}

static void assert_mapping(GArray *map, guint i, guint32 container_id, guint32 host_id, guint32 size)
{
        g_assert_cmpuint(i, <, map->len);
        g_assert_cmpuint(g_array_index(map, KilnIdMapping, i).container_id, ==, container_id);
        g_assert_cmpuint(g_array_index(map, KilnIdMapping, i).host_id, ==, host_id);
        g_assert_cmpuint(g_array_index(map, KilnIdMapping, i).size, ==, size);
}

/* The pool range a map was given: its second line. */
static guint32 pool_start_of(GArray *map)
{
        g_assert_cmpuint(map->len, ==, 2);
        return g_array_index(map, KilnIdMapping, 1).host_id;
}

static void test_mappings_subid_entry(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;

        (void)data;
        write_file(f->subuid, "someone:5:5\n4000123:100000:65536\n4000123:300000:10\n");
        write_file(f->subgid, "4000123:200000:1000\n");
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_no_error(error);
        g_assert_true(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_no_error(error);

        g_assert_cmpuint(uid_map->len, ==, 3);
        assert_mapping(uid_map, 0, 0, OWNER, 1);
        assert_mapping(uid_map, 1, 1, 100000, 65536);
        assert_mapping(uid_map, 2, 65537, 300000, 10);
        g_assert_cmpuint(gid_map->len, ==, 2);
        assert_mapping(gid_map, 0, 0, OWNER_GID, 1);
        assert_mapping(gid_map, 1, 1, 200000, 1000);
        /* no pool needed, nothing allotted */
        g_assert_false(g_file_test(f->allotments, G_FILE_TEST_EXISTS));
}

/* The entry of the user running the test, by name (skipped when it has no passwd entry). */
static void test_mappings_by_name(Fixture *f, gconstpointer data)
{
        struct passwd *pw = getpwuid(getuid());
        g_autofree char *entry = NULL;
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;

        (void)data;
        if (!pw) {
                g_test_skip("the test's uid has no passwd entry");
                return;
        }
        entry = g_strdup_printf("%s:100000:65536\n", pw->pw_name);
        write_file(f->subuid, entry);
        write_file(f->subgid, entry);
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_true(kiln_userns_mappings(u, pw->pw_uid, pw->pw_gid, &uid_map, &gid_map, &error));
        g_assert_no_error(error);
        assert_mapping(uid_map, 0, 0, pw->pw_uid, 1);
        assert_mapping(uid_map, 1, 1, 100000, 65536);
        assert_mapping(gid_map, 0, 0, pw->pw_gid, 1);
}

static gboolean account_id_in(guint32 start, guint32 count)
{
        struct passwd *pw;
        struct group *gr;
        gboolean found = FALSE;

        setpwent();
        while ((pw = getpwent()))
                found = found || (pw->pw_uid >= start && pw->pw_uid - start < count);
        endpwent();
        setgrent();
        while ((gr = getgrent()))
                found = found || (gr->gr_gid >= start && gr->gr_gid - start < count);
        endgrent();
        return found;
}

/* A pool from id 0, slots of 1000: slot 0 holds root, slots 1 and 2 ranges of the files. */
static void use_low_pool(Fixture *f)
{
        f->config->id_pool_start = 0;
        f->config->id_range_size = 1000;
        f->config->id_pool_size = 1000 * 1000;
        write_file(f->subuid, "someone:1000:1000\n");
        write_file(f->subgid, "other:2500:10\n");
}

static void test_mappings_pool(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *saved = NULL;
        g_autofree char *line = NULL;
        guint32 start;
        GStatBuf st;

        (void)data;
        use_low_pool(f);
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_true(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_no_error(error);

        start = pool_start_of(uid_map);
        assert_mapping(uid_map, 0, 0, OWNER, 1);
        assert_mapping(uid_map, 1, 1, start, 1000);
        assert_mapping(gid_map, 0, 0, OWNER_GID, 1);
        assert_mapping(gid_map, 1, 1, start, 1000); /* the same slot for both maps */
        g_assert_cmpuint(start % 1000, ==, 0);
        g_assert_cmpuint(start, >=, 3000); /* not root's slot, clear of both files */
        g_assert_false(account_id_in(start, 1000));

        /* saved before use, private */
        g_assert_true(g_file_get_contents(f->allotments, &saved, NULL, NULL));
        line = g_strdup_printf("\n4000123:%u:1000\n", start);
        g_assert_nonnull(strstr(saved, line));
        g_assert_cmpint(g_stat(f->allotments, &st), ==, 0);
        g_assert_cmpuint(st.st_mode & 0777, ==, 0600);
}

static void test_mappings_pool_remembered(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u1 = NULL;
        g_autoptr(KilnUserns) u2 = NULL;
        g_autoptr(GArray) a_uid = NULL, a_gid = NULL, b_uid = NULL, b_gid = NULL, c_uid = NULL, c_gid = NULL;
        g_autoptr(GError) error = NULL;

        (void)data;
        use_low_pool(f);
        u1 = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_true(kiln_userns_mappings(u1, OWNER, OWNER_GID, &a_uid, &a_gid, &error));
        g_assert_true(kiln_userns_mappings(u1, OWNER + 10, OWNER_GID, &b_uid, &b_gid, &error));
        g_assert_no_error(error);
        /* two owners, two slots */
        g_assert_cmpuint(pool_start_of(a_uid), !=, pool_start_of(b_uid));

        /* a restarted kilnd gives the same slots, and a third owner another one */
        u2 = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_no_error(error);
        g_clear_pointer(&b_uid, g_array_unref);
        g_clear_pointer(&b_gid, g_array_unref);
        g_assert_true(kiln_userns_mappings(u2, OWNER, OWNER_GID, &b_uid, &b_gid, &error));
        g_assert_cmpuint(pool_start_of(a_uid), ==, pool_start_of(b_uid));
        g_assert_true(kiln_userns_mappings(u2, OWNER + 20, OWNER_GID, &c_uid, &c_gid, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(pool_start_of(c_uid), !=, pool_start_of(a_uid));
}

/* An owner in one file only: the other map comes from the pool. */
static void test_mappings_pool_for_one_file(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;

        (void)data;
        use_low_pool(f);
        write_file(f->subuid, "4000123:100000:65536\n");
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_true(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_no_error(error);
        assert_mapping(uid_map, 1, 1, 100000, 65536);
        g_assert_cmpuint(pool_start_of(gid_map) % 1000, ==, 0);
}

static void test_mappings_pool_exhausted(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;

        (void)data;
        use_low_pool(f);
        f->config->id_pool_size = 3000; /* root's slot and the files' */
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_false(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED);
        g_assert_nonnull(strstr(error->message, "pool is exhausted"));
        g_assert_false(g_file_test(f->allotments, G_FILE_TEST_EXISTS));
}

static void test_mappings_pool_disabled(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *expected = NULL;

        (void)data;
        f->config->id_pool_size = 0;
        write_file(f->subuid, "someone:100000:65536\n"); /* the subgid file is missing: no entries */
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_false(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        expected = g_strdup_printf(
                "userns: user 4000123 has no subordinate ids in %s and kiln.conf has no pool", f->subuid);
        g_assert_cmpstr(error->message, ==, expected);
}

/* An entry overlapping the owner's own uid: refused by the check, not passed on. */
static void test_mappings_checked(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;

        (void)data;
        write_file(f->subuid, "4000123:4000000:65536\n");
        write_file(f->subgid, "4000123:200000:1000\n");
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_false(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
        g_assert_nonnull(strstr(error->message, "Invalid uid map: line 2"));
        g_assert_null(uid_map);
}

static void test_subid_file_too_large(Fixture *f, gconstpointer data)
{
        g_autoptr(KilnUserns) u = NULL;
        g_autoptr(GArray) uid_map = NULL;
        g_autoptr(GArray) gid_map = NULL;
        g_autoptr(GError) error = NULL;
        g_autofree char *big = g_malloc(KILN_SUBID_FILE_MAX + 2);

        (void)data;
        memset(big, '#', KILN_SUBID_FILE_MAX + 1);
        big[KILN_SUBID_FILE_MAX + 1] = '\0';
        write_file(f->subgid, big);
        u = kiln_userns_new(f->config, f->allotments, &error);
        g_assert_false(kiln_userns_mappings(u, OWNER, OWNER_GID, &uid_map, &gid_map, &error));
        g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED);
}

static void test_allotments_corrupt(Fixture *f, gconstpointer data)
{
        static const char *const bad[] = {
                "# header\n1000:abc:5\n",
                "# header\n1000:3000:5\n1000:4000:5\n",
                "# header\n1000:3000:5\n1001:3004:5\n",
                "# header\n1000:3000:0\n",
                "# header\nalice:3000:5\n",
        };

        (void)data;
        for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(KilnUserns) u = NULL;
                g_autofree char *where =
                        g_strdup_printf("%s line %d", f->allotments, i == 0 || i >= 3 ? 2 : 3);

                write_file(f->allotments, bad[i]);
                u = kiln_userns_new(f->config, f->allotments, &error);
                g_assert_null(u);
                g_assert_nonnull(error);
                if (!strstr(error->message, where))
                        g_error("'%s' does not say '%s'", error->message, where);
        }
}

#define ADD(path, func) g_test_add(path, Fixture, NULL, fixture_set_up, func, fixture_tear_down)

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/userns/parse", test_parse);
        g_test_add_func("/userns/check-accepts", test_check_accepts);
        g_test_add_func("/userns/check-refuses", test_check_refuses);
        g_test_add_func("/userns/to-host", test_to_host);
        g_test_add_func("/userns/pool-pick", test_pool_pick);
        ADD("/userns/mappings/subid-entry", test_mappings_subid_entry);
        ADD("/userns/mappings/by-name", test_mappings_by_name);
        ADD("/userns/mappings/pool", test_mappings_pool);
        ADD("/userns/mappings/pool-remembered", test_mappings_pool_remembered);
        ADD("/userns/mappings/pool-for-one-file", test_mappings_pool_for_one_file);
        ADD("/userns/mappings/pool-exhausted", test_mappings_pool_exhausted);
        ADD("/userns/mappings/pool-disabled", test_mappings_pool_disabled);
        ADD("/userns/mappings/checked", test_mappings_checked);
        ADD("/userns/subid-file-too-large", test_subid_file_too_large);
        ADD("/userns/allotments-corrupt", test_allotments_corrupt);
        return g_test_run();
}
