/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>
#include <unistd.h>

#include "bus-client.h"
#include "cli-util.h"
#include "polkit-agent.h"

/* Calls that never make polkit ask: reads, and control of a process the caller started. Before any
 * other call, on a connection that allows interactive authorization, the polkit agent is started:
 * a method that gains a polkit check needs no change here. */
static const struct {
        const char *interface;
        const char *member;
} calls_without_authorization[] = {
        {KILN_MANAGER_INTERFACE, "GetBuilder"}, {KILN_MANAGER_INTERFACE, "ListBuilders"},
        {KILN_PROPERTIES_INTERFACE, "Get"},     {KILN_PROPERTIES_INTERFACE, "GetAll"},
        {KILN_PROCESS_INTERFACE, "Wait"},       {KILN_PROCESS_INTERFACE, "Resize"},
        {KILN_PROCESS_INTERFACE, "Kill"},       {KILN_MANAGER_INTERFACE, "GetInfo"},
        {KILN_MANAGER_INTERFACE, "GetImage"},   {KILN_MANAGER_INTERFACE, "ListImages"}, /* images out */
};

static bool may_need_authorization(const char *interface, const char *member)
{
        for (size_t i = 0; i < G_N_ELEMENTS(calls_without_authorization); i++)
                if (g_str_equal(calls_without_authorization[i].interface, interface) &&
                    g_str_equal(calls_without_authorization[i].member, member))
                        return false;
        return true;
}

void kiln_builder_info_free(KilnBuilderInfo *info)
{
        if (!info)
                return;
        g_free(info->id);
        g_free(info->name);
        g_free(info->from);
        g_free(info->path);
        g_free(info);
}

int kiln_bus_log_error(const sd_bus_error *error, int r, const char *what)
{
        if (error && sd_bus_error_is_set(error)) {
                /* "System.Error.*" is sd-bus's name for a bare errno (a local failure such as a
                 * timeout, or a service that returned -errno): its message alone says too little. */
                bool bare_errno = g_str_has_prefix(error->name, "System.Error.");

                if (sd_bus_error_has_name(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED)) {
                        /* polkit would ask for a password, but we did not allow it: say how to. */
                        const char *message = error->message && error->message[0] != '\0'
                                                      ? error->message
                                                      : "Interactive authentication is required";

                        if (kiln_get_no_ask_password())
                                kiln_log("%s; run kiln without --no-ask-password on a terminal to be asked "
                                         "for a password, or ask an administrator to allow the action",
                                         message);
                        else
                                kiln_log("%s; run kiln on a terminal to be asked for a password, or ask an "
                                         "administrator to allow the action",
                                         message);
                } else if (error->message && error->message[0] != '\0') {
                        if (bare_errno)
                                kiln_log("%s: %s", what, error->message);
                        else
                                kiln_log("%s", error->message);
                } else
                        kiln_log("%s: %s", what, error->name);
        } else
                kiln_log("%s: %s", what, g_strerror(-r));

        return r < 0 ? r : -EIO;
}

int kiln_bus_log_parse_error(int r)
{
        kiln_log("cannot parse the reply from %s: %s", KILN_BUS_NAME, g_strerror(-r));
        return r;
}

int kiln_bus_open(sd_bus **ret)
{
        g_autoptr(sd_bus) bus = NULL;
        int r;

        r = sd_bus_open_system_with_description(&bus, "kiln");
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "cannot connect to the system bus");

        /* Let polkit ask for a password (through the agent kiln_bus_new_call starts), and wait long
         * enough for someone to type it. */
        if (kiln_may_ask_password()) {
                r = sd_bus_set_allow_interactive_authorization(bus, true);
                if (r < 0)
                        return kiln_bus_log_error(NULL, r, "cannot allow interactive authorization");
                r = sd_bus_set_method_call_timeout(bus, KILN_TIMEOUT_INTERACTIVE_USEC);
                if (r < 0)
                        return kiln_bus_log_error(NULL, r, "cannot set the method call timeout");
        }

        *ret = g_steal_pointer(&bus);
        return 0;
}

int kiln_bus_new_call(sd_bus *bus, const char *path, const char *interface, const char *member,
                      sd_bus_message **ret)
{
        int r;

        if (sd_bus_get_allow_interactive_authorization(bus) > 0 && may_need_authorization(interface, member))
                kiln_polkit_agent_open();

        /* The connection's allow-interactive-authorization setting is copied into the message. */
        r = sd_bus_message_new_method_call(bus, ret, KILN_BUS_NAME, path, interface, member);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, member);
        return 0;
}

int kiln_bus_call(sd_bus *bus, sd_bus_message *m, uint64_t timeout_usec, sd_bus_message **ret_reply)
{
        g_auto(sd_bus_error) error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call(bus, m, timeout_usec, &error, ret_reply);
        if (r < 0)
                return kiln_bus_log_error(&error, r, sd_bus_message_get_member(m));
        return 0;
}

int kiln_bus_resolve(sd_bus *bus, const char *method, const char *name_or_id, char **ret_path)
{
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        const char *path;
        int r;

        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE, method, &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", name_or_id);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, method);
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return kiln_bus_log_parse_error(r);

        *ret_path = g_strdup(path);
        return 0;
}

int kiln_bus_resolve_builder(sd_bus *bus, const char *name_or_id, char **ret_path)
{
        return kiln_bus_resolve(bus, "GetBuilder", name_or_id, ret_path);
}

int kiln_bus_list_builders(sd_bus *bus, bool only_own, GPtrArray **ret)
{
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func((GDestroyNotify)kiln_builder_info_free);
        uid_t self = getuid();
        int r;

        r = kiln_bus_new_call(bus, KILN_MANAGER_PATH, KILN_MANAGER_INTERFACE, "ListBuilders", &m);
        if (r < 0)
                return r;
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "(ssuso)");
        if (r < 0)
                return kiln_bus_log_parse_error(r);
        for (;;) {
                const char *id, *name, *from, *path;
                uint32_t owner;
                KilnBuilderInfo *info;

                r = sd_bus_message_read(reply, "(ssuso)", &id, &name, &owner, &from, &path);
                if (r < 0)
                        return kiln_bus_log_parse_error(r);
                if (r == 0)
                        break;
                if (only_own && owner != self)
                        continue;

                info = g_new0(KilnBuilderInfo, 1);
                info->id = g_strdup(id);
                info->name = g_strdup(name);
                info->owner = owner;
                info->from = g_strdup(from);
                info->path = g_strdup(path);
                g_ptr_array_add(list, info);
        }
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return kiln_bus_log_parse_error(r);

        *ret = g_steal_pointer(&list);
        return 0;
}

int kiln_bus_get_property(sd_bus *bus, const char *path, const char *interface, const char *property,
                          const char *type, sd_bus_message **ret_reply)
{
        g_autoptr(sd_bus_message) m = NULL, reply = NULL;
        int r;

        r = kiln_bus_new_call(bus, path, KILN_PROPERTIES_INTERFACE, "Get", &m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "ss", interface, property);
        if (r < 0)
                return kiln_bus_log_error(NULL, r, "Get");
        r = kiln_bus_call(bus, m, 0, &reply);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'v', type);
        if (r < 0) {
                kiln_log("property %s of %s is not of type '%s'", property, path, type);
                return r;
        }

        *ret_reply = g_steal_pointer(&reply);
        return 0;
}

int kiln_bus_get_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                        char **ret)
{
        g_autoptr(sd_bus_message) reply = NULL;
        const char *value;
        int r;

        r = kiln_bus_get_property(bus, path, interface, property, "s", &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "s", &value);
        if (r < 0)
                return kiln_bus_log_parse_error(r);

        *ret = g_strdup(value);
        return 0;
}

int kiln_bus_get_builder_property(sd_bus *bus, const char *path, const char *property, const char *type,
                                  sd_bus_message **ret_reply)
{
        return kiln_bus_get_property(bus, path, KILN_BUILDER_INTERFACE, property, type, ret_reply);
}

int kiln_bus_get_builder_string(sd_bus *bus, const char *path, const char *property, char **ret)
{
        return kiln_bus_get_string(bus, path, KILN_BUILDER_INTERFACE, property, ret);
}

int kiln_bus_get_builder_strv(sd_bus *bus, const char *path, const char *property, char ***ret)
{
        g_autoptr(sd_bus_message) reply = NULL;
        char **value = NULL;
        int r;

        r = kiln_bus_get_builder_property(bus, path, property, "as", &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read_strv(reply, &value);
        if (r < 0)
                return kiln_bus_log_parse_error(r);

        /* sd-bus allocates with malloc(), which is what g_free() calls. An empty array may come
         * back as NULL: callers get an empty strv instead. */
        *ret = value ? value : g_new0(char *, 1);
        return 0;
}

int kiln_bus_append_option_string(sd_bus_message *m, const char *key, const char *value)
{
        return sd_bus_message_append(m, "{sv}", key, "s", value);
}

int kiln_bus_append_option_strv(sd_bus_message *m, const char *key, char **value)
{
        int r;

        r = sd_bus_message_open_container(m, 'e', "sv");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "s", key);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(m, 'v', "as");
        if (r < 0)
                return r;
        r = sd_bus_message_append_strv(m, value);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(m);
}

int kiln_bus_open_builder(const char *name_or_id, sd_bus **ret_bus, char **ret_path)
{
        g_autoptr(sd_bus) bus = NULL;
        int r;

        r = kiln_bus_open(&bus);
        if (r < 0)
                return r;
        r = kiln_bus_resolve_builder(bus, name_or_id, ret_path);
        if (r < 0)
                return r;
        *ret_bus = g_steal_pointer(&bus);
        return 0;
}
