/* SPDX-License-Identifier: Apache-2.0 */
/* errors-bus.c: internal failures answer kiln's own error name with an id and no details; errors whose
 * message names kilnd's own directories lose those paths (I/O errors become internal ones); the others
 * keep their name and message. */
#include <glib.h>

#include "base/errors.h"

#define HIDDEN "/var/lib/kiln-test-state"

/* Maps @error, expecting the warning an internal failure logs; returns the reply's message. */
static char *map(GError *error, const char *expected_name, gboolean internal)
{
        _cleanup_(sd_bus_error_free) sd_bus_error bus_error = SD_BUS_ERROR_NULL;
        char *message;

        if (internal)
                g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "Internal error *");
        g_assert_cmpint(kiln_error_to_bus(error, &bus_error), <, 0);
        if (internal)
                g_test_assert_expected_messages();
        g_assert_cmpstr(bus_error.name, ==, expected_name);
        message = g_strdup(bus_error.message);
        g_error_free(error);
        return message;
}

static void test_internal(void)
{
        g_autofree char *a =
                map(g_error_new(KILN_ERROR, KILN_ERROR_CODE_FAILED, "Cannot create %s/x", HIDDEN),
                    KILN_ERROR_FAILED, TRUE);
        g_autofree char *b = map(g_error_new(G_IO_ERROR, G_IO_ERROR_FAILED, "open '/run/kiln/mounts/x'"),
                                 KILN_ERROR_FAILED, TRUE);
        g_autofree char *c = map(g_error_new(G_FILE_ERROR, G_FILE_ERROR_NOENT, "no /run/kiln/x"),
                                 KILN_ERROR_FAILED, TRUE);

        for (const char *const *m = (const char *const[]){a, b, c, NULL}; *m; m++) {
                g_assert_null(strchr(*m, '/'));
                g_assert_true(
                        g_regex_match_simple("^Internal error in kilnd \\(id [0-9a-f]{16};", *m, 0, 0));
        }
        g_assert_cmpstr(a, !=, b); /* each failure its own id */
}

static void test_hidden_paths(void)
{
        g_autofree char *a =
                map(g_error_new(G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "openat '%s/builders/x': gone", HIDDEN),
                    KILN_ERROR_FAILED, TRUE);
        g_autofree char *b = map(g_error_new(KILN_ERROR, KILN_ERROR_CODE_BUSY, "%s/y is busy", HIDDEN),
                                 KILN_ERROR_BUSY, FALSE);
        g_autofree char *c =
                map(g_error_new(KILN_ERROR, KILN_ERROR_CODE_RUNTIME_FAILED,
                                "open '%s/mounts/0123/etc/hosts': loop; SecureJoin %s/mounts/0123//x/, "
                                "%s/mounts/0123 and %s-other/z",
                                HIDDEN, HIDDEN, HIDDEN, HIDDEN),
                    KILN_ERROR_RUNTIME_FAILED, FALSE);

        g_assert_null(strstr(a, HIDDEN));
        g_assert_cmpstr(b, ==, "(kilnd's own file) is busy");
        /* Paths in a container's root read as the container knows them; a mere prefix is no match. */
        g_assert_cmpstr(c, ==, "open '/etc/hosts': loop; SecureJoin //x/, / and " HIDDEN "-other/z");
}

static void test_named(void)
{
        g_autofree char *a =
                map(g_error_new(KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid x: /etc"),
                    KILN_ERROR_INVALID_ARGUMENT, FALSE);
        g_autofree char *b = map(g_error_new(G_IO_ERROR, G_IO_ERROR_NO_SPACE, "capture limit"),
                                 KILN_ERROR_LIMIT_EXCEEDED, FALSE);
        g_autofree char *c = map(g_error_new(KILN_ERROR, KILN_ERROR_CODE_ACCESS_DENIED, "no"),
                                 SD_BUS_ERROR_ACCESS_DENIED, FALSE);

        g_assert_cmpstr(a, ==, "Invalid x: /etc");
        g_assert_cmpstr(b, ==, "capture limit");
        g_assert_cmpstr(c, ==, "no");
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        kiln_error_hide_paths_under(HIDDEN "//"); /* as a configuration may spell it */
        kiln_error_show_roots_under(HIDDEN "/mounts");
        g_test_add_func("/errors-bus/internal", test_internal);
        g_test_add_func("/errors-bus/hidden-paths", test_hidden_paths);
        g_test_add_func("/errors-bus/named", test_named);
        return g_test_run();
}
