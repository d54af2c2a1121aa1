/* SPDX-License-Identifier: Apache-2.0 */
/* OCI hooks configured by the administrator: the containers-common hooks.d format (oci-hooks(5),
 * schema "1.0.0"), parsed and matched without I/O. Reading the directories is run/run-hooks.c's.
 *
 *   {"version": "1.0.0",
 *    "hook": {"path": "/abs", "args": ["argv0", ...], "env": ["N=V", ...], "timeout": 5},
 *    "when": {"always": true, "annotations": {"KEY-ERE": "VALUE-ERE"}, "commands": ["ERE", ...],
 *             "hasBindMounts": true},
 *    "stages": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart",
 *               "poststop"]}
 *
 * A hook is injected when every condition `when` sets matches (at least one must be set):
 * `always` is true; for every annotations pair some annotation's key and value match both; argv[0]
 * matches one of `commands`; `hasBindMounts` is true and the run has a caller's bind mount. The
 * expressions are POSIX extended ones (regcomp), unanchored, as containers-common's. The deprecated
 * 0.1.0 schema is not read. What the conditions look at (annotations, the command, the mounts) is
 * the caller's: they choose which of the administrator's hooks run, never what runs. */
#pragma once

#include "spec/spec.h"

#define KILN_HOOK_FILE_MAX_BYTES (64 * 1024) /* a larger hooks.d file is refused */
#define KILN_HOOK_MAX_STRINGS 128            /* args, env, commands, annotations each */
#define KILN_HOOK_MAX_TIMEOUT 3600           /* seconds */
#define KILN_HOOK_REGEX_MAX_BYTES 1024       /* one expression */
#define KILN_HOOK_REGEX_MAX_REPEAT 1000      /* {m,n}: Go's regexp (containers-common's) stops there too */
#define KILN_HOOK_REGEX_MAX_NODES 10000      /* an expression's size once regcomp copied its repetitions */
#define KILN_HOOK_REGEX_MAX_NESTED 3         /* repetitions of repetitions ("(a+)*": 2) */

typedef struct KilnHookFile KilnHookFile;

/* One hooks.d file's contents (@length bytes, no NUL needed). Errors name the member
 * ("when.commands[1]: ..."), code InvalidArgument. */
KilnHookFile *kiln_hook_file_parse(const char *data, gsize length, GError **error);
void kiln_hook_file_free(KilnHookFile *file);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(KilnHookFile, kiln_hook_file_free)

/* What a run shows the conditions. */
typedef struct KilnHookTarget {
        const char *const *annotations; /* "key=value" */
        const char *command;            /* process.args[0] */
        gboolean has_bind_mounts;       /* a bind mount the caller asked for (volumes, --mount) */
} KilnHookTarget;

gboolean kiln_hook_file_matches(const KilnHookFile *file, const KilnHookTarget *target);

/* Appends to @hooks (of KilnHook) one entry per stage of @file, pointing into @file: valid while
 * @file lives. */
void kiln_hook_file_add(const KilnHookFile *file, GArray *hooks);
