/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "config-merge.h"
#include "json-module.h"

static void pair_free(KilnPair *pair)
{
        g_free(pair->key);
        g_free(pair->value);
        g_free(pair);
}

GPtrArray *kiln_pairs_new(void)
{
        return g_ptr_array_new_with_free_func((GDestroyNotify)pair_free);
}

static KilnPair *pairs_find(GPtrArray *pairs, const char *key, guint *ret_index)
{
        for (guint i = 0; i < pairs->len; i++) {
                KilnPair *pair = g_ptr_array_index(pairs, i);

                if (g_str_equal(pair->key, key)) {
                        if (ret_index)
                                *ret_index = i;
                        return pair;
                }
        }
        return NULL;
}

void kiln_pairs_set(GPtrArray *pairs, const char *key, const char *value)
{
        KilnPair *pair = pairs_find(pairs, key, NULL);

        if (!pair) {
                pair = g_new0(KilnPair, 1);
                pair->key = g_strdup(key);
                g_ptr_array_add(pairs, pair);
        }
        g_free(pair->value);
        pair->value = g_strdup(value);
}

void kiln_pairs_unset(GPtrArray *pairs, const char *key)
{
        guint index;

        if (pairs_find(pairs, key, &index))
                g_ptr_array_remove_index(pairs, index);
}

/* Splits "K=V" at the first '='; without one, key is the whole string and value NULL. */
static void split_assignment(const char *s, char **ret_key, char **ret_value)
{
        const char *eq = strchr(s, '=');

        *ret_key = eq ? g_strndup(s, eq - s) : g_strdup(s);
        *ret_value = eq ? g_strdup(eq + 1) : NULL;
}

GPtrArray *kiln_pairs_from_env(char *const *env)
{
        GPtrArray *pairs = kiln_pairs_new();

        for (char *const *e = env; e && *e; e++) {
                KilnPair *pair = g_new0(KilnPair, 1);

                split_assignment(*e, &pair->key, &pair->value);
                g_ptr_array_add(pairs, pair);
        }
        return pairs;
}

char **kiln_pairs_to_env(GPtrArray *pairs)
{
        char **env = g_new0(char *, pairs->len + 1);

        for (guint i = 0; i < pairs->len; i++) {
                KilnPair *pair = g_ptr_array_index(pairs, i);

                env[i] = pair->value ? g_strconcat(pair->key, "=", pair->value, NULL) : g_strdup(pair->key);
        }
        return env;
}

/* The common part of --env and --label: "K=V" sets, "K-" unsets. Returns false for anything else. */
static bool assignment_apply(GPtrArray *pairs, const char *arg)
{
        g_autofree char *key = NULL, *value = NULL;

        split_assignment(arg, &key, &value);
        if (value) {
                kiln_pairs_set(pairs, key, value);
                return true;
        }
        if (g_str_has_suffix(arg, "-")) {
                key[strlen(key) - 1] = '\0';
                kiln_pairs_unset(pairs, key);
                return true;
        }
        return false;
}

void kiln_env_apply(GPtrArray *env, const char *arg)
{
        KilnPair *pair;

        if (assignment_apply(env, arg))
                return;

        /* Not ours to judge: an entry without '=' goes to the service as given. */
        pair = g_new0(KilnPair, 1);
        pair->key = g_strdup(arg);
        g_ptr_array_add(env, pair);
}

void kiln_labels_apply(GPtrArray *labels, const char *arg)
{
        if (!assignment_apply(labels, arg))
                kiln_pairs_set(labels, arg, "");
}

GPtrArray *kiln_list_new(char *const *initial)
{
        GPtrArray *list = g_ptr_array_new_with_free_func(g_free);

        for (char *const *s = initial; s && *s; s++)
                g_ptr_array_add(list, g_strdup(*s));
        return list;
}

static bool list_find(GPtrArray *list, const char *item, guint *ret_index)
{
        return g_ptr_array_find_with_equal_func(list, item, g_str_equal, ret_index);
}

static void list_append_unique(GPtrArray *list, const char *item)
{
        if (!list_find(list, item, NULL))
                g_ptr_array_add(list, g_strdup(item));
}

void kiln_list_apply(GPtrArray *list, const char *arg)
{
        if (g_str_has_suffix(arg, "-")) {
                g_autofree char *item = g_strndup(arg, strlen(arg) - 1);
                guint index;

                if (list_find(list, item, &index)) {
                        g_ptr_array_remove_index(list, index);
                        return;
                }
        }
        list_append_unique(list, arg);
}

/* The index of the ulimit entry for resource `type` ("nofile" in "nofile=1024:2048"), or -1. */
static int ulimit_find(GPtrArray *list, const char *type)
{
        size_t n = strlen(type);

        for (guint i = 0; i < list->len; i++) {
                const char *entry = g_ptr_array_index(list, i);

                if (strncmp(entry, type, n) == 0 && entry[n] == '=')
                        return (int)i;
        }
        return -1;
}

void kiln_ulimits_apply(GPtrArray *list, const char *arg)
{
        const char *eq = strchr(arg, '=');
        g_autofree char *type = NULL;
        int index;

        if (eq) {
                type = g_strndup(arg, eq - arg);
                index = ulimit_find(list, type);
                if (index >= 0) {
                        g_free(list->pdata[index]);
                        list->pdata[index] = g_strdup(arg);
                } else
                        g_ptr_array_add(list, g_strdup(arg));
                return;
        }

        if (g_str_has_suffix(arg, "-")) {
                type = g_strndup(arg, strlen(arg) - 1);
                index = ulimit_find(list, type);
                if (index >= 0) {
                        g_ptr_array_remove_index(list, index);
                        return;
                }
        }
        list_append_unique(list, arg);
}

char **kiln_list_to_strv(GPtrArray *list)
{
        char **strv = g_new0(char *, list->len + 1);

        for (guint i = 0; i < list->len; i++)
                strv[i] = g_strdup(g_ptr_array_index(list, i));
        return strv;
}

/* *ret: arg as a JSON array of strings ("exec form"), or NULL if it is anything else. Only text that
 * could be one loads the JSON module; when that cannot be loaded, the command is not guessed at. */
static bool parse_exec_form(const char *stripped, const char *arg, char ***ret, GError **error)
{
        const KilnCliJson *json;

        *ret = NULL;
        if (stripped[0] != '[')
                return true;
        json = kiln_cli_json();
        if (!json) {
                g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                            "a command in exec form (a JSON array) needs JSON support, which is missing");
                return false;
        }
        *ret = json->parse_string_array(arg);
        return true;
}

bool kiln_parse_command(KilnCommandKind kind, const char *arg, char ***ret, GError **error)
{
        g_autofree char *stripped = g_strstrip(g_strdup(arg));
        char **argv;

        if (stripped[0] == '\0') {
                *ret = g_new0(char *, 1);
                return true;
        }

        if (!parse_exec_form(stripped, arg, &argv, error))
                return false;
        if (argv) {
                *ret = argv;
                return true;
        }

        if (kind == KILN_COMMAND_ENTRYPOINT) {
                *ret = g_strdupv((char *[]){(char *)"/bin/sh", (char *)"-c", (char *)arg, NULL});
                return true;
        }

        return g_shell_parse_argv(arg, NULL, ret, error);
}
