/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the `kiln config` merging rules (config-merge.c). */
#include "config-merge.h"

static char *joined_env(GPtrArray *pairs)
{
        g_auto(GStrv) env = kiln_pairs_to_env(pairs);

        return g_strjoinv(" ", env);
}

static void test_env(void)
{
        const char *const current[] = {"PATH=/usr/bin", "A=1", "B=x=y", NULL};
        g_autoptr(GPtrArray) env = kiln_pairs_from_env((char *const *)current);
        g_autofree char *result = NULL;

        kiln_env_apply(env, "A=2");     /* replaces in place */
        kiln_env_apply(env, "C=");      /* adds an empty value */
        kiln_env_apply(env, "PATH-");   /* removes */
        kiln_env_apply(env, "NOPE-");   /* removing what is not there is no error */
        kiln_env_apply(env, "D=ends-"); /* '=' wins over a trailing '-' */
        kiln_env_apply(env, "BARE");    /* passed on unchanged for the service to judge */

        result = joined_env(env);
        g_assert_cmpstr(result, ==, "A=2 B=x=y C= D=ends- BARE");
}

static void test_labels(void)
{
        g_autoptr(GPtrArray) labels = kiln_pairs_new();
        KilnPair *pair;

        kiln_pairs_set(labels, "a", "1");
        kiln_pairs_set(labels, "b", "2");
        kiln_labels_apply(labels, "a=one");
        kiln_labels_apply(labels, "b-");
        kiln_labels_apply(labels, "flag");

        g_assert_cmpuint(labels->len, ==, 2);
        pair = g_ptr_array_index(labels, 0);
        g_assert_cmpstr(pair->key, ==, "a");
        g_assert_cmpstr(pair->value, ==, "one");
        pair = g_ptr_array_index(labels, 1);
        g_assert_cmpstr(pair->key, ==, "flag");
        g_assert_cmpstr(pair->value, ==, "");
}

static void test_lists(void)
{
        const char *const current[] = {"/data", "/cache", NULL};
        g_autoptr(GPtrArray) list = kiln_list_new((char *const *)current);
        g_auto(GStrv) strv = NULL;
        g_autofree char *joined = NULL;

        kiln_list_apply(list, "/data"); /* no duplicates */
        kiln_list_apply(list, "/logs");
        kiln_list_apply(list, "/cache-"); /* removes */
        kiln_list_apply(list, "/odd-");   /* not present: a path that happens to end in '-' */

        strv = kiln_list_to_strv(list);
        joined = g_strjoinv(" ", strv);
        g_assert_cmpstr(joined, ==, "/data /logs /odd-");
}

static void test_ulimits(void)
{
        const char *const current[] = {"nofile=1024:2048", "nproc=100", NULL};
        g_autoptr(GPtrArray) list = kiln_list_new((char *const *)current);
        g_auto(GStrv) strv = NULL;
        g_autofree char *joined = NULL;

        kiln_ulimits_apply(list, "nofile=4096"); /* replaces the entry for nofile */
        kiln_ulimits_apply(list, "nproc-");      /* removes */
        kiln_ulimits_apply(list, "core=0");
        kiln_ulimits_apply(list, "core=0");
        kiln_ulimits_apply(list, "junk"); /* for the service to reject */

        strv = kiln_list_to_strv(list);
        joined = g_strjoinv(" ", strv);
        g_assert_cmpstr(joined, ==, "nofile=4096 core=0 junk");
}

static void assert_command(KilnCommandKind kind, const char *arg, const char *const *expected)
{
        g_auto(GStrv) argv = NULL;
        g_autoptr(GError) error = NULL;

        g_assert_true(kiln_parse_command(kind, arg, &argv, &error));
        g_assert_no_error(error);
        g_assert_true(g_strv_equal((const char *const *)argv, expected));
}

static void test_commands(void)
{
        g_auto(GStrv) argv = NULL;
        g_autoptr(GError) error = NULL;

        assert_command(KILN_COMMAND_ENTRYPOINT, "[\"/bin/app\", \"--flag\"]",
                       (const char *const[]){"/bin/app", "--flag", NULL});
        assert_command(KILN_COMMAND_ENTRYPOINT, "app --flag 'a b'",
                       (const char *const[]){"/bin/sh", "-c", "app --flag 'a b'", NULL});
        assert_command(KILN_COMMAND_ENTRYPOINT, "  ", (const char *const[]){NULL});
        assert_command(KILN_COMMAND_CMD, "echo 'hello world'",
                       (const char *const[]){"echo", "hello world", NULL});
        assert_command(KILN_COMMAND_CMD, "[]", (const char *const[]){NULL});
        assert_command(KILN_COMMAND_CMD, "", (const char *const[]){NULL});
        /* Not an array of strings: shell form, as buildah does when JSON decoding fails. */
        assert_command(KILN_COMMAND_CMD, "[1]", (const char *const[]){"[1]", NULL});
        assert_command(KILN_COMMAND_SHELL, "/bin/bash -c", (const char *const[]){"/bin/bash", "-c", NULL});
        assert_command(KILN_COMMAND_SHELL, "[\"/bin/ash\",\"-c\"]",
                       (const char *const[]){"/bin/ash", "-c", NULL});

        g_assert_false(kiln_parse_command(KILN_COMMAND_CMD, "echo 'unterminated", &argv, &error));
        g_assert_nonnull(error);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);

        g_test_add_func("/cli/config-merge/env", test_env);
        g_test_add_func("/cli/config-merge/labels", test_labels);
        g_test_add_func("/cli/config-merge/lists", test_lists);
        g_test_add_func("/cli/config-merge/ulimits", test_ulimits);
        g_test_add_func("/cli/config-merge/commands", test_commands);

        return g_test_run();
}
