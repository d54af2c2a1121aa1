/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records: who did what that an administrator wants to find later, one structured journal
 * entry each (docs/decisions.md, kilnd(8) AUDIT): a run that weakens isolation, polkit refusing a
 * caller, a Mount, and a builder removed by someone other than its owner. Where no journal runs
 * (its socket is absent when the first record is written) the record is one line of kilnd's log
 * instead, the same fields as KEY="value" pairs. */
#pragma once

#include <sys/types.h>

#include <glib.h>

/* The MESSAGE_IDs (fixed; documented in kilnd(8)). */
#define KILN_AUDIT_ID_RUN_WEAKENED "eede1a6274ef408789e0315eb32d6dc6"
#define KILN_AUDIT_ID_REFUSED "ff73b402832d4fdda488d1973887e512"
#define KILN_AUDIT_ID_MOUNT "1bc7d05dbb3a4173ac17f48160de99fd"
#define KILN_AUDIT_ID_REMOVED_FOR_OTHER "0496fa5132334e338857a4afaf33ecbd"

/* The longest KILN_ARGV kept, in bytes; a longer command line is cut and ends in "...". */
#define KILN_AUDIT_ARGV_MAX 1024

typedef struct {
        const char *message_id;
        const char *message;
        int priority; /* syslog's LOG_* */
        uid_t caller_uid;
        const char *caller_name; /* the caller's unique bus name */
        const char *builder;     /* the builder's id (in a refusal: the name polkit was shown) */
        const char *argv;        /* joined with spaces; cut to KILN_AUDIT_ARGV_MAX */
        const char *weakens;     /* the reasons, joined with "; " */
        const char *action;      /* the polkit action */
        const char *result;      /* "granted" or "refused" */
} KilnAuditRecord;

/* The fallback log line: KEY="value" pairs (values C-escaped, so the line stays one line), the
 * fields that are NULL left out. Pure: exposed for tests. */
char *kiln_audit_format_line(const KilnAuditRecord *record);

/* Writes @record to the journal, or to kilnd's log where there is none. */
void kiln_audit_write(const KilnAuditRecord *record);

/* The four kinds, one call at each place that knows the outcome. @argv may be NULL. */
void kiln_audit_run_weakened(uid_t caller_uid, const char *caller_name, const char *builder_id,
                             const char *const *argv, const char *weakens, const char *action);
void kiln_audit_refused(uid_t caller_uid, const char *caller_name, const char *builder, const char *command,
                        const char *weakens, const char *action);
void kiln_audit_mount(uid_t caller_uid, const char *caller_name, const char *builder_id, const char *action);
void kiln_audit_removed_for_other(uid_t caller_uid, const char *caller_name, const char *builder_id,
                                  uid_t owner);
