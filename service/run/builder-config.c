/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "run/builder-config.h"
#include "base/passwd.h"
#include "base/validate.h"
#include "run/network.h"

#define FIELD(c, field) ((void *)((char *)(c) + (field)->offset))
#define STRING_AT(c, field) ((char **)FIELD(c, field))
#define STRV_AT(c, field) ((char ***)FIELD(c, field))

static char *check_any(G_GNUC_UNUSED const char *arg, const char *value, G_GNUC_UNUSED GError **error)
{
        return g_strdup(value);
}

static gboolean validate_working_dir(const char *arg, const char *value, GError **error)
{
        return kiln_validate_absolute_path(arg, value, TRUE, error);
}

KILN_DEFINE_STRING_CHECK(check_env, kiln_validate_env_entry)
KILN_DEFINE_STRING_CHECK(check_working_dir, validate_working_dir)
KILN_DEFINE_STRING_CHECK(check_user, kiln_validate_user_spec)
KILN_DEFINE_STRING_CHECK(check_hostname, kiln_validate_hostname)
KILN_DEFINE_STRING_CHECK(check_volume, kiln_validate_volume)
KILN_DEFINE_STRING_CHECK(check_ulimit, kiln_validate_ulimit)
KILN_DEFINE_STRING_CHECK(check_isolation, kiln_validate_isolation)
KILN_DEFINE_STRING_CHECK(check_userns, kiln_validate_userns)
KILN_DEFINE_STRING_CHECK(check_label_key, kiln_validate_label_key)
KILN_DEFINE_STRING_CHECK(check_network, kiln_network_validate_mode)
KILN_DEFINE_STRING_CHECK(check_network_option, kiln_network_validate_option)
KILN_DEFINE_STRING_CHECK(check_dns, kiln_network_validate_dns)
KILN_DEFINE_STRING_CHECK(check_dns_search, kiln_network_validate_dns_search)
KILN_DEFINE_STRING_CHECK(check_dns_option, kiln_network_validate_dns_option)
KILN_DEFINE_STRING_CHECK(check_add_host, kiln_network_validate_add_host)

/* A boolean field's stored form (builder.json holds a JSON boolean; this checks the string form). */
static char *check_bool(const char *arg, const char *value, GError **error)
{
        if (g_str_equal(value, "true") || g_str_equal(value, "false"))
                return g_strdup(value);
        kiln_invalid(error, arg, "'%s' is not true or false", value);
        return NULL;
}
KILN_DEFINE_STRING_CHECK(check_group_add, kiln_validate_group_add) /* run parity: groups */

/* A stop signal as images write it: a name (SIGTERM, TERM, SIGRTMIN+3) or a number; "" for none. */
static char *check_stop_signal(const char *arg, const char *value, GError **error)
{
        size_t n = strlen(value);

        if (n == 0)
                return g_strdup("");
        for (size_t i = 0; i < n; i++)
                if (!g_ascii_isalnum(value[i]) && value[i] != '+' && value[i] != '-')
                        n = 0;
        if (n == 0 || n > 32) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid %s: '%.64s' is not a signal name or number", arg, value);
                return NULL;
        }
        return g_strdup(value);
}

/* An exposed port as images write it: PORT or PORT/PROTO (tcp, udp, sctp), PORT 1…65535. */
static char *check_exposed_port(const char *arg, const char *value, GError **error)
{
        g_auto(GStrv) parts = g_strsplit(value, "/", 3);
        guint64 port;

        if (!parts[0] || !g_ascii_string_to_unsigned(parts[0], 10, 1, 65535, &port, NULL) ||
            (parts[1] &&
             (!g_strv_contains((const char *const[]){"tcp", "udp", "sctp", NULL}, parts[1]) || parts[2]))) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid %s: '%.64s' is not PORT or PORT/tcp, udp or sctp", arg, value);
                return NULL;
        }
        return g_strdup(value);
}

static char *check_capability(const char *arg, const char *value, GError **error)
{
        char *normalized = NULL;

        return kiln_validate_capability(arg, value, &normalized, error) ? normalized : NULL;
}

#define F(k, p, t, member, c)                                                                               \
        {                                                                                                   \
                k, p, t, offsetof(KilnBuilderConfig, member), c                                             \
        }
const KilnConfigField kiln_config_fields[] = {
        F("env", "Env", KILN_FIELD_STRV, env, check_env),
        F("working_dir", "WorkingDir", KILN_FIELD_STRING, working_dir, check_working_dir),
        F("user", "User", KILN_FIELD_STRING, user, check_user),
        F("hostname", "Hostname", KILN_FIELD_STRING, hostname, check_hostname),
        F("entrypoint", "Entrypoint", KILN_FIELD_STRV, entrypoint, check_any),
        F("cmd", "Cmd", KILN_FIELD_STRV, cmd, check_any),
        F("shell", "Shell", KILN_FIELD_STRV, shell, check_any),
        F("volumes", "Volumes", KILN_FIELD_STRV, volumes, check_volume),
        F("labels", "Labels", KILN_FIELD_MAP, labels, check_label_key),
        F("cap_add", "CapAdd", KILN_FIELD_STRV, cap_add, check_capability),
        F("cap_drop", "CapDrop", KILN_FIELD_STRV, cap_drop, check_capability),
        F("ulimits", "Ulimits", KILN_FIELD_STRV, ulimits, check_ulimit),
        F("isolation", "Isolation", KILN_FIELD_STRING, isolation, check_isolation),
        F("userns", "UserNamespace", KILN_FIELD_STRING, userns, check_userns),
        F("group_add", "GroupAdd", KILN_FIELD_STRV, group_add, check_group_add), /* run parity */
        /* From an image's config (docs/images.md); kept for a later commit and shown by inspect. */
        F("stop_signal", "StopSignal", KILN_FIELD_STRING, stop_signal, check_stop_signal),
        F("exposed_ports", "ExposedPorts", KILN_FIELD_STRV, exposed_ports, check_exposed_port),
        /* Network settings (network.h) */
        F("network", "Network", KILN_FIELD_STRING, network, check_network),
        F("network_options", "NetworkOptions", KILN_FIELD_STRV, network_options, check_network_option),
        F("dns", "Dns", KILN_FIELD_STRV, dns, check_dns),
        F("dns_search", "DnsSearch", KILN_FIELD_STRV, dns_search, check_dns_search),
        F("dns_option", "DnsOption", KILN_FIELD_STRV, dns_option, check_dns_option),
        F("add_host", "AddHost", KILN_FIELD_STRV, add_host, check_add_host),
        F("no_hosts", "NoHosts", KILN_FIELD_BOOL, no_hosts, check_bool),
};
#undef F
const size_t kiln_config_n_fields = G_N_ELEMENTS(kiln_config_fields);
G_STATIC_ASSERT(G_N_ELEMENTS(kiln_config_fields) <= 32);

const KilnConfigField *kiln_config_field_lookup(const char *key)
{
        for (size_t i = 0; i < kiln_config_n_fields; i++)
                if (g_str_equal(kiln_config_fields[i].key, key))
                        return &kiln_config_fields[i];
        return NULL;
}

gboolean kiln_config_field_is_scalar(const KilnConfigField *f)
{
        return f->type == KILN_FIELD_STRING || f->type == KILN_FIELD_BOOL;
}

static void field_clear(KilnBuilderConfig *c, const KilnConfigField *f)
{
        if (kiln_config_field_is_scalar(f))
                g_clear_pointer(STRING_AT(c, f), g_free);
        else
                g_clear_pointer(STRV_AT(c, f), g_strfreev);
}

void kiln_builder_config_clear(KilnBuilderConfig *c)
{
        for (size_t i = 0; i < kiln_config_n_fields; i++)
                field_clear(c, &kiln_config_fields[i]);
}

void kiln_builder_config_assign(KilnBuilderConfig *dst, const KilnBuilderConfig *src, KilnFieldMask mask)
{
        for (size_t i = 0; i < kiln_config_n_fields; i++) {
                const KilnConfigField *f = &kiln_config_fields[i];
                if (!(mask & (1u << i)))
                        continue;
                field_clear(dst, f);
                if (kiln_config_field_is_scalar(f))
                        *STRING_AT(dst, f) = g_strdup(*STRING_AT(src, f));
                else
                        *STRV_AT(dst, f) = g_strdupv(*STRV_AT(src, f));
        }
}

static int compare_strp(gconstpointer a, gconstpointer b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Labels are kept sorted by name so the property and builder.json are stable; a name given twice is
 * refused rather than silently resolved. */
static gboolean sort_labels(GPtrArray *items, const char *arg, GError **error)
{
        g_ptr_array_sort(items, compare_strp);
        for (guint i = 1; i < items->len; i++) {
                const char *a = items->pdata[i - 1], *b = items->pdata[i];
                size_t n = strcspn(a, "=");
                if (strncmp(a, b, n + 1) == 0) {
                        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                    "Invalid %s: label '%.*s' is given twice", arg, (int)n, a);
                        return FALSE;
                }
        }
        return TRUE;
}

/* Reads "a{ss}" as "key=value" strings into a NULL-terminated array. */
static gboolean read_map(sd_bus_message *m, const KilnConfigField *f, const KilnConfig *limits, char ***ret,
                         GError **error)
{
        g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(g_free);
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{ss}");
        if (r < 0)
                return kiln_bus_read_failed(r, f->key, error);
        while ((r = sd_bus_message_enter_container(m, 'e', "ss")) > 0) {
                g_autofree char *arg = g_strdup_printf("%s[%u]", f->key, items->len);
                g_autofree char *name = NULL, *value = NULL;

                if (!kiln_check_array_limit(f->key, items->len + 1, limits, error) ||
                    !kiln_bus_read_string(m, arg, f->check, limits, &name, error) ||
                    !kiln_bus_read_string(m, arg, NULL, limits, &value, error))
                        return FALSE;
                if (strchr(name, '=')) {
                        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                                    "Invalid %s: label name '%s' contains '='", arg, name);
                        return FALSE;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return kiln_bus_read_failed(r, f->key, error);
                g_ptr_array_add(items, g_strconcat(name, "=", value, NULL));
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_bus_read_failed(r, f->key, error);
        if (!sort_labels(items, f->key, error))
                return FALSE;
        g_ptr_array_add(items, NULL);
        *ret = (char **)g_ptr_array_free(g_steal_pointer(&items), FALSE);
        return TRUE;
}

const char *kiln_config_field_signature(const KilnConfigField *f)
{
        static const char *const signatures[] = {
                [KILN_FIELD_STRING] = "s",
                [KILN_FIELD_STRV] = "as",
                [KILN_FIELD_MAP] = "a{ss}",
                [KILN_FIELD_BOOL] = "b",
        };
        return signatures[f->type];
}

gboolean kiln_builder_config_read_variant(KilnBuilderConfig *config, const KilnConfigField *field,
                                          sd_bus_message *m, const KilnConfig *limits, GError **error)
{
        if (!kiln_bus_enter_variant(m, field->key, kiln_config_field_signature(field), error))
                return FALSE;
        if (field->type == KILN_FIELD_BOOL) {
                int b = 0, r = sd_bus_message_read_basic(m, 'b', &b);
                if (r < 0)
                        return kiln_bus_read_failed(r, field->key, error);
                g_free(*STRING_AT(config, field));
                *STRING_AT(config, field) = g_strdup(b ? "true" : "false");
        } else if (field->type == KILN_FIELD_STRING) {
                char *value = NULL;
                if (!kiln_bus_read_string(m, field->key, field->check, limits, &value, error))
                        return FALSE;
                g_free(*STRING_AT(config, field));
                *STRING_AT(config, field) = value;
        } else {
                char **value = NULL;
                if (!(field->type == KILN_FIELD_MAP
                              ? read_map(m, field, limits, &value, error)
                              : kiln_bus_read_strv(m, field->key, field->check, limits, &value, error)))
                        return FALSE;
                g_strfreev(*STRV_AT(config, field));
                *STRV_AT(config, field) = value;
        }
        return kiln_bus_exit_variant(m, field->key, error);
}

void kiln_builder_config_to_json(const KilnBuilderConfig *config, JsonBuilder *b)
{
        for (size_t i = 0; i < kiln_config_n_fields; i++) {
                const KilnConfigField *f = &kiln_config_fields[i];
                char **v;

                if (f->type == KILN_FIELD_BOOL) {
                        const char *s = *STRING_AT(config, f);
                        if (s) {
                                json_builder_set_member_name(b, f->key);
                                json_builder_add_boolean_value(b, g_str_equal(s, "true"));
                        }
                        continue;
                }
                json_builder_set_member_name(b, f->key);
                if (f->type == KILN_FIELD_STRING) {
                        const char *s = *STRING_AT(config, f);
                        json_builder_add_string_value(b, s ? s : "");
                        continue;
                }
                v = *STRV_AT(config, f);
                if (f->type == KILN_FIELD_STRV) {
                        json_builder_begin_array(b);
                        for (char **p = v; p && *p; p++)
                                json_builder_add_string_value(b, *p);
                        json_builder_end_array(b);
                } else {
                        json_builder_begin_object(b);
                        for (char **p = v; p && *p; p++) {
                                g_autofree char *name = g_strndup(*p, strcspn(*p, "="));
                                json_builder_set_member_name(b, name);
                                json_builder_add_string_value(b, *p + strlen(name) + 1);
                        }
                        json_builder_end_object(b);
                }
        }
}

static gboolean json_invalid(const char *key, GError **error)
{
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                    "member '%s' has the wrong type, or text that is not UTF-8", key);
        return FALSE;
}

/* @n's string, if it is one and UTF-8. json-glib reads escapes such as "\204" as the bytes they name, so
 * an image's config (or a damaged builder.json) can hold strings that are not text; written back into
 * builder.json they would make it unreadable, and the builder lost at kilnd's next start. */
static const char *utf8_string(JsonNode *n)
{
        const char *v;

        if (!JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        v = json_node_get_string(n);
        return v && g_utf8_validate(v, -1, NULL) ? v : NULL;
}

/* builder.json is the service's own file, but it is checked with the same rules as a caller's
 * value: a hand-edited or damaged file must not bring in what the bus would refuse. */
gboolean kiln_builder_config_from_json(KilnBuilderConfig *config, JsonObject *object, GError **error)
{
        for (size_t i = 0; i < kiln_config_n_fields; i++) {
                const KilnConfigField *f = &kiln_config_fields[i];
                JsonNode *node = json_object_get_member(object, f->key);
                g_autoptr(GPtrArray) items = NULL;

                if (!node)
                        continue;
                if (f->type == KILN_FIELD_BOOL) {
                        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_BOOLEAN)
                                return json_invalid(f->key, error);
                        g_free(*STRING_AT(config, f));
                        *STRING_AT(config, f) = g_strdup(json_node_get_boolean(node) ? "true" : "false");
                        continue;
                }
                if (f->type == KILN_FIELD_STRING) {
                        const char *text = utf8_string(node);
                        char *v;
                        if (!text)
                                return json_invalid(f->key, error);
                        v = f->check(f->key, text, error);
                        if (!v)
                                return FALSE;
                        g_free(*STRING_AT(config, f));
                        *STRING_AT(config, f) = v;
                        continue;
                }
                items = g_ptr_array_new_with_free_func(g_free);
                if (f->type == KILN_FIELD_STRV) {
                        JsonArray *a;
                        if (!JSON_NODE_HOLDS_ARRAY(node))
                                return json_invalid(f->key, error);
                        a = json_node_get_array(node);
                        for (guint j = 0; j < json_array_get_length(a); j++) {
                                const char *text = utf8_string(json_array_get_element(a, j));
                                char *v;
                                if (!text)
                                        return json_invalid(f->key, error);
                                v = f->check(f->key, text, error);
                                if (!v)
                                        return FALSE;
                                g_ptr_array_add(items, v);
                        }
                } else {
                        JsonObject *o;
                        g_autoptr(GList) names = NULL;
                        if (!JSON_NODE_HOLDS_OBJECT(node))
                                return json_invalid(f->key, error);
                        o = json_node_get_object(node);
                        names = json_object_get_members(o);
                        for (GList *l = names; l; l = l->next) {
                                const char *text = utf8_string(json_object_get_member(o, l->data));
                                g_autofree char *k = NULL;
                                if (!text || strchr(l->data, '=') || !g_utf8_validate(l->data, -1, NULL))
                                        return json_invalid(f->key, error);
                                k = f->check(f->key, l->data, error);
                                if (!k)
                                        return FALSE;
                                g_ptr_array_add(items, g_strconcat(k, "=", text, NULL));
                        }
                        g_ptr_array_sort(items, compare_strp);
                }
                g_ptr_array_add(items, NULL);
                g_strfreev(*STRV_AT(config, f));
                *STRV_AT(config, f) = (char **)g_ptr_array_free(g_steal_pointer(&items), FALSE);
        }
        return TRUE;
}

int kiln_builder_config_append_property(const KilnBuilderConfig *config, const KilnConfigField *f,
                                        sd_bus_message *reply)
{
        char **v;
        int r;

        if (f->type == KILN_FIELD_BOOL) {
                int b = g_strcmp0(*STRING_AT(config, f), "true") == 0;
                return sd_bus_message_append_basic(reply, 'b', &b);
        }
        if (f->type == KILN_FIELD_STRING) {
                const char *s = *STRING_AT(config, f);
                return sd_bus_message_append_basic(reply, 's', s ? s : "");
        }
        v = *STRV_AT(config, f);
        if (f->type == KILN_FIELD_STRV)
                return sd_bus_message_append_strv(reply, v);

        r = sd_bus_message_open_container(reply, 'a', "{ss}");
        if (r < 0)
                return r;
        for (char **p = v; p && *p; p++) {
                g_autofree char *name = g_strndup(*p, strcspn(*p, "="));
                r = sd_bus_message_append(reply, "{ss}", name, *p + strlen(name) + 1);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}
