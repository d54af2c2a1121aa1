/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <gio/gio.h>

#include "base/kiln-common.h"
#include "spec/seccomp-profile.h"
#include "base/validate.h"

#define MAX_ERRNO 4095
#define MAX_SYSCALL_ARGS 6
#define OCI_ARCH_PREFIX "SCMP_ARCH_"

static const char *const action_names[] = {
        "SCMP_ACT_KILL",  "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",  "SCMP_ACT_ERRNO",        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",          NULL,
};

static const char *const operator_names[] = {
        "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",        "SCMP_CMP_EQ",
        "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ", NULL,
};

static const char *const flag_names[] = {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        NULL,
};

/* The members each object may have; anything else is a mistake worth an error. */
static const char *const profile_members[] = {
        "defaultAction", "defaultErrnoRet", "architectures", "archMap", "flags", "syscalls", NULL,
};
static const char *const rule_members[] = {
        "names", "name", "action", "errnoRet", "args", "comment", "includes", "excludes", NULL,
};
static const char *const arg_members[] = {"index", "value", "valueTwo", "op", NULL};
static const char *const condition_members[] = {"caps", "arches", "minKernel", NULL};
static const char *const arch_map_members[] = {"architecture", "subArchitectures", NULL};

typedef struct Resolver {
        const char *name;
        const KilnSeccompHost *host;
        const char *const *caps;
        GArray *profile_arches; /* guint32: every architecture the profile names, and the native one */
        GArray *filter_arches;  /* guint32: those of the resolved filter */
} Resolver;

static gboolean invalid(GError **error, const Resolver *r, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static gboolean invalid(GError **error, const Resolver *r, const char *fmt, ...)
{
        g_autofree char *reason = NULL;
        va_list ap;

        va_start(ap, fmt);
        reason = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid seccomp_profile: %s: %s",
                    r->name, reason);
        return FALSE;
}

static gboolean check_members(const Resolver *r, JsonObject *o, const char *const *allowed,
                              const char *where, GError **error)
{
        g_autoptr(GList) members = json_object_get_members(o);

        for (GList *m = members; m; m = m->next)
                if (!g_strv_contains(allowed, m->data))
                        return invalid(error, r, "unknown member '%s' in %s", (const char *)m->data, where);
        return TRUE;
}

static JsonObject *get_object(const Resolver *r, JsonObject *o, const char *member, const char *where,
                              GError **error)
{
        JsonNode *n = json_object_get_member(o, member);

        if (!n || !JSON_NODE_HOLDS_OBJECT(n)) {
                invalid(error, r, "%s.%s is not an object", where, member);
                return NULL;
        }
        return json_node_get_object(n);
}

static JsonArray *get_array(const Resolver *r, JsonObject *o, const char *member, const char *where,
                            GError **error)
{
        JsonNode *n = json_object_get_member(o, member);

        if (!n || !JSON_NODE_HOLDS_ARRAY(n)) {
                invalid(error, r, "%s.%s is not an array", where, member);
                return NULL;
        }
        return json_node_get_array(n);
}

static const char *get_string(const Resolver *r, JsonNode *n, const char *where, GError **error)
{
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING ||
            !*json_node_get_string(n)) {
                invalid(error, r, "%s is not a non-empty string", where);
                return NULL;
        }
        return json_node_get_string(n);
}

static gboolean get_int(const Resolver *r, JsonObject *o, const char *member, const char *where, gint64 min,
                        gint64 max, gint64 *value, GError **error)
{
        JsonNode *n = json_object_get_member(o, member);

        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
            json_node_get_int(n) < min || json_node_get_int(n) > max)
                return invalid(error, r,
                               "%s.%s is not an integer in [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "]",
                               where, member, min, max);
        *value = json_node_get_int(n);
        return TRUE;
}

/* "SCMP_ARCH_X86_64" → libseccomp's token, through its own name ("x86_64"); 0 if unknown. */
static guint32 arch_from_oci(const char *name)
{
        g_autofree char *lower = NULL;

        if (!g_str_has_prefix(name, OCI_ARCH_PREFIX))
                return 0;
        lower = g_ascii_strdown(name + strlen(OCI_ARCH_PREFIX), -1);
        return seccomp_arch_resolve_name(lower);
}

static void add_arch(GArray *arches, guint32 arch)
{
        for (guint i = 0; i < arches->len; i++)
                if (g_array_index(arches, guint32, i) == arch)
                        return;
        g_array_append_val(arches, arch);
}

static gboolean read_arch_list(const Resolver *r, JsonArray *list, const char *where, JsonArray *out,
                               GError **error)
{
        for (guint i = 0; list && i < json_array_get_length(list); i++) {
                g_autofree char *w = g_strdup_printf("%s[%u]", where, i);
                const char *name = get_string(r, json_array_get_element(list, i), w, error);
                guint32 arch;

                if (!name)
                        return FALSE;
                arch = arch_from_oci(name);
                if (!arch)
                        return invalid(error, r, "%s: unknown architecture '%s'", w, name);
                add_arch(r->profile_arches, arch);
                if (out)
                        json_array_add_string_element(out, name);
        }
        return TRUE;
}

/* Fills the profile's and the filter's architectures; *out the spec's "architectures" (or NULL). */
static gboolean resolve_architectures(Resolver *r, JsonObject *profile, JsonArray **out, GError **error)
{
        g_autoptr(JsonArray) result = NULL;

        if (json_object_has_member(profile, "architectures") && json_object_has_member(profile, "archMap"))
                return invalid(error, r, "both architectures and archMap");
        if (json_object_has_member(profile, "architectures")) {
                JsonArray *list = get_array(r, profile, "architectures", "profile", error);
                result = json_array_new();
                if (!list || !read_arch_list(r, list, "architectures", result, error))
                        return FALSE;
        } else if (json_object_has_member(profile, "archMap")) {
                JsonArray *map = get_array(r, profile, "archMap", "profile", error);

                for (guint i = 0; map && i < json_array_get_length(map); i++) {
                        g_autofree char *where = g_strdup_printf("archMap[%u]", i);
                        JsonNode *entry = json_array_get_element(map, i);
                        JsonObject *o = JSON_NODE_HOLDS_OBJECT(entry) ? json_node_get_object(entry) : NULL;
                        JsonNode *subs;
                        const char *main_name;
                        guint32 arch;
                        gboolean native;

                        if (!o)
                                return invalid(error, r, "%s is not an object", where);
                        if (!check_members(r, o, arch_map_members, where, error))
                                return FALSE;
                        main_name = get_string(r, json_object_get_member(o, "architecture"), where, error);
                        if (!main_name)
                                return FALSE;
                        arch = arch_from_oci(main_name);
                        if (!arch)
                                return invalid(error, r, "%s: unknown architecture '%s'", where, main_name);
                        add_arch(r->profile_arches, arch);
                        native = arch == r->host->arch;
                        if (native && result)
                                return invalid(error, r, "%s: a second entry for %s", where, main_name);
                        if (native) {
                                result = json_array_new();
                                json_array_add_string_element(result, main_name);
                        }
                        subs = json_object_get_member(o, "subArchitectures");
                        if (subs && !JSON_NODE_HOLDS_NULL(subs) && !JSON_NODE_HOLDS_ARRAY(subs))
                                return invalid(error, r, "%s.subArchitectures is not an array", where);
                        if (!read_arch_list(r,
                                            subs && JSON_NODE_HOLDS_ARRAY(subs) ? json_node_get_array(subs)
                                                                                : NULL,
                                            where, native ? result : NULL, error))
                                return FALSE;
                }
        }
        add_arch(r->profile_arches, r->host->arch);
        add_arch(r->filter_arches, r->host->arch);
        for (guint i = 0; result && i < json_array_get_length(result); i++)
                add_arch(r->filter_arches, arch_from_oci(json_array_get_string_element(result, i)));
        *out = g_steal_pointer(&result);
        return TRUE;
}

static gboolean has_cap(const Resolver *r, const char *cap)
{
        return r->caps && g_strv_contains(r->caps, cap);
}

static gboolean parse_kernel_version(const char *s, guint *major, guint *minor)
{
        g_auto(GStrv) parts = g_strsplit(s, ".", 3);
        guint64 a, b = 0;

        if (!parts[0] || !g_ascii_string_to_unsigned(parts[0], 10, 0, G_MAXUINT, &a, NULL))
                return FALSE;
        if (parts[1]) {
                /* "6.18.44-fc" and "4.8": the minor ends at the first non-digit. */
                gsize n = strspn(parts[1], "0123456789");
                g_autofree char *digits = g_strndup(parts[1], n);
                if (n == 0 || !g_ascii_string_to_unsigned(digits, 10, 0, G_MAXUINT, &b, NULL))
                        return FALSE;
        }
        *major = (guint)a;
        *minor = (guint)b;
        return TRUE;
}

/* Whether the condition object @member of @rule (includes or excludes) lets the rule stay. */
static gboolean evaluate_condition(const Resolver *r, JsonObject *rule, const char *member,
                                   const char *where, gboolean *keep, GError **error)
{
        gboolean include = g_str_equal(member, "includes");
        g_autofree char *w = g_strdup_printf("%s.%s", where, member);
        JsonObject *cond;
        gboolean any_cap = FALSE, all_caps = TRUE, native_listed = FALSE, kernel_at_least = FALSE;
        gboolean has_arches = FALSE, has_min = FALSE;

        if (!json_object_has_member(rule, member))
                return TRUE;
        cond = get_object(r, rule, member, where, error);
        if (!cond || !check_members(r, cond, condition_members, w, error))
                return FALSE;
        if (json_object_has_member(cond, "caps")) {
                JsonArray *caps = get_array(r, cond, "caps", w, error);
                for (guint i = 0; caps && i < json_array_get_length(caps); i++) {
                        g_autofree char *wc = g_strdup_printf("%s.caps[%u]", w, i);
                        g_autofree char *normalized = NULL;
                        const char *name = get_string(r, json_array_get_element(caps, i), wc, error);

                        if (!name)
                                return FALSE;
                        if (!kiln_validate_capability(wc, name, &normalized, NULL) ||
                            g_str_equal(normalized, "ALL"))
                                return invalid(error, r, "%s: '%s' is not a capability name", wc, name);
                        if (has_cap(r, normalized))
                                any_cap = TRUE;
                        else
                                all_caps = FALSE;
                }
                if (!caps)
                        return FALSE;
        }
        if (json_object_has_member(cond, "arches")) {
                JsonArray *arches = get_array(r, cond, "arches", w, error);
                for (guint i = 0; arches && i < json_array_get_length(arches); i++) {
                        g_autofree char *wa = g_strdup_printf("%s.arches[%u]", w, i);
                        const char *name = get_string(r, json_array_get_element(arches, i), wa, error);
                        guint32 arch = name ? seccomp_arch_resolve_name(name) : 0;

                        if (!name)
                                return FALSE;
                        if (!arch)
                                return invalid(error, r,
                                               "%s: unknown architecture '%s' (libseccomp's names: x86_64, "
                                               "aarch64, ...)",
                                               wa, name);
                        native_listed |= arch == r->host->arch;
                }
                if (!arches)
                        return FALSE;
                has_arches = TRUE;
        }
        if (json_object_has_member(cond, "minKernel")) {
                g_autofree char *wk = g_strdup_printf("%s.minKernel", w);
                const char *v = get_string(r, json_object_get_member(cond, "minKernel"), wk, error);
                guint major, minor;

                if (!v)
                        return FALSE;
                if (!parse_kernel_version(v, &major, &minor))
                        return invalid(error, r, "%s: '%s' is not MAJOR.MINOR", wk, v);
                has_min = TRUE;
                kernel_at_least = r->host->kernel_major > major ||
                                  (r->host->kernel_major == major && r->host->kernel_minor >= minor);
        }
        if (include)
                *keep = *keep && all_caps && (!has_arches || native_listed) && (!has_min || kernel_at_least);
        else
                *keep = *keep && !any_cap && !native_listed && !(has_min && kernel_at_least);
        return TRUE;
}

/* Checks one syscall name with libseccomp; *keep: it exists on an architecture of the filter. */
static gboolean check_syscall(const Resolver *r, const char *name, const char *where, gboolean *keep,
                              GError **error)
{
        gboolean known = FALSE;

        *keep = FALSE;
        for (guint i = 0; i < r->profile_arches->len; i++) {
                guint32 arch = g_array_index(r->profile_arches, guint32, i);
                int nr = seccomp_syscall_resolve_name_arch(arch, name);

                /* __NR_SCMP_ERROR: a name libseccomp does not know; another negative number: a
                 * known call that this architecture does not have. */
                if (nr != __NR_SCMP_ERROR)
                        known = TRUE;
        }
        if (!known)
                return invalid(error, r, "%s: unknown syscall '%s'", where, name);
        for (guint i = 0; i < r->filter_arches->len; i++)
                if (seccomp_syscall_resolve_name_arch(g_array_index(r->filter_arches, guint32, i), name) >=
                    0)
                        *keep = TRUE;
        return TRUE;
}

static JsonNode *resolve_args(const Resolver *r, JsonObject *rule, const char *where, GError **error)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        JsonArray *args = get_array(r, rule, "args", where, error);

        if (!args)
                return NULL;
        if (json_array_get_length(args) > MAX_SYSCALL_ARGS) {
                invalid(error, r, "%s.args has more than %d conditions", where, MAX_SYSCALL_ARGS);
                return NULL;
        }
        json_builder_begin_array(b);
        for (guint i = 0; i < json_array_get_length(args); i++) {
                g_autofree char *w = g_strdup_printf("%s.args[%u]", where, i);
                JsonNode *n = json_array_get_element(args, i);
                JsonObject *a = JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
                gint64 index, value, value_two = 0;
                const char *op;

                if (!a) {
                        invalid(error, r, "%s is not an object", w);
                        return NULL;
                }
                /* value and valueTwo are uint64 in OCI: the full gint64 range, as two's complement. */
                if (!check_members(r, a, arg_members, w, error) ||
                    !get_int(r, a, "index", w, 0, MAX_SYSCALL_ARGS - 1, &index, error) ||
                    !get_int(r, a, "value", w, G_MININT64, G_MAXINT64, &value, error) ||
                    (json_object_has_member(a, "valueTwo") &&
                     !get_int(r, a, "valueTwo", w, G_MININT64, G_MAXINT64, &value_two, error)))
                        return NULL;
                op = get_string(r, json_object_get_member(a, "op"), w, error);
                if (!op)
                        return NULL;
                if (!g_strv_contains(operator_names, op)) {
                        invalid(error, r, "%s: unknown operator '%s'", w, op);
                        return NULL;
                }
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "index");
                json_builder_add_int_value(b, index);
                json_builder_set_member_name(b, "value");
                json_builder_add_int_value(b, value);
                json_builder_set_member_name(b, "valueTwo");
                json_builder_add_int_value(b, value_two);
                json_builder_set_member_name(b, "op");
                json_builder_add_string_value(b, op);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        return json_builder_get_root(b);
}

/* Adds the resolved form of syscalls[@i] to @out, unless its conditions drop it. */
static gboolean resolve_rule(const Resolver *r, JsonNode *node, guint i, JsonArray *out, GError **error)
{
        g_autofree char *where = g_strdup_printf("syscalls[%u]", i);
        JsonObject *rule = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        g_autoptr(JsonArray) names = json_array_new();
        g_autoptr(JsonNode) args = NULL;
        gboolean keep = TRUE;
        const char *action;
        gint64 errno_ret = -1;
        JsonObject *result;

        if (!rule)
                return invalid(error, r, "%s is not an object", where);
        if (!check_members(r, rule, rule_members, where, error))
                return FALSE;
        action = get_string(r, json_object_get_member(rule, "action"), where, error);
        if (!action)
                return FALSE;
        if (!g_strv_contains(action_names, action))
                return invalid(error, r, "%s: unknown action '%s'", where, action);
        if (json_object_has_member(rule, "errnoRet") &&
            !get_int(r, rule, "errnoRet", where, 0, MAX_ERRNO, &errno_ret, error))
                return FALSE;
        if (json_object_has_member(rule, "args") && !(args = resolve_args(r, rule, where, error)))
                return FALSE;

        /* Every name is checked, including those of a rule the conditions drop. */
        if (json_object_has_member(rule, "name")) {
                const char *name = get_string(r, json_object_get_member(rule, "name"), where, error);
                gboolean here;
                if (!name || !check_syscall(r, name, where, &here, error))
                        return FALSE;
                if (here)
                        json_array_add_string_element(names, name);
        }
        if (json_object_has_member(rule, "names")) {
                JsonArray *list = get_array(r, rule, "names", where, error);
                for (guint j = 0; list && j < json_array_get_length(list); j++) {
                        g_autofree char *w = g_strdup_printf("%s.names[%u]", where, j);
                        const char *name = get_string(r, json_array_get_element(list, j), w, error);
                        gboolean here;

                        if (!name || !check_syscall(r, name, w, &here, error))
                                return FALSE;
                        if (here)
                                json_array_add_string_element(names, name);
                }
                if (!list)
                        return FALSE;
        }
        if (!json_object_has_member(rule, "name") && !json_object_has_member(rule, "names"))
                return invalid(error, r, "%s has no names", where);

        if (!evaluate_condition(r, rule, "includes", where, &keep, error) ||
            !evaluate_condition(r, rule, "excludes", where, &keep, error))
                return FALSE;
        if (!keep || json_array_get_length(names) == 0)
                return TRUE;

        result = json_object_new();
        json_object_set_array_member(result, "names", g_steal_pointer(&names));
        json_object_set_string_member(result, "action", action);
        if (errno_ret >= 0)
                json_object_set_int_member(result, "errnoRet", errno_ret);
        if (args && json_array_get_length(json_node_get_array(args)) > 0)
                json_object_set_member(result, "args", g_steal_pointer(&args));
        json_array_add_object_element(out, result);
        return TRUE;
}

JsonNode *kiln_seccomp_profile_resolve(const char *name, JsonNode *profile, const char *const *caps,
                                       const KilnSeccompHost *host, GError **error)
{
        g_autoptr(GArray) profile_arches = g_array_new(FALSE, FALSE, sizeof(guint32));
        g_autoptr(GArray) filter_arches = g_array_new(FALSE, FALSE, sizeof(guint32));
        Resolver r = {name, host, caps, profile_arches, filter_arches};
        g_autoptr(JsonObject) out = json_object_new();
        g_autoptr(JsonArray) architectures = NULL;
        g_autoptr(JsonArray) syscalls = json_array_new();
        JsonObject *o;
        JsonArray *rules;
        const char *default_action;
        JsonNode *node;

        if (!profile || !JSON_NODE_HOLDS_OBJECT(profile)) {
                invalid(error, &r, "the profile is not a JSON object");
                return NULL;
        }
        o = json_node_get_object(profile);
        if (!check_members(&r, o, profile_members, "the profile", error))
                return NULL;
        default_action = get_string(&r, json_object_get_member(o, "defaultAction"), "defaultAction", error);
        if (!default_action)
                return NULL;
        if (!g_strv_contains(action_names, default_action)) {
                invalid(error, &r, "unknown defaultAction '%s'", default_action);
                return NULL;
        }
        json_object_set_string_member(out, "defaultAction", default_action);
        if (json_object_has_member(o, "defaultErrnoRet")) {
                gint64 e;
                if (!get_int(&r, o, "defaultErrnoRet", "the profile", 0, MAX_ERRNO, &e, error))
                        return NULL;
                json_object_set_int_member(out, "defaultErrnoRet", e);
        }
        if (!resolve_architectures(&r, o, &architectures, error))
                return NULL;
        if (architectures)
                json_object_set_array_member(out, "architectures", g_steal_pointer(&architectures));
        if (json_object_has_member(o, "flags")) {
                JsonArray *flags = get_array(&r, o, "flags", "the profile", error);
                g_autoptr(JsonArray) copy = json_array_new();

                for (guint i = 0; flags && i < json_array_get_length(flags); i++) {
                        g_autofree char *w = g_strdup_printf("flags[%u]", i);
                        const char *flag = get_string(&r, json_array_get_element(flags, i), w, error);
                        if (!flag)
                                return NULL;
                        if (!g_strv_contains(flag_names, flag)) {
                                invalid(error, &r, "%s: unknown flag '%s'", w, flag);
                                return NULL;
                        }
                        json_array_add_string_element(copy, flag);
                }
                if (!flags)
                        return NULL;
                json_object_set_array_member(out, "flags", g_steal_pointer(&copy));
        }
        rules = get_array(&r, o, "syscalls", "the profile", error);
        if (!rules)
                return NULL;
        for (guint i = 0; i < json_array_get_length(rules); i++)
                if (!resolve_rule(&r, json_array_get_element(rules, i), i, syscalls, error))
                        return NULL;
        json_object_set_array_member(out, "syscalls", g_steal_pointer(&syscalls));

        node = json_node_new(JSON_NODE_OBJECT);
        json_node_set_object(node, out);
        return node;
}

gboolean kiln_seccomp_host_detect(KilnSeccompHost *host, GError **error)
{
        struct utsname u;

        host->arch = seccomp_arch_native();
        if (uname(&u) < 0 || !parse_kernel_version(u.release, &host->kernel_major, &host->kernel_minor)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_FAILED, "Cannot tell the kernel's version");
                return FALSE;
        }
        return TRUE;
}

/* Profiles are the administrator's files under the data directory, but still read with a bound. */
static char *read_profile(const char *path, struct stat *ret_st, gsize *length, GError **error)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        g_autofree char *data = NULL;
        struct stat st;
        gsize n = 0;

        if (fd < 0 || fstat(fd, &st) < 0) {
                int e = errno;
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                            "Cannot open seccomp profile %s: %s", path, g_strerror(e));
                return NULL;
        }
        if (!S_ISREG(st.st_mode) || st.st_size > KILN_SECCOMP_PROFILE_MAX_SIZE) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid seccomp_profile: %s is not a regular file of at most %d bytes", path,
                            KILN_SECCOMP_PROFILE_MAX_SIZE);
                return NULL;
        }
        data = g_malloc((gsize)st.st_size + 1);
        while (n < (gsize)st.st_size) {
                ssize_t r = read(fd, data + n, (gsize)st.st_size - n);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        int e = r < 0 ? errno : EIO;
                        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(e),
                                    "Cannot read seccomp profile %s: %s", path, g_strerror(e));
                        return NULL;
                }
                n += (gsize)r;
        }
        data[n] = '\0';
        *length = n;
        *ret_st = st;
        return g_steal_pointer(&data);
}

/* Resolving a profile checks every syscall name with libseccomp: most of a run's preparation time.
 * The result depends only on the file, the capabilities and this machine, so kilnd keeps the last
 * few, keyed by the file's identity and contents' length and time; a changed file is a new key. */
#define RESOLVED_CACHE_MAX 16
struct KilnSeccompCache {
        GHashTable *resolved; /* key → JsonNode */
};

KilnSeccompCache *kiln_seccomp_cache_new(void)
{
        KilnSeccompCache *cache = g_new0(KilnSeccompCache, 1);

        cache->resolved =
                g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)json_node_unref);
        return cache;
}

void kiln_seccomp_cache_free(KilnSeccompCache *cache)
{
        if (!cache)
                return;
        g_hash_table_unref(cache->resolved);
        g_free(cache);
}

/* json_node_copy() shares objects and arrays: a run's copy must not reach into the cache. */
static JsonNode *deep_copy(JsonNode *node)
{
        JsonNode *copy;

        switch (json_node_get_node_type(node)) {
        case JSON_NODE_OBJECT: {
                JsonObject *o = json_node_get_object(node), *c = json_object_new();
                JsonObjectIter iter;
                const char *name;
                JsonNode *member;

                json_object_iter_init_ordered(&iter, o);
                while (json_object_iter_next_ordered(&iter, &name, &member))
                        json_object_set_member(c, name, deep_copy(member));
                copy = json_node_init_object(json_node_alloc(), c);
                json_object_unref(c);
                return copy;
        }
        case JSON_NODE_ARRAY: {
                JsonArray *a = json_node_get_array(node),
                          *c = json_array_sized_new(json_array_get_length(a));

                for (guint i = 0; i < json_array_get_length(a); i++)
                        json_array_add_element(c, deep_copy(json_array_get_element(a, i)));
                copy = json_node_init_array(json_node_alloc(), c);
                json_array_unref(c);
                return copy;
        }
        default:
                return json_node_copy(node);
        }
}

static char *cache_key(const char *path, const struct stat *st, const char *const *caps)
{
        g_autofree char *joined = caps ? g_strjoinv(",", (char **)caps) : g_strdup("");

        return g_strdup_printf("%s|%lu:%lu:%lld:%lld.%09ld|%s", path, (unsigned long)st->st_dev,
                               (unsigned long)st->st_ino, (long long)st->st_size,
                               (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec, joined);
}

static JsonNode *cache_lookup(KilnSeccompCache *cache, const char *path, const char *const *caps)
{
        g_autofree char *key = NULL;
        struct stat now;
        JsonNode *hit;

        if (!cache || stat(path, &now) < 0)
                return NULL;
        key = cache_key(path, &now, caps);
        hit = g_hash_table_lookup(cache->resolved, key);
        return hit ? deep_copy(hit) : NULL;
}

static void cache_store(KilnSeccompCache *cache, const char *path, const struct stat *st,
                        const char *const *caps, JsonNode *resolved)
{
        if (!cache)
                return;
        if (g_hash_table_size(cache->resolved) >= RESOLVED_CACHE_MAX)
                g_hash_table_remove_all(cache->resolved);
        g_hash_table_insert(cache->resolved, cache_key(path, st, caps), deep_copy(resolved));
}

JsonNode *kiln_seccomp_profile_load(KilnSeccompCache *cache, const char *path, const char *const *caps,
                                    GError **error)
{
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) parse_error = NULL;
        g_autofree char *data = NULL;
        KilnSeccompHost host;
        gsize length = 0;

        JsonNode *resolved = cache_lookup(cache, path, caps);
        struct stat st;

        if (resolved)
                return resolved;
        if (!kiln_seccomp_host_detect(&host, error))
                return NULL;
        data = read_profile(path, &st, &length, error);
        if (!data)
                return NULL;
        if (!json_parser_load_from_data(parser, data, (gssize)length, &parse_error)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid seccomp_profile: %s: %s", path, parse_error->message);
                return NULL;
        }
        resolved = kiln_seccomp_profile_resolve(path, json_parser_get_root(parser), caps, &host, error);
        if (resolved)
                cache_store(cache, path, &st, caps, resolved);
        return resolved;
}

/* ---- the filter ---- */

static const struct {
        const char *name;
        enum scmp_compare op;
} compare_table[] = {
        {"SCMP_CMP_NE", SCMP_CMP_NE},
        {"SCMP_CMP_LT", SCMP_CMP_LT},
        {"SCMP_CMP_LE", SCMP_CMP_LE},
        {"SCMP_CMP_EQ", SCMP_CMP_EQ},
        {"SCMP_CMP_GE", SCMP_CMP_GE},
        {"SCMP_CMP_GT", SCMP_CMP_GT},
        {"SCMP_CMP_MASKED_EQ", SCMP_CMP_MASKED_EQ},
};

/* OCI: an ERRNO or TRACE action without errnoRet means EPERM. */
static gboolean action_value(const char *name, JsonObject *o, const char *errno_member, guint32 *action)
{
        guint32 e = json_object_has_member(o, errno_member)
                            ? (guint32)json_object_get_int_member(o, errno_member)
                            : EPERM;
        const struct {
                const char *name;
                guint32 action;
        } table[] = {
                {"SCMP_ACT_KILL", SCMP_ACT_KILL},
                {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS},
                {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD},
                {"SCMP_ACT_TRAP", SCMP_ACT_TRAP},
                {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(e)},
                {"SCMP_ACT_TRACE", SCMP_ACT_TRACE(e)},
                {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW},
                {"SCMP_ACT_LOG", SCMP_ACT_LOG},
        };

        for (gsize i = 0; i < G_N_ELEMENTS(table); i++)
                if (g_str_equal(table[i].name, name)) {
                        *action = table[i].action;
                        return TRUE;
                }
        return FALSE;
}

static gboolean filter_failed(GError **error, int r, const char *what, const char *name)
{
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid seccomp filter: %s %s: %s",
                    what, name, g_strerror(-r));
        return FALSE;
}

static gboolean add_filter_rule(scmp_filter_ctx ctx, guint32 default_action, JsonObject *rule,
                                GError **error)
{
        JsonArray *names = json_object_get_array_member(rule, "names");
        JsonArray *args =
                json_object_has_member(rule, "args") ? json_object_get_array_member(rule, "args") : NULL;
        struct scmp_arg_cmp cmps[MAX_SYSCALL_ARGS];
        guint n_cmps = args ? MIN(json_array_get_length(args), MAX_SYSCALL_ARGS) : 0;
        guint32 action;

        if (!action_value(json_object_get_string_member(rule, "action"), rule, "errnoRet", &action))
                return filter_failed(error, -EINVAL, "action",
                                     json_object_get_string_member(rule, "action"));
        if (action == default_action)
                return TRUE;
        for (guint i = 0; i < n_cmps; i++) {
                JsonObject *a = json_array_get_object_element(args, i);
                const char *op = json_object_get_string_member(a, "op");
                gsize k;

                for (k = 0; k < G_N_ELEMENTS(compare_table); k++)
                        if (g_str_equal(compare_table[k].name, op))
                                break;
                if (k == G_N_ELEMENTS(compare_table))
                        return filter_failed(error, -EINVAL, "operator", op);
                cmps[i] = (struct scmp_arg_cmp){
                        .arg = (unsigned)json_object_get_int_member(a, "index"),
                        .op = compare_table[k].op,
                        .datum_a = (scmp_datum_t)json_object_get_int_member(a, "value"),
                        .datum_b = json_object_has_member(a, "valueTwo")
                                           ? (scmp_datum_t)json_object_get_int_member(a, "valueTwo")
                                           : 0,
                };
        }
        for (guint i = 0; i < json_array_get_length(names); i++) {
                const char *name = json_array_get_string_element(names, i);
                int nr = seccomp_syscall_resolve_name(name);
                int r;

                if (nr == __NR_SCMP_ERROR)
                        continue; /* as runc: a name this libseccomp cannot place */
                r = seccomp_rule_add_array(ctx, action, nr, n_cmps, cmps);
                if (r < 0 && r != -EEXIST)
                        return filter_failed(error, r, "rule for", name);
        }
        return TRUE;
}

/* Whether member @name of @o is absent (when @optional) or of JSON type @type, and for an array, whether
 * every element is of @element_type (0: any). */
static gboolean member_is(JsonObject *o, const char *name, gboolean optional, GType type, GType element_type)
{
        JsonNode *n = json_object_get_member(o, name);

        if (!n)
                return optional;
        if (type == JSON_TYPE_ARRAY) {
                if (!JSON_NODE_HOLDS_ARRAY(n))
                        return FALSE;
                for (guint i = 0; element_type && i < json_array_get_length(json_node_get_array(n)); i++) {
                        JsonNode *e = json_array_get_element(json_node_get_array(n), i);
                        if (element_type == JSON_TYPE_OBJECT
                                    ? !JSON_NODE_HOLDS_OBJECT(e)
                                    : !JSON_NODE_HOLDS_VALUE(e) ||
                                              json_node_get_value_type(e) != element_type)
                                return FALSE;
                }
                return TRUE;
        }
        return JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type;
}

/* The shape kiln_seccomp_filter_new() reads, checked whole first: a spec on disk (kiln-isolate reads
 * one) is not trusted to be the resolved object kilnd wrote. */
static gboolean filter_shape_ok(JsonObject *o)
{
        JsonArray *rules;

        if (!member_is(o, "defaultAction", FALSE, G_TYPE_STRING, 0) ||
            !member_is(o, "defaultErrnoRet", TRUE, G_TYPE_INT64, 0) ||
            !member_is(o, "architectures", TRUE, JSON_TYPE_ARRAY, G_TYPE_STRING) ||
            !member_is(o, "syscalls", FALSE, JSON_TYPE_ARRAY, JSON_TYPE_OBJECT))
                return FALSE;
        rules = json_object_get_array_member(o, "syscalls");
        for (guint i = 0; i < json_array_get_length(rules); i++) {
                JsonObject *rule = json_array_get_object_element(rules, i);
                JsonArray *args;

                if (!member_is(rule, "names", FALSE, JSON_TYPE_ARRAY, G_TYPE_STRING) ||
                    !member_is(rule, "action", FALSE, G_TYPE_STRING, 0) ||
                    !member_is(rule, "errnoRet", TRUE, G_TYPE_INT64, 0) ||
                    !member_is(rule, "args", TRUE, JSON_TYPE_ARRAY, JSON_TYPE_OBJECT))
                        return FALSE;
                args = json_object_has_member(rule, "args") ? json_object_get_array_member(rule, "args")
                                                            : NULL;
                for (guint k = 0; args && k < json_array_get_length(args); k++) {
                        JsonObject *a = json_array_get_object_element(args, k);
                        if (!member_is(a, "op", FALSE, G_TYPE_STRING, 0) ||
                            !member_is(a, "index", FALSE, G_TYPE_INT64, 0) ||
                            !member_is(a, "value", FALSE, G_TYPE_INT64, 0) ||
                            !member_is(a, "valueTwo", TRUE, G_TYPE_INT64, 0))
                                return FALSE;
                }
        }
        return TRUE;
}

scmp_filter_ctx kiln_seccomp_filter_new(JsonNode *seccomp, GError **error)
{
        JsonObject *o = seccomp && JSON_NODE_HOLDS_OBJECT(seccomp) ? json_node_get_object(seccomp) : NULL;
        scmp_filter_ctx ctx = NULL;
        guint32 default_action;
        JsonArray *rules;

        if (!o || !filter_shape_ok(o) ||
            !action_value(json_object_get_string_member(o, "defaultAction"), o, "defaultErrnoRet",
                          &default_action)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid seccomp filter: not a resolved linux.seccomp object");
                return NULL;
        }
        ctx = seccomp_init(default_action);
        if (!ctx) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_FAILED, "seccomp_init failed");
                return NULL;
        }
        if (json_object_has_member(o, "architectures")) {
                JsonArray *arches = json_object_get_array_member(o, "architectures");
                for (guint i = 0; i < json_array_get_length(arches); i++) {
                        const char *name = json_array_get_string_element(arches, i);
                        guint32 arch = arch_from_oci(name);
                        int r = arch ? seccomp_arch_add(ctx, arch) : -EINVAL;
                        if (r < 0 && r != -EEXIST) {
                                seccomp_release(ctx);
                                filter_failed(error, r, "architecture", name);
                                return NULL;
                        }
                }
        }
        rules = json_object_get_array_member(o, "syscalls");
        for (guint i = 0; i < json_array_get_length(rules); i++)
                if (!add_filter_rule(ctx, default_action, json_array_get_object_element(rules, i), error)) {
                        seccomp_release(ctx);
                        return NULL;
                }
        return ctx;
}
