/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "base/audit.h"
#include "base/kiln-common.h"

#define JOURNAL_SOCKET "/run/systemd/journal/socket"

typedef struct {
        const char *key;
        char *value;
} Field;

/* The fields in a fixed order, those without a value left out; @argv is cut to its bound here, so
 * that neither the journal nor the log gets more than KILN_AUDIT_ARGV_MAX bytes of it. */
static GArray *record_fields(const KilnAuditRecord *r)
{
        GArray *fields = g_array_new(FALSE, FALSE, sizeof(Field));
        const struct {
                const char *key;
                const char *value;
        } plain[] = {{"MESSAGE", r->message},
                     {"MESSAGE_ID", r->message_id},
                     {"KILN_CALLER_NAME", r->caller_name},
                     {"KILN_BUILDER", r->builder},
                     {"KILN_WEAKENS", r->weakens},
                     {"KILN_ACTION", r->action},
                     {"KILN_RESULT", r->result}};
        Field f;

        for (size_t i = 0; i < G_N_ELEMENTS(plain); i++) {
                if (!plain[i].value)
                        continue;
                f = (Field){plain[i].key, g_strdup(plain[i].value)};
                g_array_append_val(fields, f);
                if (i == 1) {
                        f = (Field){"PRIORITY", g_strdup_printf("%d", r->priority)};
                        g_array_append_val(fields, f);
                        f = (Field){"KILN_CALLER_UID", g_strdup_printf("%u", (unsigned)r->caller_uid)};
                        g_array_append_val(fields, f);
                }
        }
        if (r->argv) {
                size_t len = strlen(r->argv);

                f = (Field){"KILN_ARGV", len > KILN_AUDIT_ARGV_MAX
                                                 ? g_strdup_printf("%.*s...", KILN_AUDIT_ARGV_MAX, r->argv)
                                                 : g_strdup(r->argv)};
                g_array_append_val(fields, f);
        }
        return fields;
}

static void fields_free(GArray *fields)
{
        for (guint i = 0; i < fields->len; i++)
                g_free(g_array_index(fields, Field, i).value);
        g_array_free(fields, TRUE);
}

char *kiln_audit_format_line(const KilnAuditRecord *record)
{
        GArray *fields = record_fields(record);
        GString *line = g_string_new("audit:");

        for (guint i = 0; i < fields->len; i++) {
                const Field *f = &g_array_index(fields, Field, i);
                /* Escaped, so that a command line with a newline or a quote cannot forge a second
                 * record or another field. */
                g_autofree char *escaped = g_strescape(f->value, NULL);

                g_string_append_printf(line, " %s=\"%s\"", f->key, escaped);
        }
        fields_free(fields);
        return g_string_free(line, FALSE);
}

static gboolean journal_present(void)
{
        static int present = -1;

        /* Decided once: a journal that appears later is not used, one that goes away makes
         * sd_journal_sendv fail and the record goes to the log. */
        if (present < 0)
                present = access(JOURNAL_SOCKET, F_OK) == 0;
        return present;
}

void kiln_audit_write(const KilnAuditRecord *record)
{
        g_autofree char *line = NULL;

        if (journal_present()) {
                GArray *fields = record_fields(record);
                g_autofree struct iovec *iov = g_new0(struct iovec, fields->len);
                g_autoptr(GPtrArray) strings = g_ptr_array_new_with_free_func(g_free);
                int r;

                for (guint i = 0; i < fields->len; i++) {
                        const Field *f = &g_array_index(fields, Field, i);
                        char *s = g_strconcat(f->key, "=", f->value, NULL);

                        g_ptr_array_add(strings, s);
                        iov[i] = (struct iovec){.iov_base = s, .iov_len = strlen(s)};
                }
                r = sd_journal_sendv(iov, (int)fields->len);
                fields_free(fields);
                if (r >= 0)
                        return;
                g_warning("Cannot write an audit record to the journal: %s", g_strerror(-r));
        }
        line = kiln_audit_format_line(record);
        g_message("%s", line);
}

void kiln_audit_run_weakened(uid_t caller_uid, const char *caller_name, const char *builder_id,
                             const char *const *argv, const char *weakens, const char *action)
{
        g_autofree char *command = argv ? g_strjoinv(" ", (char **)argv) : NULL;
        g_autofree char *message =
                g_strdup_printf("User %u runs a command in builder %s that weakens isolation: %s",
                                (unsigned)caller_uid, builder_id, weakens);
        KilnAuditRecord r = {
                .message_id = KILN_AUDIT_ID_RUN_WEAKENED,
                .message = message,
                .priority = LOG_NOTICE,
                .caller_uid = caller_uid,
                .caller_name = caller_name,
                .builder = builder_id,
                .argv = command,
                .weakens = weakens,
                .action = action,
                .result = "granted",
        };

        kiln_audit_write(&r);
}

void kiln_audit_refused(uid_t caller_uid, const char *caller_name, const char *builder, const char *command,
                        const char *weakens, const char *action)
{
        g_autofree char *message =
                g_strdup_printf("polkit refused %s to user %u", action, (unsigned)caller_uid);
        KilnAuditRecord r = {
                .message_id = KILN_AUDIT_ID_REFUSED,
                .message = message,
                .priority = LOG_WARNING,
                .caller_uid = caller_uid,
                .caller_name = caller_name,
                .builder = builder,
                .argv = command,
                .weakens = weakens,
                .action = action,
                .result = "refused",
        };

        kiln_audit_write(&r);
}

void kiln_audit_mount(uid_t caller_uid, const char *caller_name, const char *builder_id, const char *action)
{
        g_autofree char *message =
                g_strdup_printf("User %u mounts builder %s on the host", (unsigned)caller_uid, builder_id);
        KilnAuditRecord r = {
                .message_id = KILN_AUDIT_ID_MOUNT,
                .message = message,
                .priority = LOG_NOTICE,
                .caller_uid = caller_uid,
                .caller_name = caller_name,
                .builder = builder_id,
                .action = action,
                .result = "granted",
        };

        kiln_audit_write(&r);
}

void kiln_audit_removed_for_other(uid_t caller_uid, const char *caller_name, const char *builder_id,
                                  uid_t owner)
{
        g_autofree char *message = g_strdup_printf("User %u removes builder %s of user %u",
                                                   (unsigned)caller_uid, builder_id, (unsigned)owner);
        KilnAuditRecord r = {
                .message_id = KILN_AUDIT_ID_REMOVED_FOR_OTHER,
                .message = message,
                .priority = LOG_NOTICE,
                .caller_uid = caller_uid,
                .caller_name = caller_name,
                .builder = builder_id,
                .result = "granted",
        };

        kiln_audit_write(&r);
}
