/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <sys/capability.h>

#include "base/validate.h"

#define NAME_MAX_LENGTH 128
#define HOSTNAME_MAX_LENGTH 64

static gboolean has_control_chars(const char *s)
{
        for (; *s; s++)
                if ((unsigned char)*s < 0x20 || *s == 0x7f)
                        return TRUE;
        return FALSE;
}

gboolean kiln_id_is_valid(const char *id)
{
        size_t n = 0;

        for (; id[n]; n++)
                if (!g_ascii_isdigit(id[n]) && !(id[n] >= 'a' && id[n] <= 'f'))
                        return FALSE;
        return n == KILN_ID_LENGTH;
}

/* Like podman's container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*, so a name is never a path. */
gboolean kiln_validate_name(const char *arg, const char *name, GError **error)
{
        if (!*name)
                return kiln_invalid(error, arg, "the name is empty");
        if (strlen(name) > NAME_MAX_LENGTH)
                return kiln_invalid(error, arg, "'%.32s…' is longer than %d characters", name,
                                    NAME_MAX_LENGTH);
        if (!g_ascii_isalnum(name[0]))
                return kiln_invalid(error, arg, "'%s' must start with a letter or digit", name);
        for (const char *p = name; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '_' && *p != '.' && *p != '-')
                        return kiln_invalid(error, arg,
                                            "'%s' may only contain letters, digits, '_', '.' and '-'", name);
        return TRUE;
}

gboolean kiln_validate_env_entry(const char *arg, const char *entry, GError **error)
{
        const char *eq = strchr(entry, '=');

        if (!eq)
                return kiln_invalid(error, arg, "'%s' is not of the form NAME=VALUE", entry);
        if (eq == entry)
                return kiln_invalid(error, arg, "'%s' has an empty variable name", entry);
        return TRUE;
}

gboolean kiln_validate_absolute_path(const char *arg, const char *path, gboolean allow_empty, GError **error)
{
        if (!*path)
                return allow_empty ? TRUE : kiln_invalid(error, arg, "the path is empty");
        if (path[0] != '/')
                return kiln_invalid(error, arg, "'%s' is not an absolute path", path);
        if (has_control_chars(path))
                return kiln_invalid(error, arg, "the path contains control characters");
        return TRUE;
}

gboolean kiln_validate_user_spec(const char *arg, const char *spec, GError **error)
{
        const char *colon;

        if (!*spec)
                return TRUE; /* unset: the image's default */
        if (has_control_chars(spec) || strchr(spec, '/') || strpbrk(spec, " \t"))
                return kiln_invalid(error, arg, "'%s' is not of the form user[:group]", spec);
        colon = strchr(spec, ':');
        if (colon && (colon == spec || !colon[1] || strchr(colon + 1, ':')))
                return kiln_invalid(error, arg, "'%s' is not of the form user[:group]", spec);
        return TRUE;
}

gboolean kiln_validate_hostname(const char *arg, const char *hostname, GError **error)
{
        if (!*hostname)
                return TRUE;
        if (strlen(hostname) > HOSTNAME_MAX_LENGTH)
                return kiln_invalid(error, arg, "'%.32s…' is longer than %d characters", hostname,
                                    HOSTNAME_MAX_LENGTH);
        if (hostname[0] == '-' || hostname[0] == '.')
                return kiln_invalid(error, arg, "'%s' must start with a letter or digit", hostname);
        for (const char *p = hostname; *p; p++)
                if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.')
                        return kiln_invalid(error, arg, "'%s' may only contain letters, digits, '-' and '.'",
                                            hostname);
        return TRUE;
}

static gboolean one_of(const char *arg, const char *value, const char *const *allowed, GError **error)
{
        if (!*value || g_strv_contains(allowed, value))
                return TRUE;
        g_autofree char *list = g_strjoinv("', '", (char **)allowed);
        return kiln_invalid(error, arg, "'%s' is not one of '%s'", value, list);
}

gboolean kiln_validate_isolation(const char *arg, const char *value, GError **error)
{
        static const char *const allowed[] = {"oci", "chroot", NULL};
        return one_of(arg, value, allowed, error);
}

gboolean kiln_validate_userns(const char *arg, const char *value, GError **error)
{
        static const char *const allowed[] = {"auto", "host", NULL};
        return one_of(arg, value, allowed, error);
}

gboolean kiln_validate_capability(const char *arg, const char *name, char **normalized, GError **error)
{
        g_autofree char *upper = g_ascii_strup(name, -1);
        g_autofree char *full = NULL;
        cap_value_t value;

        if (g_str_equal(upper, "ALL")) {
                *normalized = g_strdup("ALL");
                return TRUE;
        }
        full = g_str_has_prefix(upper, "CAP_") ? g_strdup(upper) : g_strconcat("CAP_", upper, NULL);
        /* libcap knows the kernel's names; it also accepts numbers, which we do not. */
        if (g_ascii_isdigit(full[4]) || cap_from_name(full, &value) < 0)
                return kiln_invalid(error, arg, "'%s' is not a capability name", name);
        *normalized = g_steal_pointer(&full);
        return TRUE;
}

static const char *const ulimit_names[] = {
        "core",  "cpu", "data",   "fsize",  "locks",      "memlock", "msgqueue", "nice", "nofile",
        "nproc", "rss", "rtprio", "rttime", "sigpending", "stack",   "as",       NULL,
};

static gboolean parse_limit_value(const char *s, guint64 *value)
{
        if (g_str_equal(s, "unlimited") || g_str_equal(s, "-1")) {
                *value = G_MAXUINT64;
                return TRUE;
        }
        return g_ascii_string_to_unsigned(s, 10, 0, G_MAXUINT64 - 1, value, NULL);
}

gboolean kiln_validate_ulimit(const char *arg, const char *spec, GError **error)
{
        g_auto(GStrv) name_value = g_strsplit(spec, "=", 2);
        g_auto(GStrv) soft_hard = NULL;
        guint64 soft, hard;

        if (!name_value[0] || !name_value[1])
                return kiln_invalid(error, arg, "'%s' is not of the form name=soft[:hard]", spec);
        if (!g_strv_contains(ulimit_names, name_value[0]))
                return kiln_invalid(error, arg, "'%s' is not a resource limit name", name_value[0]);
        soft_hard = g_strsplit(name_value[1], ":", 3);
        if (!soft_hard[0] || (soft_hard[1] && soft_hard[2]) || !parse_limit_value(soft_hard[0], &soft) ||
            (soft_hard[1] && !parse_limit_value(soft_hard[1], &hard)))
                return kiln_invalid(error, arg, "'%s' is not of the form name=soft[:hard] with numbers",
                                    spec);
        if (soft_hard[1] && soft > hard)
                return kiln_invalid(error, arg, "'%s' has a soft limit above its hard limit", spec);
        return TRUE;
}

static const char *const volume_options[] = {
        "ro",    "rw",     "z",      "Z",       "O",      "U",     "private", "rprivate",
        "slave", "rslave", "shared", "rshared", "nosuid", "nodev", "noexec",  NULL,
};

gboolean kiln_validate_volume(const char *arg, const char *spec, GError **error)
{
        g_auto(GStrv) parts = g_strsplit(spec, ":", 4);
        guint n = g_strv_length(parts);

        if (n < 2 || n > 3)
                return kiln_invalid(error, arg, "'%s' is not of the form SRC:DST[:OPTIONS]", spec);
        if (!kiln_validate_absolute_path(arg, parts[0], FALSE, error) ||
            !kiln_validate_absolute_path(arg, parts[1], FALSE, error))
                return FALSE;
        if (n == 3) {
                g_auto(GStrv) options = g_strsplit(parts[2], ",", -1);
                for (char **o = options; *o; o++) {
                        /* Run parity: a persistent upper of an `O` volume (run-volumes.c checks the rest).
                         */
                        if (g_str_has_prefix(*o, "upperdir=") || g_str_has_prefix(*o, "workdir=")) {
                                if (!kiln_validate_absolute_path(arg, strchr(*o, '=') + 1, FALSE, error))
                                        return FALSE;
                                continue;
                        }
                        if (!g_strv_contains(volume_options, *o))
                                return kiln_invalid(error, arg, "'%s' is not a volume option", *o);
                }
        }
        return TRUE;
}

gboolean kiln_validate_label_key(const char *arg, const char *key, GError **error)
{
        if (!*key)
                return kiln_invalid(error, arg, "a label name is empty");
        if (has_control_chars(key))
                return kiln_invalid(error, arg, "a label name contains control characters");
        return TRUE;
}

/* The part of @from a generated name starts with: the last path component, made name-safe. */
static char *name_base(const char *from)
{
        g_autofree char *base = NULL;
        GString *s;

        if (!from || !*from || g_str_equal(from, "scratch"))
                return NULL;
        base = g_path_get_basename(from);
        s = g_string_new(NULL);
        for (const char *p = base; *p && s->len < 64; p++) {
                if (g_ascii_isalnum(*p) || ((*p == '_' || *p == '.' || *p == '-') && s->len > 0))
                        g_string_append_c(s, *p);
                else if (s->len > 0)
                        g_string_append_c(s, '-');
        }
        if (s->len == 0) {
                g_string_free(s, TRUE);
                return NULL;
        }
        return g_string_free(s, FALSE);
}

char *kiln_generate_builder_name(const char *from, gboolean (*taken)(const char *name, gpointer data),
                                 gpointer data)
{
        g_autofree char *base = name_base(from);
        g_autofree char *first =
                base ? g_strconcat(base, "-working-container", NULL) : g_strdup("working-container");

        if (!taken(first, data))
                return g_steal_pointer(&first);
        for (unsigned i = 2;; i++) {
                char *candidate = g_strdup_printf("%s-%u", first, i);
                if (!taken(candidate, data))
                        return candidate;
                g_free(candidate);
        }
}
