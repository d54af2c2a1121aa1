/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "bus/bus-args.h"

gboolean kiln_check_string_limit(const char *arg, const char *value, const KilnConfig *limits,
                                 GError **error)
{
        if (strlen(value) <= limits->max_string_length)
                return TRUE;
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                    "%s is longer than the limit of %u bytes", arg, limits->max_string_length);
        return FALSE;
}

gboolean kiln_check_array_limit(const char *arg, size_t n, const KilnConfig *limits, GError **error)
{
        if (n <= limits->max_array_length)
                return TRUE;
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_LIMIT_EXCEEDED,
                    "%s has more than the limit of %u entries", arg, limits->max_array_length);
        return FALSE;
}

gboolean kiln_bus_read_failed(int r, const char *arg, GError **error)
{
        g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT, "Invalid %s: cannot read it: %s",
                    arg, g_strerror(-r));
        return FALSE;
}

gboolean kiln_bus_enter_variant(sd_bus_message *m, const char *arg, const char *signature, GError **error)
{
        const char *contents = NULL;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return kiln_bus_read_failed(r, arg, error);
        if (type != 'v' || !contents || !g_str_equal(contents, signature)) {
                g_set_error(error, KILN_ERROR, KILN_ERROR_CODE_INVALID_ARGUMENT,
                            "Invalid %s: expected a value of type '%s', got '%s'", arg, signature,
                            contents ? contents : "?");
                return FALSE;
        }
        r = sd_bus_message_enter_container(m, 'v', contents);
        return r < 0 ? kiln_bus_read_failed(r, arg, error) : TRUE;
}

gboolean kiln_bus_exit_variant(sd_bus_message *m, const char *arg, GError **error)
{
        int r = sd_bus_message_exit_container(m);

        return r < 0 ? kiln_bus_read_failed(r, arg, error) : TRUE;
}

gboolean kiln_bus_read_string(sd_bus_message *m, const char *arg, KilnStringCheck check,
                              const KilnConfig *limits, char **ret, GError **error)
{
        const char *s;
        int r = sd_bus_message_read_basic(m, 's', &s);

        if (r < 0)
                return kiln_bus_read_failed(r, arg, error);
        if (!kiln_check_string_limit(arg, s, limits, error))
                return FALSE;
        *ret = check ? check(arg, s, error) : g_strdup(s);
        return *ret != NULL;
}

gboolean kiln_bus_read_strv(sd_bus_message *m, const char *arg, KilnStringCheck check,
                            const KilnConfig *limits, char ***ret, GError **error)
{
        g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(g_free);
        int r;

        r = sd_bus_message_enter_container(m, 'a', "s");
        if (r < 0)
                return kiln_bus_read_failed(r, arg, error);
        while ((r = sd_bus_message_at_end(m, FALSE)) == 0) {
                g_autofree char *item_arg = g_strdup_printf("%s[%u]", arg, items->len);
                char *item = NULL;

                if (!kiln_check_array_limit(arg, items->len + 1, limits, error) ||
                    !kiln_bus_read_string(m, item_arg, check, limits, &item, error))
                        return FALSE;
                g_ptr_array_add(items, item);
        }
        if (r < 0)
                return kiln_bus_read_failed(r, arg, error);
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return kiln_bus_read_failed(r, arg, error);
        g_ptr_array_add(items, NULL);
        *ret = (char **)g_ptr_array_free(g_steal_pointer(&items), FALSE);
        return TRUE;
}
