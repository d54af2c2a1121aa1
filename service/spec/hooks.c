/* SPDX-License-Identifier: Apache-2.0 */
/* hooks.d files (hooks.h): parsed whole with json-glib, every expression compiled once, then matched
 * against a run without any I/O. */
#include <regex.h>
#include <string.h>

#include "spec/hooks.h"

/* Deeper than any hooks.d file needs; json-glib's parser recurses per level. */
#define MAX_DEPTH 16
#define REGEX_MAX_GROUP_DEPTH 64

typedef struct {
        regex_t key;
        regex_t value;
} AnnotationPattern;

struct KilnHookFile {
        char *path;
        char **args; /* NULL: none given */
        char **env;  /* NULL: none given */
        int timeout;
        const char **stages; /* static names, each once, NULL-ended */

        /* when: each set condition must match */
        int always;          /* -1: not set */
        int has_bind_mounts; /* -1: not set */
        AnnotationPattern *annotations;
        gsize n_annotations;
        regex_t *commands;
        gsize n_commands;
};

void kiln_hook_file_free(KilnHookFile *file)
{
        if (!file)
                return;
        g_free(file->path);
        g_strfreev(file->args);
        g_strfreev(file->env);
        g_free(file->stages);
        for (gsize i = 0; i < file->n_annotations; i++) {
                regfree(&file->annotations[i].key);
                regfree(&file->annotations[i].value);
        }
        g_free(file->annotations);
        for (gsize i = 0; i < file->n_commands; i++)
                regfree(&file->commands[i]);
        g_free(file->commands);
        g_free(file);
}

static gboolean bad(GError **error, const char *member, const char *what)
{
        return kiln_invalid(error, member, "%s", what);
}

/* The nesting depth of @data, outside strings: bounded before json-glib recurses through it. */
static gboolean depth_ok(const char *data, gsize length)
{
        int depth = 0;
        gboolean in_string = FALSE;

        for (gsize i = 0; i < length; i++) {
                char c = data[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = FALSE;
                } else if (c == '"') {
                        in_string = TRUE;
                } else if (c == '[' || c == '{') {
                        if (++depth > MAX_DEPTH)
                                return FALSE;
                } else if (c == ']' || c == '}') {
                        depth--;
                }
        }
        return TRUE;
}

/* A JSON array of strings (each without NUL, at most KILN_HOOK_MAX_STRINGS) as a strv. */
static gboolean read_strings(JsonObject *o, const char *name, const char *member, char ***out,
                             GError **error)
{
        JsonNode *node = json_object_get_member(o, name);
        g_autoptr(GStrvBuilder) b = g_strv_builder_new();
        JsonArray *a;
        guint n;

        *out = NULL;
        if (!node || JSON_NODE_HOLDS_NULL(node))
                return TRUE;
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return bad(error, member, "not an array of strings");
        a = json_node_get_array(node);
        n = json_array_get_length(a);
        if (n > KILN_HOOK_MAX_STRINGS)
                return kiln_invalid(error, member, "more than %d entries", KILN_HOOK_MAX_STRINGS);
        for (guint i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(a, i);
                if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING)
                        return kiln_invalid(error, member, "entry %u is not a string", i);
                g_strv_builder_add(b, json_node_get_string(e));
        }
        *out = g_strv_builder_end(b);
        return TRUE;
}

/* An optional boolean: -1 when absent. */
static gboolean read_bool(JsonObject *o, const char *name, const char *member, int *out, GError **error)
{
        JsonNode *node = json_object_get_member(o, name);

        *out = -1;
        if (!node || JSON_NODE_HOLDS_NULL(node))
                return TRUE;
        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_BOOLEAN)
                return bad(error, member, "not a boolean");
        *out = json_node_get_boolean(node) ? 1 : 0;
        return TRUE;
}

/* An interval's bounds at @s (just after '{'): "m", "m,", "m,n" or ",n" then '}'. Returns the end (after
 * '}') with *copies = how many copies of its operand regcomp makes, or NULL when it is no interval (then
 * '{' is an ordinary character) or *too_big when a bound passes KILN_HOOK_REGEX_MAX_REPEAT. */
static const char *interval(const char *s, guint64 *copies, gboolean *too_big)
{
        guint64 bound[2] = {0, 0};
        gboolean comma = FALSE, digits = FALSE;

        for (; *s != '}'; s++) {
                if (*s == ',' && !comma) {
                        comma = TRUE;
                } else if (g_ascii_isdigit(*s)) {
                        bound[comma] = bound[comma] * 10 + (guint64)(*s - '0');
                        digits = TRUE;
                        if (bound[comma] > KILN_HOOK_REGEX_MAX_REPEAT) {
                                *too_big = TRUE;
                                return NULL;
                        }
                } else {
                        return NULL;
                }
        }
        if (!digits)
                return NULL;
        /* "{m}": m copies; "{m,}": m and a starred one; "{m,n}", "{,n}": n. */
        *copies = MAX(1, !comma ? bound[0] : bound[1] ? bound[1] : bound[0] + 1);
        return s + 1;
}

/* glibc's regcomp copies what a repetition applies to ("x+" becomes "xx*", "x{2,5}" five copies of x), so
 * nested repetitions multiply: "e" and forty '+' (found by fuzz-hooks) asked for 2^40 copies and took all
 * of kilnd's memory. The expression is walked once, each atom counted, each group's count multiplied by
 * what its repetition copies; past KILN_HOOK_REGEX_MAX_NODES it is refused before regcomp sees it. A
 * bracket expression counts as one. Repetitions of repetitions cost more than their size: regcomp's
 * closure of the empty transitions grows about fivefold with each ("e+?" and eleven '+', 4,096 nodes:
 * 2.9 s, found by fuzz-hooks too), so past KILN_HOOK_REGEX_MAX_NESTED of them an expression is refused as
 * well. Syntax errors are left to regcomp. */
static gboolean regex_bounded(const char *pattern, const char **why)
{
        guint64 frame[REGEX_MAX_GROUP_DEPTH + 1] = {0}; /* the size of each open group */
        int nested[REGEX_MAX_GROUP_DEPTH + 1] = {0};    /* the deepest repetition in each open group */
        guint64 last = 0;    /* the operand a repetition here would copy; 0: none */
        int last_nested = 0; /* the repetitions that operand holds */
        int depth = 0;

        *why = NULL;
        if (strlen(pattern) > KILN_HOOK_REGEX_MAX_BYTES)
                *why = "longer than " G_STRINGIFY(KILN_HOOK_REGEX_MAX_BYTES) " bytes";
        for (const char *s = pattern; *s && !*why;) {
                guint64 copies = 0;
                gboolean too_big = FALSE;
                const char *end = NULL;

                if (*s == '*' || *s == '?')
                        copies = 1, end = s + 1;
                else if (*s == '+')
                        copies = 2, end = s + 1;
                else if (*s == '{')
                        end = interval(s + 1, &copies, &too_big);
                if (too_big) {
                        *why = "a repetition count above " G_STRINGIFY(KILN_HOOK_REGEX_MAX_REPEAT);
                } else if (end && last && last_nested >= KILN_HOOK_REGEX_MAX_NESTED) {
                        *why = "repetitions nested more than " G_STRINGIFY(
                                KILN_HOOK_REGEX_MAX_NESTED) " deep";
                } else if (end && last) {
                        /* The operand is counted once already; its copies replace it. */
                        frame[depth] += last * (copies - 1);
                        last *= copies;
                        last_nested++;
                        nested[depth] = MAX(nested[depth], last_nested);
                        s = end;
                } else if (end) {
                        s = end; /* a repetition of nothing: regcomp's to refuse or take literally */
                } else if (*s == '(' && depth == REGEX_MAX_GROUP_DEPTH) {
                        *why = "groups nested deeper than " G_STRINGIFY(REGEX_MAX_GROUP_DEPTH);
                } else if (*s == '(') {
                        frame[++depth] = 0;
                        nested[depth] = 0;
                        last = 0;
                        s++;
                } else if (*s == ')' && depth > 0) {
                        last = frame[depth] + 1;
                        last_nested = nested[depth--];
                        frame[depth] += last;
                        nested[depth] = MAX(nested[depth], last_nested);
                        s++;
                } else if (*s == '|' || *s == '^' || *s == '$') {
                        last = 0;
                        s++;
                } else {
                        if (*s == '[') {
                                /* To its closing ']': a ']' first is a member, so are [:class:] and kin. */
                                s += s[1] == '^' ? 2 : 1;
                                s += *s == ']';
                                while (*s && *s != ']') {
                                        const char *close = NULL;
                                        if (*s == '[' && (s[1] == ':' || s[1] == '.' || s[1] == '='))
                                                close = strstr(s + 2, s[1] == ':'   ? ":]"
                                                                      : s[1] == '.' ? ".]"
                                                                                    : "=]");
                                        s = close ? close + 2 : s + 1;
                                }
                        } else if (*s == '\\' && s[1]) {
                                s++;
                        }
                        if (*s)
                                s++;
                        last = 1;
                        last_nested = 0;
                        frame[depth] += 1;
                }
                if (frame[depth] > KILN_HOOK_REGEX_MAX_NODES)
                        *why = "too large once its repetitions are expanded";
        }
        return *why == NULL;
}

static gboolean compile(regex_t *re, const char *pattern, const char *member, GError **error)
{
        char message[128];
        const char *why = NULL;
        int r;

        if (!regex_bounded(pattern, &why))
                return kiln_invalid(error, member, "'%.64s%s' is refused: %s", pattern,
                                    strlen(pattern) > 64 ? "..." : "", why);
        r = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);

        if (r == 0)
                return TRUE;
        regerror(r, re, message, sizeof(message));
        return kiln_invalid(error, member, "'%s' is not an extended regular expression: %s", pattern,
                            message);
}

static gboolean read_hook(JsonObject *root, KilnHookFile *f, GError **error)
{
        JsonNode *node = json_object_get_member(root, "hook");
        JsonObject *h;
        const char *path;

        if (!node || !JSON_NODE_HOLDS_OBJECT(node))
                return bad(error, "hook", "missing, or not an object");
        h = json_node_get_object(node);
        node = json_object_get_member(h, "path");
        if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
                return bad(error, "hook.path", "missing, or not a string");
        path = json_node_get_string(node);
        /* The runtime executes it as root from the host's file system: an absolute path or nothing. */
        if (path[0] != '/')
                return kiln_invalid(error, "hook.path", "'%s' is not an absolute path", path);
        f->path = g_strdup(path);
        if (!read_strings(h, "args", "hook.args", &f->args, error) ||
            !read_strings(h, "env", "hook.env", &f->env, error))
                return FALSE;
        for (char **e = f->env; e && *e; e++)
                if (!strchr(*e, '=') || **e == '=')
                        return kiln_invalid(error, "hook.env", "'%s' is not NAME=VALUE", *e);
        node = json_object_get_member(h, "timeout");
        if (node && !JSON_NODE_HOLDS_NULL(node)) {
                gint64 t;
                if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64)
                        return bad(error, "hook.timeout", "not an integer");
                t = json_node_get_int(node);
                /* The runtime spec: "MUST be greater than zero". */
                if (t <= 0 || t > KILN_HOOK_MAX_TIMEOUT)
                        return kiln_invalid(error, "hook.timeout",
                                            "%" G_GINT64_FORMAT " is not 1..%d seconds", t,
                                            KILN_HOOK_MAX_TIMEOUT);
                f->timeout = (int)t;
        }
        return TRUE;
}

static gboolean read_when(JsonObject *root, KilnHookFile *f, GError **error)
{
        JsonNode *node = json_object_get_member(root, "when");
        g_auto(GStrv) commands = NULL;
        JsonObject *w;

        if (!node || !JSON_NODE_HOLDS_OBJECT(node))
                return bad(error, "when", "missing, or not an object");
        w = json_node_get_object(node);
        if (!read_bool(w, "always", "when.always", &f->always, error) ||
            !read_bool(w, "hasBindMounts", "when.hasBindMounts", &f->has_bind_mounts, error) ||
            !read_strings(w, "commands", "when.commands", &commands, error))
                return FALSE;
        f->n_commands = commands ? g_strv_length(commands) : 0;
        f->commands = g_new0(regex_t, MAX(f->n_commands, 1));
        for (gsize i = 0; i < f->n_commands; i++) {
                g_autofree char *member = g_strdup_printf("when.commands[%zu]", i);
                if (!compile(&f->commands[i], commands[i], member, error)) {
                        f->n_commands = i; /* only the compiled ones are freed */
                        return FALSE;
                }
        }

        node = json_object_get_member(w, "annotations");
        if (node && !JSON_NODE_HOLDS_NULL(node)) {
                JsonObject *a;
                g_autoptr(GList) keys = NULL;
                if (!JSON_NODE_HOLDS_OBJECT(node))
                        return bad(error, "when.annotations", "not an object");
                a = json_node_get_object(node);
                if (json_object_get_size(a) > KILN_HOOK_MAX_STRINGS)
                        return kiln_invalid(error, "when.annotations", "more than %d entries",
                                            KILN_HOOK_MAX_STRINGS);
                keys = json_object_get_members(a);
                f->annotations = g_new0(AnnotationPattern, json_object_get_size(a) + 1);
                for (GList *k = keys; k; k = k->next) {
                        g_autofree char *member = g_strdup_printf("when.annotations[%s]", (char *)k->data);
                        JsonNode *v = json_object_get_member(a, k->data);
                        AnnotationPattern *p = &f->annotations[f->n_annotations];
                        if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING)
                                return bad(error, member, "not a string");
                        if (!compile(&p->key, k->data, member, error))
                                return FALSE;
                        if (!compile(&p->value, json_node_get_string(v), member, error)) {
                                regfree(&p->key);
                                return FALSE;
                        }
                        f->n_annotations++;
                }
        }
        /* oci-hooks(5): at least one condition. An empty list or object counts as none. */
        if (f->always < 0 && f->has_bind_mounts < 0 && f->n_commands == 0 && f->n_annotations == 0)
                return bad(error, "when", "no condition (always, annotations, commands, hasBindMounts)");
        return TRUE;
}

static gboolean read_stages(JsonObject *root, KilnHookFile *f, GError **error)
{
        g_auto(GStrv) stages = NULL;
        gsize n = 0;

        if (!read_strings(root, "stages", "stages", &stages, error))
                return FALSE;
        if (!stages || !stages[0])
                return bad(error, "stages", "missing, or empty");
        f->stages = g_new0(const char *, g_strv_length((char **)kiln_hook_stages) + 1);
        for (char **s = stages; *s; s++) {
                const char *known = NULL;
                for (const char *const *k = kiln_hook_stages; *k; k++)
                        if (g_str_equal(*k, *s))
                                known = *k;
                if (!known)
                        return kiln_invalid(error, "stages", "unknown stage '%s'", *s);
                if (!g_strv_contains(f->stages, known))
                        f->stages[n++] = known;
        }
        return TRUE;
}

KilnHookFile *kiln_hook_file_parse(const char *data, gsize length, GError **error)
{
        g_autoptr(KilnHookFile) f = g_new0(KilnHookFile, 1);
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) local = NULL;
        JsonNode *root, *version;
        JsonObject *o;

        f->always = f->has_bind_mounts = -1;
        if (length > KILN_HOOK_FILE_MAX_BYTES) {
                kiln_fail(error, KILN_ERROR_CODE_LIMIT_EXCEEDED, "more than %d bytes",
                          KILN_HOOK_FILE_MAX_BYTES);
                return NULL;
        }
        if (!depth_ok(data, length)) {
                bad(error, "hooks file", "nested too deeply");
                return NULL;
        }
        if (!json_parser_load_from_data(parser, data, (gssize)length, &local)) {
                kiln_invalid(error, "hooks file", "not JSON: %s", local->message);
                return NULL;
        }
        root = json_parser_get_root(parser);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
                bad(error, "hooks file", "not a JSON object");
                return NULL;
        }
        o = json_node_get_object(root);
        version = json_object_get_member(o, "version");
        if (!version || !JSON_NODE_HOLDS_VALUE(version) ||
            json_node_get_value_type(version) != G_TYPE_STRING ||
            !g_str_equal(json_node_get_string(version), "1.0.0")) {
                bad(error, "version", "not \"1.0.0\" (the 0.1.0 schema is not supported)");
                return NULL;
        }
        if (!read_hook(o, f, error) || !read_when(o, f, error) || !read_stages(o, f, error))
                return NULL;
        return g_steal_pointer(&f);
}

static gboolean matches(const regex_t *re, const char *s)
{
        return regexec(re, s, 0, NULL, 0) == 0;
}

static gboolean annotation_matches(const AnnotationPattern *p, const char *const *annotations)
{
        for (const char *const *a = annotations; a && *a; a++) {
                const char *eq = strchr(*a, '=');
                g_autofree char *key = eq ? g_strndup(*a, eq - *a) : g_strdup(*a);
                if (matches(&p->key, key) && matches(&p->value, eq ? eq + 1 : ""))
                        return TRUE;
        }
        return FALSE;
}

gboolean kiln_hook_file_matches(const KilnHookFile *f, const KilnHookTarget *target)
{
        gboolean command = f->n_commands == 0;

        /* Every condition set must hold; one set to false never does (as containers-common). */
        if (f->always == 0 || f->has_bind_mounts == 0)
                return FALSE;
        if (f->has_bind_mounts == 1 && !target->has_bind_mounts)
                return FALSE;
        for (gsize i = 0; i < f->n_annotations; i++)
                if (!annotation_matches(&f->annotations[i], target->annotations))
                        return FALSE;
        for (gsize i = 0; i < f->n_commands && !command; i++)
                command = target->command && matches(&f->commands[i], target->command);
        return command;
}

void kiln_hook_file_add(const KilnHookFile *f, GArray *hooks)
{
        for (const char **s = f->stages; *s; s++) {
                KilnHook h = {
                        .stage = *s,
                        .path = f->path,
                        .args = (const char *const *)f->args,
                        .env = (const char *const *)f->env,
                        .timeout = f->timeout,
                };
                g_array_append_val(hooks, h);
        }
}
