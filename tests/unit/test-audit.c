/* SPDX-License-Identifier: Apache-2.0 */
/* audit.c's log line: fields in a fixed order, unset ones left out, values escaped so that a command
 * line cannot end the line or forge a field, and KILN_ARGV bounded. */
#include <string.h>
#include <syslog.h>

#include "base/audit.h"

static void test_fields_in_order(void)
{
        KilnAuditRecord r = {
                .message_id = KILN_AUDIT_ID_RUN_WEAKENED,
                .message = "a run",
                .priority = LOG_NOTICE,
                .caller_uid = 1001,
                .caller_name = ":1.42",
                .builder = "abc",
                .argv = "sh -c true",
                .weakens = "network=host; cap_add CAP_SYS_ADMIN",
                .action = "org.kiln.builder1.run-privileged",
                .result = "granted",
        };
        g_autofree char *line = kiln_audit_format_line(&r);

        g_assert_cmpstr(line, ==,
                        "audit: MESSAGE=\"a run\" MESSAGE_ID=\"" KILN_AUDIT_ID_RUN_WEAKENED
                        "\" PRIORITY=\"5\" "
                        "KILN_CALLER_UID=\"1001\" KILN_CALLER_NAME=\":1.42\" KILN_BUILDER=\"abc\" "
                        "KILN_WEAKENS=\"network=host; cap_add CAP_SYS_ADMIN\" "
                        "KILN_ACTION=\"org.kiln.builder1.run-privileged\" KILN_RESULT=\"granted\" "
                        "KILN_ARGV=\"sh -c true\"");
}

static void test_unset_fields_are_left_out(void)
{
        KilnAuditRecord r = {.message_id = KILN_AUDIT_ID_MOUNT, .message = "m", .priority = LOG_NOTICE};
        g_autofree char *line = kiln_audit_format_line(&r);

        g_assert_cmpstr(line, ==,
                        "audit: MESSAGE=\"m\" MESSAGE_ID=\"" KILN_AUDIT_ID_MOUNT "\" PRIORITY=\"5\" "
                        "KILN_CALLER_UID=\"0\"");
}

static void test_hostile_argv_stays_one_field(void)
{
        KilnAuditRecord r = {.message_id = KILN_AUDIT_ID_REFUSED,
                             .message = "m",
                             .argv = "x\" KILN_RESULT=\"granted\nNEXT=\"\\"};
        g_autofree char *line = kiln_audit_format_line(&r);

        g_assert_null(strchr(line, '\n'));
        /* The quotes inside are escaped: the value ends with the line, one field. */
        g_assert_true(
                g_str_has_suffix(line, " KILN_ARGV=\"x\\\" KILN_RESULT=\\\"granted\\nNEXT=\\\"\\\\\""));
}

static void test_long_argv_is_cut(void)
{
        g_autofree char *argv = g_strnfill(KILN_AUDIT_ARGV_MAX * 4, 'a');
        KilnAuditRecord r = {.message_id = KILN_AUDIT_ID_REFUSED, .message = "m", .argv = argv};
        g_autofree char *line = kiln_audit_format_line(&r);
        const char *field = strstr(line, "KILN_ARGV=\"");
        g_autofree char *expected = g_strdup_printf("%.*s...\"", KILN_AUDIT_ARGV_MAX, argv);

        g_assert_nonnull(field);
        g_assert_cmpstr(field + strlen("KILN_ARGV=\""), ==, expected);
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/audit/fields-in-order", test_fields_in_order);
        g_test_add_func("/audit/unset-fields-are-left-out", test_unset_fields_are_left_out);
        g_test_add_func("/audit/hostile-argv-stays-one-field", test_hostile_argv_stays_one_field);
        g_test_add_func("/audit/long-argv-is-cut", test_long_argv_is_cut);
        return g_test_run();
}
