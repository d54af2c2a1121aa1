/* SPDX-License-Identifier: Apache-2.0 */
/* The administrator's hooks.d directories ([Hooks] Directories), read for each run: the files that
 * parse, in the order their hooks are injected (spec/hooks.h has the format and the matching). */
#pragma once

#include "spec/hooks.h"

#define KILN_HOOKS_MAX_FILES 256 /* files read across all directories; more are logged and left out */

/* The *.json files of @dirs (increasing precedence: a later directory's file replaces an earlier
 * one's of the same name), sorted by their names in lower case, each parsed; a file that cannot be
 * opened, read or parsed is logged and skipped, as podman does. A missing directory is no error.
 * Never fails: a GPtrArray of KilnHookFile, possibly empty. */
GPtrArray *kiln_hooks_load(const char *const *dirs);

/* Appends to @hooks (of KilnHook) the hooks of @files that match @target, in order. */
void kiln_hooks_select(GPtrArray *files, const KilnHookTarget *target, GArray *hooks);
