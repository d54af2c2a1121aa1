/* SPDX-License-Identifier: Apache-2.0 */
/* How `kiln config` turns its flags into the whole new values that Builder.Configure takes:
 * pure functions, no bus, unit-tested in test-config-merge.c. The rules follow `buildah config`. */
#pragma once

#include <stdbool.h>

#include <glib.h>

/* One setting of an ordered KEY=VALUE list (Env, Labels). */
typedef struct {
        char *key;
        char *value; /* NULL: an Env entry given without '=', passed on as it is */
} KilnPair;

/* A new, empty list of KilnPair, which owns its elements. */
GPtrArray *kiln_pairs_new(void);

/* Sets key to value in place if present, else appends it. */
void kiln_pairs_set(GPtrArray *pairs, const char *key, const char *value);
void kiln_pairs_unset(GPtrArray *pairs, const char *key);

/* "K=V" strings to pairs and back (split at the first '='). */
GPtrArray *kiln_pairs_from_env(char *const *env);
char **kiln_pairs_to_env(GPtrArray *pairs);

/* One --env argument: "K=V" adds or replaces K, "K-" removes K; anything else ("K") is appended
 * unchanged, so that the service rejects it with its own message. */
void kiln_env_apply(GPtrArray *env, const char *arg);

/* One --label argument: "K=V" adds or replaces K, "K-" removes K, "K" sets K to "". */
void kiln_labels_apply(GPtrArray *labels, const char *arg);

/* A new, empty list of strings, which owns its elements (Volumes, CapAdd, CapDrop, Ulimits). */
GPtrArray *kiln_list_new(char *const *initial);

/* One --volume/--cap-add/--cap-drop argument: appended unless already present; "X-" removes X when
 * X is present (buildah's rule for volumes). */
void kiln_list_apply(GPtrArray *list, const char *arg);

/* One --ulimit argument: "TYPE=SOFT[:HARD]" replaces the entry for TYPE or appends; "TYPE-" removes
 * the entry for TYPE when there is one; anything else is appended unless present. */
void kiln_ulimits_apply(GPtrArray *list, const char *arg);

/* A NULL-terminated copy of a list of strings. */
char **kiln_list_to_strv(GPtrArray *list);

typedef enum {
        KILN_COMMAND_ENTRYPOINT,
        KILN_COMMAND_CMD,
        KILN_COMMAND_SHELL,
        KILN_COMMAND_N_KINDS,
} KilnCommandKind;

/* --entrypoint/--cmd/--shell: a JSON array of strings is used as it is (exec form); a blank string
 * clears the value; otherwise entrypoint STR becomes ["/bin/sh", "-c", STR] and cmd or shell STR is
 * split into words as a shell would. */
bool kiln_parse_command(KilnCommandKind kind, const char *arg, char ***ret, GError **error);
