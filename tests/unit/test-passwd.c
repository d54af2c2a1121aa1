/* SPDX-License-Identifier: Apache-2.0 */
/* kiln's /etc/passwd and /etc/group reader: the files backend's format, hostile input included. */
#include <string.h>

#include "base/kiln-common.h"
#include "base/passwd.h"

static const char passwd[] = "# a comment line\n"
                             "\n"
                             "root:x:0:0:root:/root:/bin/bash\n"
                             "   \n"
                             "+nisuser:x:300:300::/nis:/bin/sh\n"
                             "short:x:5\n"
                             "nohome:x:1001:1001\n"
                             "emptyhome:x:1002:1002:::/bin/sh\n"
                             "badnum:x:12a:1:::\n"
                             "neg:x:-1:1:::\n"
                             "minusone:x:4294967295:1:::\n"
                             "huge:x:99999999999:1:::\n"
                             ":x:77:77:::\n"
                             "builder:x:1000:1000:Builder,,,:/home/builder:/bin/bash\n"
                             "builder:x:2000:2000:second entry:/second:/bin/sh\n"
                             "crlf:x:1003:1003::/home/crlf:/bin/sh\r\n"
                             "last:x:1004:1004::/home/last:/bin/sh"; /* no final newline */

static const char group[] = "root:x:0:\n"
                            "# comment\n"
                            "wheel:x:10:root,builder\n"
                            "users:x:100:builder\n"
                            "tty:x:5:\n"
                            "lookalike:x:200:builderx,xbuilder,build\n"
                            "spaced:x:201: builder\n"
                            "short:x\n"
                            "badgid:x:abc:builder\n"
                            "builder:x:1000:\n"
                            "dup:x:10:builder\n";

static void test_find(void)
{
        g_auto(KilnPasswdEntry) e = {0};
        g_auto(KilnPasswdEntry) f = {0};
        g_auto(KilnPasswdEntry) g = {0};
        guint32 gid;

        g_assert_true(kiln_passwd_find_by_name(passwd, sizeof(passwd) - 1, "builder", &e));
        /* the first matching line wins */
        g_assert_cmpuint(e.uid, ==, 1000);
        g_assert_cmpuint(e.gid, ==, 1000);
        g_assert_cmpstr(e.home, ==, "/home/builder");
        kiln_passwd_entry_clear(&e);

        g_assert_true(kiln_passwd_find_by_uid(passwd, sizeof(passwd) - 1, 1001, &e));
        g_assert_cmpstr(e.name, ==, "nohome");
        g_assert_cmpstr(e.home, ==, "/"); /* missing field */
        g_assert_true(kiln_passwd_find_by_name(passwd, sizeof(passwd) - 1, "emptyhome", &f));
        g_assert_cmpstr(f.home, ==, "/"); /* empty field */
        g_assert_true(kiln_passwd_find_by_name(passwd, sizeof(passwd) - 1, "crlf", &g));
        g_assert_cmpstr(g.home, ==, "/home/crlf");
        kiln_passwd_entry_clear(&g);
        g_assert_true(kiln_passwd_find_by_name(passwd, sizeof(passwd) - 1, "last", &g));
        g_assert_cmpuint(g.uid, ==, 1004);

        /* skipped lines: NIS compat, too few fields, bad numbers, (uid_t)-1, empty names */
        {
                static const char *const skipped[] = {
                        "+nisuser", "nisuser", "short", "badnum",           "neg",
                        "minusone", "huge",    "",      "# a comment line", NULL};
                for (const char *const *n = skipped; *n; n++) {
                        g_auto(KilnPasswdEntry) x = {0};
                        g_assert_false(kiln_passwd_find_by_name(passwd, sizeof(passwd) - 1, *n, &x));
                }
        }
        {
                g_auto(KilnPasswdEntry) x = {0};
                g_assert_false(kiln_passwd_find_by_uid(passwd, sizeof(passwd) - 1, 77, &x));
                g_assert_false(kiln_passwd_find_by_uid(passwd, sizeof(passwd) - 1, 300, &x));
        }

        g_assert_true(kiln_group_find_by_name(group, sizeof(group) - 1, "users", &gid));
        g_assert_cmpuint(gid, ==, 100);
        g_assert_false(kiln_group_find_by_name(group, sizeof(group) - 1, "short", &gid));
        g_assert_false(kiln_group_find_by_name(group, sizeof(group) - 1, "badgid", &gid));
        g_assert_false(kiln_group_find_by_name(group, sizeof(group) - 1, "comment", &gid));
        g_assert_false(kiln_group_find_by_name(NULL, 0, "users", &gid));
}

static void test_parse_id(void)
{
        guint32 id;

        g_assert_true(kiln_parse_id("0", 1, &id));
        g_assert_cmpuint(id, ==, 0);
        g_assert_true(kiln_parse_id("4294967294", 10, &id));
        g_assert_cmpuint(id, ==, 4294967294u);
        g_assert_false(kiln_parse_id("4294967295", 10, &id));
        g_assert_false(kiln_parse_id("", 0, &id));
        g_assert_false(kiln_parse_id("+1", 2, &id));
        g_assert_false(kiln_parse_id(" 1", 2, &id));
        g_assert_false(kiln_parse_id("12345678901", 11, &id));
        /* bounded by the length, not by a NUL */
        g_assert_true(kiln_parse_id("12x", 2, &id));
        g_assert_cmpuint(id, ==, 12);
}

static void assert_gids(GArray *gids, const guint32 *expected, gsize n)
{
        g_assert_cmpuint(gids->len, ==, n);
        for (gsize i = 0; i < n; i++)
                g_assert_cmpuint(g_array_index(gids, guint32, i), ==, expected[i]);
}

typedef struct {
        const char *spec;
        guint32 uid, gid;
        const char *home;
        guint32 gids[4];
        gsize n_gids;
} ResolveCase;

static void test_resolve(void)
{
        static const ResolveCase cases[] = {
                /* groups listing the user by name, after the primary gid, once each */
                {"builder", 1000, 1000, "/home/builder", {1000, 10, 100}, 3},
                {"1000", 1000, 1000, "/home/builder", {1000, 10, 100}, 3},
                /* an explicit group is exactly that group */
                {"builder:users", 1000, 100, "/home/builder", {100}, 1},
                {"builder:0", 1000, 0, "/home/builder", {0}, 1},
                {"1000:4242", 1000, 4242, "/home/builder", {4242}, 1},
                /* a numeric uid not in passwd: gid 0 unless given, home / */
                {"4242", 4242, 0, "/", {0}, 1},
                {"4242:4242", 4242, 4242, "/", {4242}, 1},
                {"4242:wheel", 4242, 10, "/", {10}, 1},
                /* empty: root */
                {"", 0, 0, "/root", {0, 10}, 2},
                {"root", 0, 0, "/root", {0, 10}, 2},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GArray) gids = NULL;
                g_autofree char *home = NULL;
                guint32 uid = 1, gid = 1;

                g_test_message("user '%s'", cases[i].spec);
                g_assert_true(kiln_resolve_user(cases[i].spec, passwd, sizeof(passwd) - 1, group,
                                                sizeof(group) - 1, &uid, &gid, &gids, &home, &error));
                g_assert_no_error(error);
                g_assert_cmpuint(uid, ==, cases[i].uid);
                g_assert_cmpuint(gid, ==, cases[i].gid);
                g_assert_cmpstr(home, ==, cases[i].home);
                assert_gids(gids, cases[i].gids, cases[i].n_gids);
        }
}

static void test_resolve_errors(void)
{
        static const struct {
                const char *spec;
                const char *named;
        } cases[] = {
                {"nobody-here", "'nobody-here'"},
                {"builder:nogroup", "'nogroup'"},
                {"short", "'short'"},
                {"+nisuser", "'+nisuser'"},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autoptr(GError) error = NULL;
                g_autoptr(GArray) gids = NULL;
                g_autofree char *home = NULL;
                guint32 uid, gid;

                g_assert_false(kiln_resolve_user(cases[i].spec, passwd, sizeof(passwd) - 1, group,
                                                 sizeof(group) - 1, &uid, &gid, &gids, &home, &error));
                g_assert_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT);
                g_assert_nonnull(strstr(error->message, cases[i].named));
                g_assert_nonnull(strstr(error->message, "user"));
        }
}

static void test_no_files(void)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GArray) gids = NULL;
        g_autofree char *home = NULL;
        guint32 uid, gid;

        /* a root file system without /etc/passwd or /etc/group: numbers work, names do not */
        g_assert_true(kiln_resolve_user("0", NULL, 0, NULL, 0, &uid, &gid, &gids, &home, &error));
        g_assert_cmpuint(uid, ==, 0);
        g_assert_cmpstr(home, ==, "/");
        g_assert_false(kiln_resolve_user("root", NULL, 0, NULL, 0, &uid, &gid, &gids, &home, &error));
        g_assert_nonnull(strstr(error->message, "'root'"));
}

static void test_bounds(void)
{
        g_autoptr(GString) big = g_string_new(NULL);
        g_autoptr(GString) groups = g_string_new(NULL);
        g_autoptr(GArray) gids = g_array_new(FALSE, FALSE, sizeof(guint32));
        g_auto(KilnPasswdEntry) e = {0};
        static const char with_nul[] = "a:x:1:1::/a:/bin/sh\nb:x:2:2::/b\0x:/bin/sh\nc:x:3:3::/c:/bin/sh\n";
        static const char cut[] = "a:x:1:1::/a:/bin/sh\nb:x:2:2::/b:/bin/sh\n";

        /* a line longer than the bound is skipped, and the next line still read */
        g_string_append(big, "long:x:1:1:");
        for (int i = 0; i < KILN_PASSWD_MAX_LINE; i++)
                g_string_append_c(big, 'g');
        g_string_append(big, ":/home/long:/bin/sh\nafter:x:2:2::/after:/bin/sh\n");
        g_assert_false(kiln_passwd_find_by_name(big->str, big->len, "long", &e));
        g_assert_true(kiln_passwd_find_by_name(big->str, big->len, "after", &e));
        kiln_passwd_entry_clear(&e);

        /* a line holding a NUL byte is skipped; the others are read past it */
        g_assert_false(kiln_passwd_find_by_name(with_nul, sizeof(with_nul) - 1, "b", &e));
        g_assert_true(kiln_passwd_find_by_name(with_nul, sizeof(with_nul) - 1, "c", &e));
        kiln_passwd_entry_clear(&e);

        /* nothing is read past the length given */
        g_assert_false(kiln_passwd_find_by_name(cut, 20, "b", &e));
        g_assert_true(kiln_passwd_find_by_name(cut, 20, "a", &e));
        kiln_passwd_entry_clear(&e);

        /* supplementary groups stop at the kernel's limit, and a long file stays fast */
        for (guint i = 1; i <= KILN_MAX_ADDITIONAL_GIDS + 100; i++)
                g_string_append_printf(groups, "g%u:x:%u:other,builder\n", i, i);
        kiln_group_add_memberships(groups->str, groups->len, "builder", gids);
        g_assert_cmpuint(gids->len, ==, KILN_MAX_ADDITIONAL_GIDS);
        g_assert_cmpuint(g_array_index(gids, guint32, 0), ==, 1);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/passwd/find", test_find);
        g_test_add_func("/passwd/parse-id", test_parse_id);
        g_test_add_func("/passwd/resolve", test_resolve);
        g_test_add_func("/passwd/resolve-errors", test_resolve_errors);
        g_test_add_func("/passwd/no-files", test_no_files);
        g_test_add_func("/passwd/bounds", test_bounds);
        return g_test_run();
}
