/* SPDX-License-Identifier: Apache-2.0 */
/* Pure checks of caller-supplied values. Every function names the argument (@arg) and the reason
 * in its error; none touches the file system or any state. */
#pragma once

#include <glib.h>

#include "base/errors.h"

gboolean kiln_id_is_valid(const char *id);
gboolean kiln_validate_name(const char *arg, const char *name, GError **error);
gboolean kiln_validate_env_entry(const char *arg, const char *entry, GError **error);
gboolean kiln_validate_absolute_path(const char *arg, const char *path, gboolean allow_empty,
                                     GError **error);
gboolean kiln_validate_user_spec(const char *arg, const char *spec, GError **error);
gboolean kiln_validate_hostname(const char *arg, const char *hostname, GError **error);
gboolean kiln_validate_isolation(const char *arg, const char *value, GError **error);
gboolean kiln_validate_userns(const char *arg, const char *value, GError **error);
/* Accepts "ALL" or a capability name with or without the CAP_ prefix, any case; on success
 * *normalized is "ALL" or "CAP_NAME". */
gboolean kiln_validate_capability(const char *arg, const char *name, char **normalized, GError **error);
/* "name=soft[:hard]" with a known rlimit name; numbers or "unlimited"/-1. */
gboolean kiln_validate_ulimit(const char *arg, const char *spec, GError **error);
/* "SRC:DST[:OPTS]", both absolute, options from buildah's allow-list. */
gboolean kiln_validate_volume(const char *arg, const char *spec, GError **error);
gboolean kiln_validate_label_key(const char *arg, const char *key, GError **error);

/* Name a new builder as buildah does: "<base>-working-container", then "-2", "-3", ...
 * @taken says whether a name is in use. */
char *kiln_generate_builder_name(const char *from, gboolean (*taken)(const char *name, gpointer data),
                                 gpointer data);
